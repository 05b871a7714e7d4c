"""Every registered representation passes the contract suite shipped in featinv.testing.

Network representations run with random weights (offline); of the listed timm stages a few
models are checked, which exercises the same code as the rest.
"""
from functools import lru_cache

import pytest
import torch

import featinv
from featinv import testing
from featinv.representation.plugins import plugin_infos

TIMM_CHECKED = {"timm.resnet18.stage0", "timm.resnet18.stage2", "timm.resnet18.stage4",
                "timm.convnext_tiny.stage1", "timm.efficientnet_b0.stage3"}
ALL = [n for n in featinv.list_features() if not n.startswith("timm.") or n in TIMM_CHECKED]


@lru_cache(maxsize=None)
def extractor(name: str) -> featinv.Extractor:
    torch.manual_seed(0)
    random = {"weights": "random"} if "weights" in featinv.get_spec(name).defaults else {}
    return featinv.get_feature(name, **random)


@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ALL)
def test_contract(name, check):
    check(extractor(name))


def test_example_plugin_is_found_through_its_entry_point():
    """plugins/featinv-dct is installed by the test set-up and found through group 'featinv'."""
    info = {p.name: p for p in plugin_infos()}
    assert "dct" in info, "install plugins/featinv-dct (see the README's test command)"
    assert info["dct"].source.startswith("entry point (featinv-dct")
    assert info["dct"].features == ["dct"] and info["dct"].error is None


class TestDctContract(testing.ContractSuite):
    """The example plugin runs the suite the way a third-party plugin would."""

    feature = "dct"
    params = {"coefficients": 10}


def test_contract_catches_a_broken_representation():
    """The suite can fail: a representation whose layout lies is caught."""
    from torch import nn

    spec = featinv.FeatureSpec(name="liar", description="declares 2 channels, returns 1",
                               input="gray", differentiable=True, build=lambda: nn.AvgPool2d(4),
                               rule=lambda: featinv.CellGrid(2, 4))
    ext = featinv.Extractor(spec, {}, nn.AvgPool2d(4))
    with pytest.raises(AssertionError, match="declared layout"):
        testing.check_layout(ext)


def test_contract_catches_an_image_size_below_the_smallest_side():
    """A representation meant for 8 px images whose layout needs 16 px fails check_image_size
    (and ContractSuite.test_image_size); declaring 16 px passes."""
    from torch import nn

    def spec(image_size):
        return featinv.FeatureSpec(name="small", description="pools to 4 numbers", input="gray",
                                   differentiable=True, build=lambda: nn.AdaptiveAvgPool2d(2),
                                   rule=lambda: featinv.FixedVector(4, min_size=16),
                                   image_size=image_size)

    def extractor(image_size):
        return featinv.Extractor(spec(image_size), {}, nn.Sequential(nn.AdaptiveAvgPool2d(2),
                                                                     nn.Flatten()))

    with pytest.raises(AssertionError, match="declares image_size 8 px, below the smallest side"):
        testing.check_image_size(extractor(8))
    testing.check_image_size(extractor(16))


def test_contract_reports_a_too_small_input_as_declared_vs_actual():
    """A module that fails with a raw torch error below 5 px while its layout declares 1 px:
    every check says what the layout declares and what the module actually needs."""
    from torch import nn

    class NeedsFive(nn.Module):  # a 5x5 convolution without padding: torch refuses 1x1 input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 5)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    spec = featinv.FeatureSpec(name="tiny", description="needs 5 px, declares 1",
                               input="gray", differentiable=True, build=NeedsFive,
                               rule=lambda: featinv.FixedVector(4))
    ext = featinv.Extractor(spec, {}, NeedsFive())
    with pytest.raises(RuntimeError):  # the raw torch error the suite translates
        ext.module(torch.zeros(1, 1, 1, 1))
    assert testing.actual_smallest_side(ext) == 5
    for check in (testing.check_layout, testing.check_finite_float32):
        with pytest.raises(AssertionError) as info:
            check(ext)
        message = str(info.value)
        assert "declares a smallest side of 1 px" in message, message
        assert "actually needs at least 5x5 px" in message and "min_size=5" in message
    fixed = featinv.FeatureSpec(name="tiny", description="declares what it needs",
                                input="gray", differentiable=True, build=NeedsFive,
                                rule=lambda: featinv.FixedVector(4, min_size=5))
    for check in testing.CHECKS:  # declared right, the same module passes
        check(featinv.Extractor(fixed, {}, NeedsFive()))
