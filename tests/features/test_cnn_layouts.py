"""CNN layouts from declared conv/pool arithmetic equal those of the real networks (meta device)."""
import pytest
import torch

from featinv.errors import ShapeError
from featinv.features import alexnet, squeezenet, timm_stages
from featinv.features.cnn import Window, layer_rule

SIDES = (1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 128, 224, 227)


def _same_rule(declared, build_meta):
    """Every side the declared rule accepts gives the network's layout; it accepts exactly the
    sides the network accepts."""
    real = layer_rule(build_meta, "meta pass", {})
    assert declared.smallest_side == real.smallest_side
    for side in SIDES:
        if side < declared.smallest_side:
            with pytest.raises(ShapeError):
                declared(side, side)
            continue
        assert declared(side, side + 3) == real(side, side + 3), side


@pytest.mark.parametrize("layer", list(alexnet.LAYERS))
def test_alexnet_layouts_match_torchvision(layer):
    from torchvision.models import alexnet as build

    _same_rule(alexnet.layout_rule(layer), lambda: alexnet._cut(build(weights=None), layer))


@pytest.mark.parametrize("layer", list(squeezenet.LAYERS))
def test_squeezenet_layouts_match_torchvision(layer):
    from torchvision.models import squeezenet1_0 as build

    _same_rule(squeezenet.layout_rule(layer), lambda: squeezenet._cut(build(weights=None), layer))


@pytest.mark.slow
@pytest.mark.parametrize("model, stage", [(m, s) for m, stages in timm_stages.LISTED.items()
                                          for s in stages])
def test_listed_timm_layouts_match_timm(model, stage):
    import timm

    _same_rule(timm_stages.layout_rule(model, stage), lambda: timm_stages._create(model, stage))
    assert timm_stages.KNOWN[model][0] == timm.get_pretrained_cfg(model).input_size[-1]


def test_window_follows_pytorch_rounding():
    for n in range(1, 40):
        x = torch.zeros(1, 1, n, n)
        for window in (Window(3, 2, ceil=True), Window(3, 2, 1, ceil=True), Window(2, 2)):
            pool = torch.nn.MaxPool2d(window.kernel, window.stride, window.padding,
                                      ceil_mode=window.ceil)
            if window(n) < 1:
                with pytest.raises(RuntimeError):
                    pool(x)
            else:
                assert pool(x).shape[-1] == window(n), (window, n)
