"""Intermediate stages of any timm model, ``timm.<model>.stage<i>``, and its embeddings:
``timm.<model>.pooled`` (the pooled pre-logits vector, ``forward_head(pre_logits=True)``) and
``timm.<model>.logits`` (the class scores), both vectors: the fully-connected decoder family.

``<model>`` is any name ``timm.create_model`` accepts (``timm.list_models()``), ``<i>`` an index
into the model's ``feature_info`` (timm's ``out_indices``): for ``resnet50``, stage0 is the stem
(stride 2), stage1..stage4 are ``layer1``..``layer4`` (strides 4..32). The layout comes from a
shape-only forward pass; the input convention (mean, std) from the model's pretrained config.

A representative few are listed by ``featinv list-features``; their input size, channels and
downsampling steps are declared below (``KNOWN``, checked against timm by the tests), so that
listing them imports neither timm nor any network. Every other model and stage is built on
demand when asked for by name.
"""
from __future__ import annotations

import re
from pathlib import Path
from functools import lru_cache

import torch

from ..errors import FeatinvError
from ..representation.hookspecs import hookimpl
from ..representation.spec import FeatureSpec, Param
from .cnn import (Convention, LayerNet, Preprocess, Window, check_download, fetch_pretrained,
                  layer_rule, load_weights, torch_hub_file, window_rule)

_HALVE = Window(3, 2, 1)  # a 3x3 (or 1x1, 5x5 'same') stride-2 step: ceil(n / 2)
# model -> (pretrained input side, ((channels, windows added by the stage), ...)); the listed ones
KNOWN = {
    "resnet18": (224, ((64, (Window(7, 2, 3),)), (64, (_HALVE,)), (128, (_HALVE,)),
                       (256, (_HALVE,)), (512, (_HALVE,)))),
    "resnet50": (224, ((64, (Window(7, 2, 3),)), (256, (_HALVE,)), (512, (_HALVE,)),
                       (1024, (_HALVE,)), (2048, (_HALVE,)))),
    "convnext_tiny": (224, ((96, (Window(4, 4),)), (192, (Window(2, 2),)),
                            (384, (Window(2, 2),)), (768, (Window(2, 2),)))),
    "efficientnet_b0": (224, ((16, (_HALVE,)), (24, (_HALVE,)), (40, (_HALVE,)),
                              (112, (_HALVE,)), (320, (_HALVE,)))),
}
LISTED = {model: range(len(stages)) for model, (_, stages) in KNOWN.items()}
_NAME = re.compile(r"^timm\.(?P<model>[a-z0-9_.]+)\.stage(?P<stage>\d+)$")
_HEAD = re.compile(r"^timm\.(?P<model>[a-z0-9_.]+)\.(?P<head>pooled|logits)$")
HEADS = ("pooled", "logits")


class Head(torch.nn.Module):
    """A whole timm model giving its pooled pre-logits embedding (``head="pooled"``) or its
    class scores (``"logits"``): ``(B, 3, H, W)`` -> ``(B, C)``."""

    def __init__(self, net: torch.nn.Module, head: str):
        super().__init__()
        self.net, self.pre_logits = net, head == "pooled"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=self.pre_logits)


def _create(model: str, stage: int | str, pretrained: bool = False, file: str | None = None):
    """The model cut after ``stage`` (an index), or a ``Head`` (``stage`` in ``HEADS``);
    ``file``: read the pretrained weights from it."""
    import timm

    cfg = timm.get_pretrained_cfg(model)
    # fixed-size models (ViTs) can take any size when asked to interpolate position embeddings
    extra = {"dynamic_img_size": True} if cfg is not None and cfg.fixed_input_size else {}
    if file is not None:
        extra["pretrained_cfg_overlay"] = {"file": file, "source": ""}
    if stage in HEADS:
        return Head(timm.create_model(model, pretrained=pretrained, **extra), str(stage))
    return timm.create_model(model, pretrained=pretrained, features_only=True,
                             out_indices=(stage,), **extra)


def _maybe_cached(model: str) -> bool:
    """Whether timm's weights of ``model`` may be cached (a Hugging Face cache folder of
    ``timm/<model>...``, or a torch hub checkpoint naming it), found without importing timm
    (its import alone takes seconds)."""
    from huggingface_hub import constants

    name = model.split(".")[0].replace("/", "--")
    hub, checkpoints = Path(constants.HF_HUB_CACHE), Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return any(hub.glob(f"models--timm--{name}*")) or any(checkpoints.glob(f"*{name}*"))
    except OSError:
        return True


