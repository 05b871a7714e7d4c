"""SqueezeNet v1.0 layers (torchvision's ``squeezenet1_0``), with Caffe-convention weights too.

Layers follow the paper's rule for AlexNet: a pooling step belongs to the layer before it.

    layer    torchvision modules                       layout at 227 px
    conv1    features[0:3] (conv 7x7/2, relu, pool)     96 x 55 x 55
    fire2    features[3]                               128 x 55 x 55
    fire3    features[4]                               128 x 55 x 55
    fire4    features[5:7] (fire4, pool)               256 x 27 x 27
    fire5    features[7]                               256 x 27 x 27
    fire6    features[8]                               384 x 27 x 27
    fire7    features[9]                               384 x 27 x 27
    fire8    features[10:12] (fire8, pool)             512 x 13 x 13
    fire9    features[12]                              512 x 13 x 13
    conv10   classifier[0:3] (dropout, conv 1x1, relu) 1000 x 13 x 13
    pool10   classifier[3] (global average), flatten   1000 (class scores before softmax)

Weights: ``deepcompression`` (the default, shipped in the package: the ImageNet-trained Caffe
SqueezeNet of Deep Compression by SqueezeNet's authors, BSD 2-clause, converted to torchvision key
names; see ``featinv/weights/NOTICE.md``), ``imagenet`` (torchvision's download, torchvision
convention), a file, or ``random``. Caffe weights expect Caffe's input convention (BGR, 0-255, mean
[104, 117, 123]): ``convention="auto"`` picks it for ``deepcompression`` and for files whose name
contains "caffe", ``"caffe"``/``"torchvision"`` force one.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from torch import nn

from ..errors import FeatinvError
from ..representation.hookspecs import hookimpl
from ..representation.spec import FeatureSpec, Param
from .cnn import (CONVENTIONS, WEIGHTS_DIR, LayerNet, Preprocess, Window, check_download,
                  load_weights, torch_hub_file, window_rule)

IMAGE_SIZE = 227
# bytes a layer's forward pass takes per input pixel beyond the image, for any layer (conv1's
# 7x7 convolution is the peak: its unfolded input and 96 channels at half the side); measured
# 228-237 B/px from 512 to 1024 px and 203 at 2048 px (0.85 GB), one thread; 20 % added
MEMORY_PER_PIXEL = 285
# weights shipped in the package: name -> (file, input convention); the first is the default
SHIPPED_WEIGHTS = {"deepcompression": (WEIGHTS_DIR / "squeezenet1_0_deepcompression_caffe.npz",
                                       "caffe")}
DEFAULT_WEIGHTS = "deepcompression"
# layer -> (number of modules of `features`, of `classifier`)
LAYERS = {"conv1": (3, 0), "fire2": (4, 0), "fire3": (5, 0), "fire4": (7, 0), "fire5": (8, 0),
          "fire6": (9, 0), "fire7": (10, 0), "fire8": (12, 0), "fire9": (13, 0),
          "conv10": (13, 3), "pool10": (13, 4)}
CHANNELS = {"conv1": 96, "fire2": 128, "fire3": 128, "fire4": 256, "fire5": 256, "fire6": 384,
            "fire7": 384, "fire8": 512, "fire9": 512, "conv10": 1000, "pool10": 1000}
# index in `features` -> the window of the modules that change the side (fire modules keep it;
# tests/features/test_cnn_layouts.py checks these against torchvision's network)
WINDOWS = {0: Window(7, 2), 2: Window(3, 2, ceil=True), 6: Window(3, 2, ceil=True),
           11: Window(3, 2, ceil=True)}


def _cut(net: nn.Module, layer: str) -> nn.Sequential:
    n_features, n_classifier = LAYERS[layer]
    steps = [*net.features[:n_features], *net.classifier[:n_classifier]]
    if n_classifier == 4:
        steps.append(nn.Flatten(1))
    return nn.Sequential(*steps)


def _pretrained() -> dict:
    from torchvision.models import SqueezeNet1_0_Weights

    weights = SqueezeNet1_0_Weights.IMAGENET1K_V1
    if not torch_hub_file(weights.url).is_file():
        check_download(weights.url)
    return weights.get_state_dict(progress=False)


def convention_for(weights: str, convention: str) -> str:
    """``auto``: the shipped weights' own convention (Caffe's for ``deepcompression``), Caffe's
    for weight files named ``*caffe*``, else torchvision's."""
    if convention != "auto":
        return convention
    if weights in SHIPPED_WEIGHTS:
        return SHIPPED_WEIGHTS[weights][1]
    is_file = weights not in ("imagenet", "random")
    return "caffe" if is_file and "caffe" in Path(weights).name.lower() else "torchvision"


def full_network(weights: str = DEFAULT_WEIGHTS) -> nn.Module:
    """The whole ``squeezenet1_0`` (logits ``(B, 1000)``) with ``weights`` loaded."""
    from torchvision.models import squeezenet1_0

    return load_weights(squeezenet1_0(weights=None), weights, _pretrained, "SqueezeNet 1.0",
                        {name: file for name, (file, _) in SHIPPED_WEIGHTS.items()})


def build(layer: str, weights: str = DEFAULT_WEIGHTS, convention: str = "auto") -> LayerNet:
    name = convention_for(weights, convention)
    if name not in CONVENTIONS:
        raise FeatinvError(f"unknown input convention {name!r}")
    return LayerNet(Preprocess(CONVENTIONS[name]), _cut(full_network(weights), layer))


@lru_cache(maxsize=None)
def layout_rule(layer: str):
    n_features, n_classifier = LAYERS[layer]
    return window_rule(CHANNELS[layer], tuple(w for i, w in WINDOWS.items() if i < n_features),
                         f"SqueezeNet 1.0 {layer} output for an H x W image (227 x 227 in Caffe)",
                         vector=n_classifier == 4)


def _spec(layer: str) -> FeatureSpec:
    return FeatureSpec(
        name=f"squeezenet.{layer}",
        description=f"SqueezeNet 1.0 (torchvision architecture) layer {layer}",
        input="rgb", differentiable=True,
        build=lambda weights=DEFAULT_WEIGHTS, convention="auto": build(layer, weights,
                                                                       convention),
        rule=lambda weights=DEFAULT_WEIGHTS, convention="auto": layout_rule(layer),
        params=(Param("weights", DEFAULT_WEIGHTS, "'deepcompression' (ImageNet-trained, shipped "
                      "with featinv, BSD 2-clause), 'imagenet' (torchvision download/cache), a "
                      ".safetensors/.npz path, or 'random'"),
                Param("convention", "auto", "input convention: auto (caffe for deepcompression "
                      "and *caffe* files), torchvision or caffe",
                      choices=("auto", "torchvision", "caffe"))),
        image_size=IMAGE_SIZE, memory=MEMORY_PER_PIXEL)


@hookimpl
def featinv_register_features(register):
    for layer in LAYERS:
        register(_spec(layer))
