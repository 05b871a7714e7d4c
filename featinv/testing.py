"""The representation contract, as tests any plugin can run on itself.

Use the mix-in class in a plugin's own test suite::

    from featinv.testing import ContractSuite

    class TestMyFeature(ContractSuite):
        feature = "my_feature"        # the registered name
        params = {}                   # optional parameters

or call the ``check_*`` functions directly (each raises ``AssertionError`` with a message that
names the representation). featinv's own tests run them over every registered representation.
"""
from __future__ import annotations

from typing import Any

import torch

from .decoders.networks import build_decoder
from .errors import FeatinvError, PluginError, pixel_size
from .representation.guard import exception_text
from .representation.registry import get_feature
from .representation.spec import Extractor, rgb_to_gray

__all__ = ["ContractSuite", "check_all", "check_layout", "check_image_size",
           "check_finite_float32", "check_batch_independence", "check_determinism",
           "check_gradients", "check_decoder_step", "test_sizes", "actual_smallest_side"]


def test_sizes(extractor: Extractor) -> list[tuple[int, int]]:
    """A few image sizes (H, W) the representation must accept, odd and non-square ones too."""
    m = extractor.rule.smallest_side
    base = max(m, 40)
    sizes = [(m, m), (base + 7, base + 19), (max(m, 64), max(m, 64))]
    return list(dict.fromkeys(sizes))


test_sizes.__test__ = False  # not a pytest test


