"""AlexNet layers (torchvision's architecture), one representation per row of the paper's Table 1.

"Output of a layer" is the output of its last processing step, as the paper defines it:

    layer   steps (paper)                      torchvision modules          layout at 227 px
    conv1   conv1 relu1 mpool1 norm1           features[0:3]                64 x 27 x 27
    conv2   conv2 relu2 mpool2 norm2           features[3:6]                192 x 13 x 13
    conv3   conv3 relu3                        features[6:8]                384 x 13 x 13
    conv4   conv4 relu4                        features[8:10]               256 x 13 x 13
    conv5   conv5 relu5 mpool5                 features[10:13]              256 x 6 x 6
    fc6     fc6 relu6 drop6                    avgpool, classifier[0:3]     4096
    fc7     fc7 relu7 drop7                    classifier[3:6]              4096
    fc8     fc8                                classifier[6]                1000

torchvision's AlexNet (the "one weird trick" variant) has no local response normalisation and
64/192 channels in conv1/conv2 where Caffe's has 96/256; dropout is the identity at inference.
Input: torchvision's ImageNet convention at 227 px, as in the paper.
"""
from __future__ import annotations

from functools import lru_cache

from torch import nn

from ..representation.hookspecs import hookimpl
from ..representation.spec import FeatureSpec, Param
from .cnn import (CONVENTIONS, LayerNet, Preprocess, Window, check_download, load_weights,
                  torch_hub_file, window_rule)

IMAGE_SIZE = 227
# layer -> (number of modules of `features`, of `classifier`); classifier > 0 adds avgpool+flatten
LAYERS = {"conv1": (3, 0), "conv2": (6, 0), "conv3": (8, 0), "conv4": (10, 0), "conv5": (13, 0),
          "fc6": (13, 3), "fc7": (13, 6), "fc8": (13, 7)}
CHANNELS = {"conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "fc6": 4096,
            "fc7": 4096, "fc8": 1000}
# index in `features` -> its convolution or pooling window (layouts without building the network;
# tests/features/test_cnn_layouts.py checks them against torchvision's)
WINDOWS = {0: Window(11, 4, 2), 2: Window(3, 2), 3: Window(5, 1, 2), 5: Window(3, 2),
           6: Window(3, 1, 1), 8: Window(3, 1, 1), 10: Window(3, 1, 1), 12: Window(3, 2)}


def _cut(net: nn.Module, layer: str) -> nn.Sequential:
    n_features, n_classifier = LAYERS[layer]
    steps = list(net.features[:n_features])
    if n_classifier:
        steps += [net.avgpool, nn.Flatten(1), *net.classifier[:n_classifier]]
    return nn.Sequential(*steps)


def _pretrained() -> dict:
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    if not torch_hub_file(weights.url).is_file():
        check_download(weights.url)
    return weights.get_state_dict(progress=False)


def build(layer: str, weights: str = "imagenet") -> LayerNet:
    from torchvision.models import alexnet

    net = load_weights(alexnet(weights=None), weights, _pretrained, "torchvision AlexNet")
    return LayerNet(Preprocess(CONVENTIONS["torchvision"]), _cut(net, layer))


@lru_cache(maxsize=None)
def layout_rule(layer: str):
    n_features, n_classifier = LAYERS[layer]
    return window_rule(CHANNELS[layer], tuple(w for i, w in WINDOWS.items() if i < n_features),
                         f"AlexNet {layer} output for an H x W image (227 x 227 in the paper)",
                         vector=n_classifier > 0)


def _spec(layer: str) -> FeatureSpec:
    channels = "conv" if layer.startswith("conv") else "fully connected"
    return FeatureSpec(
        name=f"alexnet.{layer}",
        description=f"AlexNet (torchvision) {channels} layer {layer.upper()}, output of its last "
                    "processing step (paper Table 1)",
        input="rgb", differentiable=True,
        build=lambda weights="imagenet": build(layer, weights),
        rule=lambda weights="imagenet": layout_rule(layer),
        params=(Param("weights", "imagenet", "'imagenet' (torchvision download/cache), a "
                      ".safetensors/.npz path, or 'random'"),),
        image_size=IMAGE_SIZE)


@hookimpl
def featinv_register_features(register):
    for layer in LAYERS:
        register(_spec(layer))
