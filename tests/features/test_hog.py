"""HOG (VLFeat UoCTTI) against VLFeat: the stored reference vectors and, when libvl is installed,
the library itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import featinv.features.hog as hog_module
from featinv.errors import ShapeError
from featinv.features.hog import HOG, featinv_register_features, hog_uoctti
from featinv.representation.layout import CellGrid
from featinv.representation.spec import Extractor
from helpers import NO_REFERENCE, REFERENCE_FILES, needs_libvl, photo_like as _photo_like
from helpers import vl_hog as _vl_hog


def _hog_numpy(image: np.ndarray, cell_size: int = 8, num_orientations: int = 9) -> np.ndarray:
    """Our HOG of one (H, W) image, as VLFeat's (Hc, Wc, D) array."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return hog_uoctti(x, cell_size, num_orientations)[0].permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- stored VLFeat reference


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REFERENCE_FILES]
                         or [pytest.param(None, marks=pytest.mark.skip(reason=NO_REFERENCE))])
def test_matches_vlfeat_reference(path):
    data = np.load(path)
    image, expected = data["image"], data["hog"]
    assert image.shape == (128, 128) and expected.shape == (16, 16, 31)
    ours = _hog_numpy(image)
    assert ours.shape == expected.shape
    err = np.abs(ours - expected).max()
    assert err <= 1e-4, f"{path.stem}: max abs error {err:.3g} against vl_hog(im, 8)"


# ---------------------------------------------------------------- shapes, batching, gradients


@pytest.mark.parametrize("size,cells", [((99, 131), (12, 16)), ((17, 200), (2, 25)),
                                        ((8, 8), (1, 1)), ((12, 12), (2, 2)),
                                        ((128, 128), (16, 16)), ((4, 133), (1, 17))])
def test_output_shape(size, cells):
    out = hog_uoctti(torch.rand(2, 1, *size))
    assert tuple(out.shape) == (2, 31, *cells)
    assert out.dtype == torch.float32
    assert CellGrid(31, 8, rounding="half_up")(*size).shape == (31, *cells)


