"""Invert a layer of your own network: a featinv plugin in one file.

The network here is a small made-up CNN; replace ``tiny_net`` and ``WEIGHTS`` with yours. Use it
from Python::

    import featinv, own_network_plugin
    featinv.representation.plugins.register_plugin(own_network_plugin, "tinynet")
    featinv.get_feature("tinynet.block2", weights="random")

or install it as a package with an entry point in the ``featinv`` group (docs/plugins.md) so the
command line finds it: ``featinv train -f tinynet.block2 -p weights=my.safetensors ...``.
"""
from __future__ import annotations

from torch import nn

import featinv
from featinv.features.cnn import CONVENTIONS, LayerNet, Preprocess, layer_rule, load_weights

LAYERS = {"block1": 2, "block2": 4}  # layer name -> number of modules of the network it keeps


def tiny_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())


def build(layer: str, weights: str) -> LayerNet:
    # weights: a .safetensors/.npz file with tiny_net()'s state-dict keys, or "random"
    net = load_weights(tiny_net(), weights, None, "TinyNet")
    return LayerNet(Preprocess(CONVENTIONS["torchvision"]), net[:LAYERS[layer]])


def spec(layer: str) -> featinv.FeatureSpec:
    return featinv.FeatureSpec(
        name=f"tinynet.{layer}", description=f"TinyNet {layer} (an example network)",
        input="rgb", differentiable=True,
        build=lambda weights="random": build(layer, weights),
        rule=lambda weights="random": layer_rule(lambda: tiny_net()[:LAYERS[layer]],
                                                  f"TinyNet {layer} output", {}),
        params=(featinv.Param("weights", "random", ".safetensors/.npz path, or 'random'"),),
        image_size=128)


@featinv.hookimpl
def featinv_register_features(register):
    for layer in LAYERS:
        register(spec(layer))
