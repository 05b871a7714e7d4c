"""LBP (VLFeat uniform-58) against VLFeat: the stored reference vectors and, when libvl is
installed, the library itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from featinv.errors import ShapeError
from featinv.features.lbp import LBP, featinv_register_features, lbp_mapping, lbp_uniform
from featinv.representation.layout import CellGrid
from featinv.representation.spec import Extractor
from helpers import NO_REFERENCE, REFERENCE_FILES, needs_libvl, photo_like as _photo_like
from helpers import vl_lbp as _vl_lbp


def _lbp_numpy(image: np.ndarray, cell_size: int = 16) -> np.ndarray:
    """Our LBP of one (H, W) image, as VLFeat's (Hc, Wc, 58) array."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return lbp_uniform(x, cell_size)[0].permute(1, 2, 0).numpy()


# ---------------------------------------------------------------- stored VLFeat reference


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in REFERENCE_FILES]
                         or [pytest.param(None, marks=pytest.mark.skip(reason=NO_REFERENCE))])
def test_matches_vlfeat_reference(path):
    data = np.load(path)
    image, expected = data["image"], data["lbp"]
    assert image.shape == (128, 128) and expected.shape == (8, 8, 58)
    ours = _lbp_numpy(image)
    assert ours.shape == expected.shape
    err = np.abs(ours - expected).max()
    assert err <= 1e-4, f"{path.stem}: max abs error {err:.3g} against vl_lbp(im, 16)"


# ---------------------------------------------------------------- the code table


def test_mapping_table():
    table = lbp_mapping()
    assert table.shape == (256,)
    assert table[0x00] == 56 and table[0xFF] == 56
    assert table[0b00000001] == 0  # E alone: run of 1 at bit 0
    assert table[0b00000110] == 7 * 1 + 1  # SE, S: run of 2 at bit 1
    assert table[0b10000001] == 7 * 7 + 1  # NE, E: run of 2 wrapping round at bit 7
    assert table[0b01111111] == 6  # 7 ones from bit 0
    assert table[0b00000101] == 57  # two runs: not uniform
    counts = torch.bincount(table, minlength=58)
    assert (counts[:56] == 1).all() and counts[56] == 2 and counts[57] == 256 - 58


def test_bits_and_strict_comparison():
    # one brighter neighbour at each position in turn; ties set no bit
    offsets = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
    for bit, (dx, dy) in enumerate(offsets):
        # a 3x3 image with cell size 3: one interior pixel, one cell
        image = torch.full((1, 1, 3, 3), 0.5)
        image[0, 0, 1 + dy, 1 + dx] = 0.9
        hist = lbp_uniform(image, 3)[0, :, 0, 0]
        expected = torch.zeros(58)
        expected[7 * bit] = 1.0
        torch.testing.assert_close(hist, expected, msg=f"bit {bit}")
    flat = lbp_uniform(torch.full((1, 1, 16, 16), 0.5))[0, :, 0, 0]
    assert flat[56] == pytest.approx(1.0) and flat.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- shapes, batching, norms


@pytest.mark.parametrize("size,cells", [((99, 131), (6, 8)), ((17, 200), (1, 12)),
                                        ((16, 16), (1, 1)), ((40, 33), (2, 2)),
                                        ((128, 128), (8, 8))])
def test_output_shape(size, cells):
    out = lbp_uniform(torch.rand(2, 1, *size))
    assert tuple(out.shape) == (2, 58, *cells)
    assert out.dtype == torch.float32
    assert CellGrid(58, 16, rounding="floor")(*size).shape == (58, *cells)


