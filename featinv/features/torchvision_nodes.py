"""Any node of any torchvision classification model: ``torchvision.<model>.<node>``.

``<model>`` is a name of ``torchvision.models.list_models(torchvision.models)`` (resnet18,
alexnet, vit_b_16, ...), ``<node>`` a node of its traced graph in eval mode, as
``torchvision.models.feature_extraction.get_graph_node_names`` lists them (``layer3``,
``features.10``, ``avgpool``, ``encoder``; any case). ``torchvision.<model>`` alone is the
model's last node (the class scores); ``featinv describe torchvision.<model>`` lists the nodes.

What a node gives, per image, from a shape-only (meta device) pass at the weights' crop size:

- ``(C, h, w)``: a grid; a ``C x 1 x 1`` map that stays ``1 x 1`` at twice the size (global
  pooling) is the vector ``(C,)``;
- ``(C,)``: a vector (pooled embeddings, class scores): the fully-connected decoder family;
- ``(T, D)`` tokens with ``T`` or ``T - 1`` (a class token, dropped) a square ``s * s``: the
  grid ``(D, s, s)`` (vision transformers);
- anything else (shapes, tuples, other ranks): refused with one clear error.

Models of a fixed input size (vision transformers) get their input resized to it, so their
layout does not depend on the image size. Weights: torchvision's ImageNet weights through its
download and cache (``weights=imagenet``), a ``.safetensors``/``.npz`` file with torchvision's
key names, or random (``weights=random`` or ``pretrained=false``). Input: torchvision's ImageNet
convention. A few nodes of resnet18 are listed by ``featinv list-features``, their layouts
declared as conv/pool arithmetic (``LISTED``, checked against torchvision by the tests).
"""
from __future__ import annotations

import difflib
import math
import re
import warnings
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FeatinvError
from ..representation.hookspecs import hookimpl
from ..representation.spec import FeatureSpec, Param
from .cnn import (CONVENTIONS, LayerNet, Preprocess, Window, check_download, layer_rule,
                  load_weights, torch_hub_file, window_rule)

_NAME = re.compile(r"^torchvision\.(?P<model>[a-z0-9_]+)(?:\.(?P<node>[a-z0-9_.]+))?$")
_HALVE = Window(3, 2, 1)
_STEM = (Window(7, 2, 3), _HALVE)  # resnet conv1 (7x7/2) and maxpool (3x3/2)
# resnet18 nodes listed by list-features: node -> (channels, windows; None: a vector)
LISTED = {"layer1": (64, _STEM), "layer2": (128, _STEM + (_HALVE,)),
          "layer3": (256, _STEM + (_HALVE,) * 2), "layer4": (512, _STEM + (_HALVE,) * 3),
          "avgpool": (512, None), "fc": (1000, None)}
LISTED_MODEL = "resnet18"


class NodeOutput(nn.Module):
    """A traced model cut at one node, its output as ``(B, C, h, w)`` or ``(B, C)``.

    ``kind``: ``"grid"``, ``"vector"`` (flattened) or ``"tokens"`` (``(B, T, D)`` -> ``(B, D, s,
    s)``, the class token dropped when ``T = s * s + 1``); ``size``: resize the input to
    ``size x size`` first (fixed-size models), or ``None``.
    """

    def __init__(self, graph: nn.Module, node: str, kind: str, size: int | None):
        super().__init__()
        self.graph, self.node, self.kind, self.size = graph, node, kind, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=x.device.type != "meta")
        out = self.graph(x)[self.node]
        if self.kind == "vector":
            return out.flatten(1)
        if self.kind == "tokens":
            side = math.isqrt(out.shape[1])
            out = out[:, out.shape[1] - side * side:]  # drop a leading class token
            return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], side, side)
        return out


def model_names() -> list[str]:
    """torchvision's classification models."""
    import torchvision
    from torchvision.models import list_models

    return list_models(module=torchvision.models)


def _network(model: str) -> nn.Module:
    """The model in eval mode, random weights (no download), on the current default device."""
    from torchvision.models import get_model

    with warnings.catch_warnings():  # googlenet/inception: a FutureWarning about init
        warnings.simplefilter("ignore")
        return get_model(model, weights=None).eval()


def _fixed_size(net: nn.Module) -> int | None:
    size = getattr(net, "image_size", None)  # torchvision's vision transformers
    return size if isinstance(size, int) else None