def _pretrained(model: str, stage: int | str):
    """The model with timm's ImageNet weights: from the Hugging Face cache when they are there
    (no network needed), else downloaded by timm once the server is known to be reachable.
    Nothing cached and no network: the error comes before timm is imported."""
    if not _maybe_cached(model):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            raise ConnectionError("HF_HUB_OFFLINE is set")
        check_download(constants.ENDPOINT)
    import timm

    cfg = timm.get_pretrained_cfg(model)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        cached = try_to_load_from_cache(repo, cfg.hf_hub_filename or "model.safetensors",
                                        revision=revision or None)
        if isinstance(cached, str) and cached.endswith(".safetensors"):
            return _create(model, stage, pretrained=True, file=cached)
        if constants.HF_HUB_OFFLINE:
            raise ConnectionError("HF_HUB_OFFLINE is set")
        check_download(constants.ENDPOINT)
    elif cfg is not None and cfg.url and not torch_hub_file(cfg.url).is_file():
        check_download(cfg.url)
    return _create(model, stage, pretrained=True)


def _convention(model: str) -> Convention:
    import timm

    cfg = timm.get_pretrained_cfg(model)
    mean = tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225)
    return Convention(f"timm {model}", mean, std)


def build(model: str, stage: int | str, weights: str = "imagenet") -> LayerNet:
    if weights == "imagenet":
        net = fetch_pretrained(lambda: _pretrained(model, stage), f"timm model '{model}'")
    else:
        net = load_weights(_create(model, stage), weights, None, f"timm model '{model}'")
    return LayerNet(Preprocess(_convention(model)), net)


@lru_cache(maxsize=None)
def layout_rule(model: str, stage: int | str):
    formula = f"timm {model} feature_info[{stage}] output for an H x W image"
    if stage in HEADS:
        formula = f"timm {model} {stage} vector (any image size)"
    elif model in KNOWN:
        stages = KNOWN[model][1]
        windows = tuple(w for _, added in stages[:stage + 1] for w in added)
        return window_rule(stages[stage][0], windows, formula)
    return layer_rule(lambda: _create(model, stage), formula, {})


def _input_size(model: str) -> int:
    if model in KNOWN:
        return KNOWN[model][0]
    import timm

    cfg = timm.get_pretrained_cfg(model)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def make_spec(model: str, stage: int) -> FeatureSpec:
    return FeatureSpec(
        name=f"timm.{model}.stage{stage}",
        description=f"timm {model}, feature stage {stage} (out_indices=({stage},)); any "
                    "timm.<model>.stage<i> works",
        input="rgb", differentiable=True,
        build=lambda weights="imagenet": build(model, stage, weights),
        rule=lambda weights="imagenet": layout_rule(model, stage),
        params=(Param("weights", "imagenet", "'imagenet' (timm download/cache), a "
                      ".safetensors/.npz path, or 'random'"),),
        image_size=_input_size(model))


def make_head_spec(model: str, head: str) -> FeatureSpec:
    what = "pooled pre-logits embedding" if head == "pooled" else "class scores (logits)"
    return FeatureSpec(
        name=f"timm.{model}.{head}",
        description=f"timm {model}, {what}; any timm.<model>.pooled or .logits works",
        input="rgb", differentiable=True,
        build=lambda weights="imagenet": build(model, head, weights),
        rule=lambda weights="imagenet": layout_rule(model, head),
        params=(Param("weights", "imagenet", "'imagenet' (timm download/cache), a "
                      ".safetensors/.npz path, or 'random'"),),
        image_size=_input_size(model))


@hookimpl
def featinv_register_features(register):
    for model, stages in LISTED.items():
        for stage in stages:
            register(make_spec(model, stage))


@hookimpl
def featinv_resolve_feature(name):
    head = _HEAD.match(name)
    if head is not None:
        import timm

        return make_head_spec(head["model"], head["head"]) if timm.is_model(head["model"]) else None
    match = _NAME.match(name)
    if match is None:
        return None
    model, stage = match["model"], int(match["stage"])
    stages = _stage_count(model)
    if stages is None:
        return None
    if stage >= stages:
        raise FeatinvError(f"timm model '{model}' has feature stages 0 to {stages - 1}, "
                           f"not {stage}.")
    return make_spec(model, stage)


def _stage_count(model: str) -> int | None:
    """How many feature stages ``model`` has, or ``None`` if timm has no such model."""
    if model in KNOWN:
        return len(KNOWN[model][1])
    import timm

    if not timm.is_model(model):
        return None
    with torch.device("meta"):
        return len(timm.create_model(model, features_only=True).feature_info)
