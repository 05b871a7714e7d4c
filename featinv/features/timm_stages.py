"""Intermediate stages of any timm model: ``timm.<model>.stage<i>``.

``<model>`` is any name ``timm.create_model`` accepts (``timm.list_models()``), ``<i>`` an index
into the model's ``feature_info`` (timm's ``out_indices``): for ``resnet50``, stage0 is the stem
(stride 2), stage1..stage4 are ``layer1``..``layer4`` (strides 4..32). The layout comes from a
shape-only forward pass; the input convention (mean, std) from the model's pretrained config.

A representative few are listed by ``featinv list-features``; every other model and stage is
built on demand when asked for by name.
"""
from __future__ import annotations

import re
from functools import lru_cache

import torch

from ..errors import FeatinvError
from ..hookspecs import hookimpl
from ..spec import FeatureSpec, Param
from .cnn import Convention, LayerNet, Preprocess, fetch_pretrained, layer_layout, load_weights

LISTED = {"resnet18": range(5), "resnet50": range(5), "convnext_tiny": range(4),
          "efficientnet_b0": range(5)}
_NAME = re.compile(r"^timm\.(?P<model>[a-z0-9_.]+)\.stage(?P<stage>\d+)$")


def _create(model: str, stage: int, pretrained: bool = False):
    import timm

    cfg = timm.get_pretrained_cfg(model)
    # fixed-size models (ViTs) can take any size when asked to interpolate position embeddings
    extra = {"dynamic_img_size": True} if cfg is not None and cfg.fixed_input_size else {}
    return timm.create_model(model, pretrained=pretrained, features_only=True,
                             out_indices=(stage,), **extra)


def _convention(model: str) -> Convention:
    import timm

    cfg = timm.get_pretrained_cfg(model)
    mean = tuple(cfg.mean) if cfg is not None else (0.485, 0.456, 0.406)
    std = tuple(cfg.std) if cfg is not None else (0.229, 0.224, 0.225)
    return Convention(f"timm {model}", mean, std)


def build(model: str, stage: int, weights: str = "imagenet") -> LayerNet:
    if weights == "imagenet":
        # timm downloads (or reads its cache) while creating the model
        net = fetch_pretrained(lambda: _create(model, stage, pretrained=True),
                               f"timm model '{model}'")
    else:
        net = load_weights(_create(model, stage), weights, None, f"timm model '{model}'")
    return LayerNet(Preprocess(_convention(model)), net)


@lru_cache(maxsize=None)
def layout(model: str, stage: int):
    return layer_layout(lambda: _create(model, stage),
                        f"timm {model} feature_info[{stage}] output for an H x W image", {})


def _input_size(model: str) -> int:
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
        layout=lambda weights="imagenet": layout(model, stage),
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
    match = _NAME.match(name)
    if match is None:
        return None
    import timm

    model, stage = match["model"], int(match["stage"])
    if not timm.is_model(model):
        return None
    with torch.device("meta"):
        stages = len(timm.create_model(model, features_only=True).feature_info)
    if stage >= stages:
        raise FeatinvError(f"timm model '{model}' has feature stages 0 to {stages - 1}, "
                           f"not {stage}.")
    return make_spec(model, stage)
