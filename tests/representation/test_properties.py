"""Property-based tests (hypothesis) over image and batch sizes, for every registered representation.

For any size a representation accepts, its output has exactly the declared layout, batch after
batch; below its smallest side it refuses with one clear message. Network representations use
random weights; every timm model is covered at two of its stages (the code is shared).
"""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featinv
from featinv.errors import FeatinvError

TIMM = {"timm.resnet18.stage1", "timm.resnet18.stage4", "timm.resnet50.stage2",
        "timm.convnext_tiny.stage0", "timm.convnext_tiny.stage3", "timm.efficientnet_b0.stage2",
        "timm.efficientnet_b0.stage4"}
NAMES = [n for n in featinv.list_features() if not n.startswith("timm.") or n in TIMM]
HEAVY = ("alexnet.", "squeezenet.", "timm.")  # fewer examples: a forward pass costs more


@lru_cache(maxsize=None)
def extractor(name: str) -> featinv.Extractor:
    torch.manual_seed(0)
    random = {"weights": "random"} if "weights" in featinv.get_spec(name).defaults else {}
    return featinv.get_feature(name, **random)


def _settings(name: str):
    return settings(max_examples=4 if name.startswith(HEAVY) else 15, deadline=None,
                    derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", NAMES)
def test_output_has_the_declared_layout_for_every_accepted_size(name):
    ext = extractor(name)
    low = ext.rule.smallest_side
    span = 24 if name.startswith(HEAVY) else 70

    @_settings(name)
    @given(h=st.integers(low, low + span), w=st.integers(low, low + span),
           batch=st.integers(1, 3))
    def check(h, w, batch):
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(h * 1000 + w))
        with torch.no_grad():
            out = ext(x)
        assert tuple(out.shape) == (batch, *ext.layout(h, w).shape)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()

    check()


@pytest.mark.parametrize("name", NAMES)
def test_sizes_below_the_smallest_are_refused_clearly(name):
    ext = extractor(name)
    low = ext.rule.smallest_side
    if low <= 1:
        pytest.skip(f"{name} accepts every size down to 1 px")

    @_settings(name)
    @given(small=st.integers(1, low - 1), other=st.integers(low, low + 16),
           small_is_height=st.booleans())
    def check(small, other, small_is_height):
        h, w = (small, other) if small_is_height else (other, small)
        with pytest.raises(FeatinvError) as info:
            ext(torch.rand(1, 3, h, w))
        message = str(info.value)
        assert "\n" not in message and str(low) in message
        assert f"{w}x{h} px (width x height)" in message
        with pytest.raises(FeatinvError):
            ext.layout(h, w)

    check()