@lru_cache(maxsize=None)
def nodes(model: str) -> tuple[str, ...]:
    """The nodes of ``model``'s eval-mode graph and the modules holding them (``layer3``: the
    output of its last node), in order of first appearance (built on the meta device)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        leaves = get_graph_node_names(_network(model))[1]
    names: dict[str, None] = {}
    for leaf in leaves:
        parts = leaf.split(".")
        names.update((".".join(parts[:i]), None) for i in range(1, len(parts) + 1))
    return tuple(names)


def _extractor(net: nn.Module, node: str) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_feature_extractor(net, return_nodes=[node])


def _shape_at(model: str, node: str, side: int):
    with torch.device("meta"):
        net = _network(model)
        size = _fixed_size(net)
        out = _extractor(net, node)(torch.zeros(1, 3, size or side, size or side))[node]
    return out.shape[1:] if isinstance(out, torch.Tensor) else out


@lru_cache(maxsize=None)
def node_kind(model: str, node: str) -> str:
    """``"grid"``, ``"vector"`` or ``"tokens"`` (see the module docstring); a ``FeatinvError``
    for a node whose output is none of them."""
    side = image_size(model)
    shape = _shape_at(model, node, side)
    if isinstance(shape, torch.Size):
        if len(shape) == 1:
            return "vector"
        if len(shape) == 3 and shape[1:] == (1, 1) and _shape_at(model, node, 2 * side)[1:] == (1, 1):
            return "vector"
        if len(shape) == 3:
            return "grid"
        if len(shape) == 2 and any(math.isqrt(t) ** 2 == t for t in (shape[0], shape[0] - 1)):
            return "tokens"
        what = f"a tensor of shape {tuple(shape)} per image"
    else:
        what = f"{type(shape).__name__} {str(shape)[:60]!r}, not a tensor"
    raise FeatinvError(f"node '{node}' of torchvision {model} gives {what}: neither a spatial "
                       "map (C, h, w) nor a vector (C,). Pick another node ('featinv describe "
                       f"torchvision.{model}' lists them).")


@lru_cache(maxsize=None)
def image_size(model: str) -> int:
    """The crop size of the model's default weights (224 for most, 299 for inception_v3)."""
    if model == LISTED_MODEL:
        return 224
    from torchvision.models import get_model_weights

    return int(get_model_weights(model).DEFAULT.transforms().crop_size[0])


def _pretrained(model: str) -> dict:
    from torchvision.models import get_model_weights

    weights = get_model_weights(model).DEFAULT
    if not torch_hub_file(weights.url).is_file():
        check_download(weights.url)
    return weights.get_state_dict(progress=False)


def build(model: str, node: str, weights: str = "imagenet", pretrained: bool = True) -> LayerNet:
    """``(B, 3, H, W)`` RGB in [0, 1] -> the node's output, ``(B, C, h, w)`` or ``(B, C)``."""
    net = load_weights(_network(model), "random" if not pretrained else weights,
                       lambda: _pretrained(model), f"torchvision {model}")
    body = NodeOutput(_extractor(net, node), node, node_kind(model, node), _fixed_size(net))
    return LayerNet(Preprocess(CONVENTIONS["torchvision"]), body)


@lru_cache(maxsize=None)
def layout_rule(model: str, node: str):
    formula = f"torchvision {model} node '{node}' output for an H x W image"
    key = node.lower()
    if model == LISTED_MODEL and key in LISTED:
        channels, windows = LISTED[key]
        return window_rule(channels, windows or (), formula, vector=windows is None)

    def meta_body() -> nn.Module:
        net = _network(model)
        return NodeOutput(_extractor(net, node), node, node_kind(model, node), _fixed_size(net))

    if _fixed_size(_meta_network(model)) is not None:
        formula += f" (resized to {image_size(model)} px first)"
    return layer_rule(meta_body, formula, {})


@lru_cache(maxsize=None)
def _meta_network(model: str) -> nn.Module:
    with torch.device("meta"):
        return _network(model)


def make_spec(model: str, node: str, whole: bool = False) -> FeatureSpec:
    """The representation of ``node`` (its name as the graph spells it); ``whole``: named
    ``torchvision.<model>`` (the last node) and describing the model's nodes."""
    name = f"torchvision.{model}" if whole else f"torchvision.{model}.{node.lower()}"
    what = "its output (class scores)" if whole else f"node '{node}'"
    return FeatureSpec(
        name=name,
        description=f"torchvision {model}, {what}; any torchvision.<model>.<node> works",
        input="rgb", differentiable=True,
        build=lambda weights="imagenet", pretrained=True: build(model, node, weights, pretrained),
        rule=lambda weights="imagenet", pretrained=True: layout_rule(model, node),
        params=(Param("weights", "imagenet", "'imagenet' (torchvision download/cache), a "
                      ".safetensors/.npz path, or 'random'"),
                Param("pretrained", True, "false: random weights (as weights=random)")),
        image_size=image_size(model),
        members=(lambda: [f"torchvision.{model}.{n.lower()}" for n in nodes(model)])
        if whole else None)


def find_node(model: str, wanted: str) -> str:
    """The graph's spelling of node ``wanted`` (any case); a ``FeatinvError`` with the closest
    node names when there is none."""
    names = nodes(model)
    by_lower = {n.lower(): n for n in names}
    if wanted in by_lower:
        return by_lower[wanted]
    close = difflib.get_close_matches(wanted, list(by_lower), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise FeatinvError(f"torchvision {model} has no node '{wanted}'.{hint} 'featinv describe "
                       f"torchvision.{model}' lists its {len(names)} nodes.")


@hookimpl
def featinv_register_features(register):
    for node in LISTED:
        register(make_spec(LISTED_MODEL, node))


@hookimpl
def featinv_resolve_feature(name):
    match = _NAME.match(name)
    if match is None:
        return None
    model, node = match["model"], match["node"]
    known = model_names()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise FeatinvError(f"torchvision has no classification model '{model}'.{hint} "
                           "torchvision.models.list_models() names them.")
    if node is None:
        last = nodes(model)[-1]
        node_kind(model, last)
        return make_spec(model, last, whole=True)
    found = find_node(model, node)
    node_kind(model, found)
    return make_spec(model, found)