def _images(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth random structure plus noise: closer to photos than white noise
    coarse = torch.rand(batch, 3, max(h // 8, 2), max(w // 8, 2), generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (0.8 * x + 0.2 * torch.rand(batch, 3, h, w, generator=g)).clamp(0, 1)


def _module_input(ext: Extractor, x: torch.Tensor) -> torch.Tensor:
    return rgb_to_gray(x) if ext.spec.input == "gray" else x


def _works_at(ext: Extractor, side: int) -> bool:
    try:
        with torch.no_grad():
            ext.module(_module_input(ext, _images(1, side, side)))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable at this size"
        return False


def actual_smallest_side(ext: Extractor, limit: int = 1024) -> int | None:
    """The smallest square side (px) at which ``ext``'s module runs without an error, searched
    from the declared smallest side up to ``limit`` (doubling, then bisecting); None if none."""
    low = ext.rule.smallest_side  # fails (or is the answer)
    if _works_at(ext, low):
        return low
    high = low
    while True:
        if high >= limit:
            return None
        high = min(2 * high, limit)
        if _works_at(ext, high):
            break
        low = high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _works_at(ext, mid) else (mid, high)
    return high


def _size_failure(ext: Extractor, h: int, w: int, exc: BaseException) -> AssertionError:
    """A failure at ``h x w`` px, a size the layout declares usable, as "declared vs actual"."""
    declared = ext.rule.smallest_side
    cause = exc.__cause__ if isinstance(exc, PluginError) and exc.__cause__ else exc
    error = (exception_text(cause).splitlines() or [""])[0]  # guarded: the plugin's __str__
    actual = actual_smallest_side(ext)
    if actual is not None and actual > declared:
        return AssertionError(
            f"{ext.name}: input too small: its layout declares a smallest side of {declared} px "
            f"(layout {ext.rule.describe()}), but it actually needs at least {actual}x{actual} "
            f"px (it fails at {pixel_size(w, h)} with {error}); declare min_size={actual} in "
            "the layout")
    return AssertionError(f"{ext.name}: fails on a batch of images of {pixel_size(w, h)}, a "
                          "size its "
                          f"layout declares usable (smallest side {declared} px): {error}")


def _features(ext: Extractor, x: torch.Tensor, raw: bool = False) -> torch.Tensor:
    """``ext(x)`` (``raw``: its module alone); a plugin's error at a size the layout declares
    usable becomes an ``AssertionError`` that compares the declared and actual smallest size."""
    try:
        return ext.module(_module_input(ext, x)) if raw else ext(x)
    except PluginError as exc:
        raise _size_failure(ext, *x.shape[-2:], exc) from exc
    except FeatinvError:
        raise
    except Exception as exc:  # noqa: BLE001 - a raw torch (or other) error from the module
        raise _size_failure(ext, *x.shape[-2:], exc) from exc


def check_layout(ext: Extractor) -> None:
    """Declared layout equals the real output shape at several sizes."""
    for h, w in test_sizes(ext):
        layout = ext.layout(h, w)
        x = _images(2, h, w)
        out = _features(ext, x, raw=True)
        want = (2, *layout.shape)
        assert tuple(out.shape) == want, (
            f"{ext.name}: declared layout {layout} at {pixel_size(w, h)} means output {want}, "
            f"got {tuple(out.shape)}")


def check_image_size(ext: Extractor) -> None:
    """The image size a representation declares it is meant for (``spec.image_size``, used by
    training and evaluation when not told otherwise) is one it accepts, with its declared layout."""
    size = ext.spec.image_size
    if size is None:
        return
    smallest = ext.rule.smallest_side
    assert size >= smallest, (f"{ext.name}: declares image_size {size} px, below the smallest "
                              f"side its layout accepts ({smallest} px)")
    layout = ext.layout(size, size)
    out = _features(ext, _images(1, size, size), raw=True)
    assert tuple(out.shape) == (1, *layout.shape), (
        f"{ext.name}: at its declared image_size ({size} px) the layout {layout} means output "
        f"{(1, *layout.shape)}, got {tuple(out.shape)}")


def check_finite_float32(ext: Extractor) -> None:
    """Output is float32 and finite, also for constant (flat) images."""
    for x in (_images(2, *test_sizes(ext)[1]), torch.zeros(1, 3, *test_sizes(ext)[0]),
              torch.ones(1, 3, *test_sizes(ext)[0])):
        out = _features(ext, x)
        assert out.dtype == torch.float32, f"{ext.name}: output dtype {out.dtype}, not float32"
        assert torch.isfinite(out).all(), f"{ext.name}: non-finite values in the output"


def check_batch_independence(ext: Extractor, atol: float = 1e-5) -> None:
    """Each image's features do not depend on the other images of the batch."""
    x = _images(3, *test_sizes(ext)[1])
    together = _features(ext, x)
    for i in range(3):
        alone = _features(ext, x[i:i + 1])[0]
        err = (together[i] - alone).abs().max().item()
        assert err <= atol * max(1.0, alone.abs().max().item()), (
            f"{ext.name}: image {i} gets different features in a batch (max diff {err:.3g})")


def check_determinism(ext: Extractor) -> None:
    """The same input gives the same features twice."""
    x = _images(2, *test_sizes(ext)[1])
    a, b = _features(ext, x), _features(ext, x)
    assert torch.equal(a, b), f"{ext.name}: two calls on the same images differ"


def check_gradients(ext: Extractor) -> None:
    """Gradients reach the image when the representation declares itself differentiable."""
    if not ext.spec.differentiable:
        return
    x = _images(2, *test_sizes(ext)[1]).requires_grad_(True)
    _features(ext, x).pow(2).sum().backward()
    assert x.grad is not None, f"{ext.name}: declared differentiable, but no gradient reached the input"
    assert torch.isfinite(x.grad).all(), f"{ext.name}: non-finite gradient"
    assert x.grad.abs().sum() > 0, f"{ext.name}: declared differentiable, but the gradient is zero"


def check_decoder_step(ext: Extractor) -> None:
    """The generic builder makes a decoder for the layout, and one Adam step changes it."""
    size = max(ext.rule.smallest_side, 32)
    x = _images(2, size, size)
    layout = ext.layout(size, size)
    decoder = build_decoder(ext.spec, layout, size, "compact", width=0.125)
    decoder.set_feature_stats(_features(ext, x))
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in decoder.parameters()]
    y = decoder(ext(x), size=(size, size))
    assert y.shape == x.shape, f"{ext.name}: decoder output {tuple(y.shape)}, expected {tuple(x.shape)}"
    loss = torch.nn.functional.mse_loss(y, x)
    assert torch.isfinite(loss), f"{ext.name}: decoder loss is not finite"
    loss.backward()
    opt.step()
    changed = any(not torch.equal(a, b) for a, b in zip(before, decoder.parameters()))
    assert changed, f"{ext.name}: one training step left the decoder unchanged"


CHECKS = (check_layout, check_image_size, check_finite_float32, check_batch_independence,
          check_determinism, check_gradients, check_decoder_step)


def check_all(name: str, **params: Any) -> None:
    """Run every contract check on representation ``name``."""
    ext = get_feature(name, **params)
    for check in CHECKS:
        check(ext)


class ContractSuite:
    """Mix-in test class: set ``feature`` (and optionally ``params``); pytest runs each check."""

    feature: str = ""
    params: dict[str, Any] = {}

    def _extractor(self) -> Extractor:
        assert self.feature, "set the class attribute 'feature' to the representation's name"
        return get_feature(self.feature, **self.params)

    def test_image_size(self):
        check_image_size(self._extractor())

    def test_layout_matches_output(self):
        check_layout(self._extractor())

    def test_finite_float32(self):
        check_finite_float32(self._extractor())

    def test_batch_independence(self):
        check_batch_independence(self._extractor())

    def test_determinism(self):
        check_determinism(self._extractor())

    def test_gradients(self):
        check_gradients(self._extractor())

    def test_decoder_step(self):
        check_decoder_step(self._extractor())
