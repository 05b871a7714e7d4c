"""Tests of the block DCT plugin: the transform itself and its registration with featinv."""
from importlib.metadata import PackageNotFoundError, distribution

import pytest
import torch
import torch.nn.functional as F

import featinv
import featinv.representation.plugins
import featinv_dct
from featinv_dct import BlockDCT, dct_basis, zigzag

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# libjpeg's jpeg_natural_order: zig-zag position -> row * 8 + col
JPEG_ZIGZAG = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
]


@pytest.fixture(scope="module")
def registered():
    """Make sure 'dct' is registered: by its entry point when installed, else by hand."""
    added = "dct" not in featinv.list_features()
    if added:
        featinv.representation.plugins.register_plugin(featinv_dct, "dct")
    yield
    if added:
        featinv.representation.plugins.unregister_plugin("dct")


def test_zigzag_is_jpegs():
    assert [r * 8 + c for r, c in zigzag(8)] == JPEG_ZIGZAG


def test_basis_is_orthonormal():
    basis = dct_basis(8, 64).flatten(1).double()
    torch.testing.assert_close(basis @ basis.T, torch.eye(64, dtype=torch.float64),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [8, 4, 5])
def test_dc_is_block_mean_times_block(block, device):
    x = torch.rand(2, 1, 6 * block + 3, 5 * block + 1, device=device)
    dc = BlockDCT(block, 1).to(device)(x)  # the DC channel alone
    torch.testing.assert_close(dc, F.avg_pool2d(x, block) * block, atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("block", [8, 4, 5])
def test_full_dct_is_invertible(block, device):
    x = torch.rand(3, 1, 4 * block, 6 * block, device=device)
    dct = BlockDCT(block, block * block).to(device)
    coeffs = dct(x)  # (3, K, 4, 6)
    # the basis is orthonormal: multiply by its transpose to get each block's pixels back
    pixels = dct.basis.flatten(1).T @ coeffs.flatten(2)  # (3, block * block, 4 * 6)
    back = F.fold(pixels, x.shape[-2:], kernel_size=block, stride=block)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(dct.inverse(coeffs), x, atol=1e-5, rtol=0)


def test_matches_strided_convolution_with_the_basis():
    x = torch.rand(2, 1, 45, 38)
    dct = BlockDCT(8, 20)
    reference = F.conv2d(x, dct.basis[:, None], stride=8)
    torch.testing.assert_close(dct(x), reference, atol=1e-5, rtol=0)


def test_inverse_of_dc_alone_is_the_block_mean():
    x = torch.rand(2, 1, 24, 32)
    dct = BlockDCT(8, 1)
    means = F.avg_pool2d(x, 8)
    torch.testing.assert_close(dct.inverse(dct(x)), F.interpolate(means, scale_factor=8),
                               atol=1e-5, rtol=0)


def test_pixels_past_the_last_block_are_dropped():
    x = torch.rand(1, 1, 21, 30)
    y = x.clone()
    y[..., 16:, :] = 0
    y[..., :, 24:] = 0
    dct = BlockDCT()
    torch.testing.assert_close(dct(x), dct(y), atol=0, rtol=0)


@pytest.mark.parametrize("size", [(8, 8), (9, 17), (31, 33), (63, 65), (127, 64)])
@pytest.mark.parametrize("block, coefficients", [(8, 15), (8, 64), (5, 7), (3, 1)])
def test_layout_at_odd_sizes(registered, size, block, coefficients):
    h, w = size
    dct = featinv.get_feature("dct", block=block, coefficients=coefficients)
    out = dct(torch.rand(2, 3, h, w))
    assert out.shape == (2, coefficients, h // block, w // block)
    assert out.dtype == torch.float32
    assert dct.layout(h, w).shape == out.shape[1:]


def test_too_small_image_is_a_shape_error(registered):
    with pytest.raises(featinv.ShapeError, match="too small"):
        featinv.get_feature("dct")(torch.rand(1, 3, 7, 64))


@pytest.mark.parametrize("block, coefficients", [(8, 0), (8, 65), (4, 17), (0, 1),
                                                 (256, 65536), (65, 1), (64, 4097)])
def test_invalid_params_are_clear_errors(registered, block, coefficients):
    # out of the declared bounds: featinv's own message; within them but inconsistent: the plugin's
    with pytest.raises(featinv.FeatinvError, match="dct: '(coefficients|block)' must be|"
                       "'dct' does not accept (coefficients|block)="):
        featinv.get_feature("dct", block=block, coefficients=coefficients)


def test_differentiable(registered):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    featinv.get_feature("dct")(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spec(registered):
    spec = featinv.get_spec("dct")
    assert (spec.input, spec.differentiable, spec.decoder_family) == ("gray", True, "two_stream")
    assert spec.defaults == {"block": 8, "coefficients": 15}
    assert spec.layout_rule().describe() == "15 x floor(H/8) x floor(W/8)"


def test_entry_point():
    try:
        dist = distribution("featinv-dct")
    except PackageNotFoundError:
        pytest.skip("featinv-dct is not installed (pip install -e .)")
    (ep,) = [ep for ep in dist.entry_points if ep.group == "featinv"]
    assert (ep.name, ep.load()) == ("dct", featinv_dct)