@pytest.mark.parametrize("cell_size", [4, 8, 5])
def test_output_shape_other_cells(cell_size):
    h, w = 50, 77
    out = LBP(cell_size)(torch.rand(1, 1, h, w))
    assert tuple(out.shape) == (1, 58, h // cell_size, w // cell_size)


def test_too_small_is_refused():
    with pytest.raises(ShapeError):
        lbp_uniform(torch.rand(1, 1, 15, 40))
    with pytest.raises(ShapeError):
        lbp_uniform(torch.rand(1, 3, 40, 40))  # not gray


def test_batch_equals_single_images():
    x = torch.stack([torch.from_numpy(_photo_like(45, 61, 1)), torch.rand(45, 61)])[:, None]
    together = lbp_uniform(x)
    for i in range(2):
        torch.testing.assert_close(together[i:i + 1], lbp_uniform(x[i:i + 1]), rtol=0, atol=1e-6)
    assert not torch.allclose(together[0], together[1])


def test_cells_have_unit_norm():
    images = [torch.from_numpy(_photo_like(67, 90, s)) for s in range(2)] + [torch.rand(67, 90)]
    images.append(torch.full((67, 90), 0.25))
    out = lbp_uniform(torch.stack(images)[:, None], 8)
    assert out.min() >= 0 and out.max() <= 1
    norms = out.pow(2).sum(1)
    nonempty = out.sum(1) > 0
    assert nonempty.all()  # every cell of an image this size receives votes
    torch.testing.assert_close(norms[nonempty], torch.ones_like(norms[nonempty]), rtol=0, atol=1e-5)


def test_not_differentiable():
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    assert not lbp_uniform(x).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    x = torch.stack([torch.from_numpy(_photo_like(99, 131, s)) for s in range(4)])[:, None]
    torch.testing.assert_close(lbp_uniform(x.cuda()).cpu(), lbp_uniform(x), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- plugin registration


def test_registers_as_plugin():
    specs = []
    featinv_register_features(specs.append)
    (spec,) = specs
    assert spec.name == "lbp" and spec.input == "gray" and not spec.differentiable
    assert spec.decoder_family == "two_stream"
    params = spec.resolve_params({})
    assert params == {"cell_size": 16, "backend": "torch"}
    ext = Extractor(spec, params, spec.build(**params))
    out = ext(torch.rand(2, 3, 99, 131))
    assert tuple(out.shape) == (2, *ext.layout(99, 131).shape) == (2, 58, 6, 8)


# ---------------------------------------------------------------- VLFeat itself, through ctypes


@needs_libvl
@pytest.mark.skipif(not REFERENCE_FILES, reason=NO_REFERENCE)
def test_ctypes_call_reproduces_reference():
    data = np.load(REFERENCE_FILES[0])
    assert np.abs(_vl_lbp(data["image"]) - data["lbp"]).max() <= 1e-6


# 47x31: the last pixels' first cell floor(wx) is past the last cell, which VLFeat skips
@needs_libvl
@pytest.mark.parametrize("size", [(99, 131), (17, 200), (16, 16), (40, 33), (47, 31)])
@pytest.mark.parametrize("kind", ["uniform", "photo", "levels"])
def test_matches_libvl_odd_sizes(size, kind):
    seed = 10 * (size[0] * 1000 + size[1]) + ["uniform", "photo", "levels"].index(kind)
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        image = rng.random(size, dtype=np.float32)
    elif kind == "photo":
        image = _photo_like(*size, seed)
    else:  # few grey levels: ties between neighbours everywhere
        image = (rng.integers(0, 3, size) / 2).astype(np.float32)
    ours = _lbp_numpy(image)
    for matlab in (True, False):
        expected = _vl_lbp(image, matlab=matlab)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= 1e-5, f"{kind} {size} matlab={matlab}"


@needs_libvl
@pytest.mark.parametrize("cell_size", [1, 3, 5, 8, 13])
def test_matches_libvl_other_cell_sizes(cell_size):
    for seed, (h, w) in enumerate([(37, 50), (64, 29)]):
        image = _photo_like(h, w, seed)
        expected = _vl_lbp(image, cell_size)
        ours = _lbp_numpy(image, cell_size)
        assert ours.shape == expected.shape
        assert np.abs(ours - expected).max() <= 1e-5