@pytest.mark.parametrize("cell_size", [4, 6, 16])
def test_output_shape_other_cells(cell_size):
    h, w = 50, 77
    out = HOG(cell_size)(torch.rand(1, 1, h, w))
    half = cell_size // 2
    assert tuple(out.shape) == (1, 31, (h + half) // cell_size, (w + half) // cell_size)


def test_number_of_orientations():
    assert tuple(hog_uoctti(torch.rand(1, 1, 40, 40), 8, 4).shape) == (1, 16, 5, 5)


def test_too_small_is_refused():
    with pytest.raises(ShapeError):
        hog_uoctti(torch.rand(1, 1, 3, 40))
    with pytest.raises(ShapeError):
        hog_uoctti(torch.rand(1, 3, 40, 40))  # not gray


def test_batch_equals_single_images():
    x = torch.stack([torch.from_numpy(_photo_like(45, 61, 1)), torch.rand(45, 61)])[:, None]
    together = hog_uoctti(x)
    for i in range(2):
        alone = hog_uoctti(x[i:i + 1])
        torch.testing.assert_close(together[i:i + 1], alone, rtol=0, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def test_deterministic():
    x = torch.rand(3, 1, 64, 72)
    assert torch.equal(hog_uoctti(x), hog_uoctti(x))


def test_gradient_flows():
    x = torch.from_numpy(_photo_like(40, 52, 2))[None, None].requires_grad_(True)
    hog_uoctti(x).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_gradient_finite_on_flat_images():
    # sqrt'(0) is infinite: flat regions must not turn the gradient into NaN
    x = torch.full((1, 1, 24, 24), 0.5, requires_grad=True)
    hog_uoctti(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.slow
def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 11, 13, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: hog_uoctti(t, 4), (x,), eps=1e-7, atol=1e-6)


def test_value_ranges():
    images = [torch.from_numpy(_photo_like(96, 80, s)) for s in range(3)] + [torch.rand(96, 80)]
    if REFERENCE_FILES:
        images += [torch.from_numpy(np.load(p)["image"][:96, :80]) for p in REFERENCE_FILES]
    out = hog_uoctti(torch.stack(images)[:, None])
    assert out.min() >= 0
    assert out[:, :27].max() <= 0.4 + 1e-6
    assert out[:, 27:].max() <= 0.4243 + 1e-6
    assert out[:, 27:].max() > 0.1  # the texture channels are not empty


def test_float_and_int64_vote_indices_agree(monkeypatch):
    x = torch.from_numpy(_photo_like(70, 90, 3))[None, None]
    fast = hog_uoctti(x)
    monkeypatch.setattr(hog_module, "_FLOAT_INDEX_LIMIT", 0)
    torch.testing.assert_close(hog_uoctti(x), fast, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = torch.stack([torch.from_numpy(_photo_like(99, 131, s)) for s in range(4)])[:, None]
    cpu = hog_uoctti(x)
    xc = x.cuda().requires_grad_(True)
    gpu = hog_uoctti(xc)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
    gpu.sum().backward()
    assert torch.isfinite(xc.grad).all() and xc.grad.abs().sum() > 0


# ---------------------------------------------------------------- plugin registration


def test_registers_as_plugin():
    specs = []
    featinv_register_features(specs.append)
    (spec,) = specs
    assert spec.name == "hog" and spec.input == "gray" and spec.differentiable
    assert spec.decoder_family == "two_stream"
    params = spec.resolve_params({})
    assert params == {"cell_size": 8, "num_orientations": 9, "backend": "torch"}
    ext = Extractor(spec, params, spec.build(**params))
    out = ext(torch.rand(2, 3, 99, 131))
    assert tuple(out.shape) == (2, *ext.layout(99, 131).shape) == (2, 31, 12, 16)
    ext4 = Extractor(spec, {"cell_size": 4}, spec.build(cell_size=4))
    assert tuple(ext4(torch.rand(1, 3, 30, 30)).shape) == (1, *ext4.layout(30, 30).shape)


# ---------------------------------------------------------------- VLFeat itself, through ctypes


@needs_libvl
@pytest.mark.skipif(not REFERENCE_FILES, reason=NO_REFERENCE)
def test_ctypes_call_reproduces_reference():
    data = np.load(REFERENCE_FILES[0])
    assert np.abs(_vl_hog(data["image"], 8) - data["hog"]).max() <= 1e-6


@needs_libvl
@pytest.mark.parametrize("size", [(99, 131), (17, 200), (8, 8), (12, 12), (4, 5), (133, 64)])
@pytest.mark.parametrize("kind", ["uniform", "photo", "levels"])
def test_matches_libvl_odd_sizes(size, kind):
    seed = 10 * (size[0] * 1000 + size[1]) + ["uniform", "photo", "levels"].index(kind)
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        image = rng.random(size, dtype=np.float32)
    elif kind == "photo":
        image = _photo_like(*size, seed)
    else:  # few grey levels: exact ties between orientation scores everywhere
        image = (rng.integers(0, 4, size) / 3).astype(np.float32)
    for matlab in (True, False):
        expected = _vl_hog(image, 8, matlab=matlab)
        ours = _hog_numpy(image)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= 1e-5, f"{kind} {size} matlab={matlab}"


@needs_libvl
@pytest.mark.parametrize("cell_size,num_orientations", [(4, 9), (6, 9), (5, 9), (16, 9), (3, 9),
                                                        (8, 4), (8, 7), (6, 1), (8, 12)])
def test_matches_libvl_other_parameters(cell_size, num_orientations):
    for seed, (h, w) in enumerate([(37, 50), (64, 29)]):
        for image in (_photo_like(h, w, seed), np.random.default_rng(seed).integers(0, 5, (h, w))):
            expected = _vl_hog(image, cell_size, num_orientations)
            ours = _hog_numpy(image, cell_size, num_orientations)
            assert ours.shape == expected.shape
            assert np.abs(ours - expected).max() <= 1e-5


@needs_libvl
def test_matches_libvl_on_axis_aligned_and_diagonal_edges():
    # pure x, pure y and diagonal gradients sit exactly on (or between) orientation bins
    yy, xx = np.mgrid[:40, :48].astype(np.float32)
    images = [yy / 40, xx / 48, (xx + yy) / 90, (xx - yy) / 90 + 0.5, -(2 * xx + yy) / 150,
              ((xx // 3 + 2 * (yy // 5)) % 4) / 3, ((xx + yy) % 2), np.full_like(xx, 0.3)]
    for image in images:
        for num_orientations in (9, 2, 3, 6, 8):
            expected = _vl_hog(image, 8, num_orientations)
            ours = _hog_numpy(image, 8, num_orientations)
            assert np.abs(ours - expected).max() <= 1e-5
