"""Sparse SIFT on a 4-px grid: layout, grid semantics, both detectors against VLFeat, bad input."""
import math

import numpy as np
import pytest
import torch

import featinv
from featinv.errors import FeatinvError, ShapeError
from featinv.features.sift import (CHANNELS, Keypoints, detect, grid_keypoints, keypoint_grid)
from helpers import NO_REFERENCE, REFERENCE_FILES, needs_libvl, photo_like

BACKENDS = ["opencv", pytest.param("vlfeat", marks=needs_libvl)]


def _rgb(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray)[None, None].repeat(1, 3, 1, 1)


def _keypoints(frames) -> Keypoints:
    frames = np.asarray(frames, np.float64).reshape(-1, 4)
    rng = np.random.default_rng(len(frames))
    d = rng.random((len(frames), 128)).astype(np.float32) + 0.01
    return Keypoints(frames, d / np.linalg.norm(d, axis=1, keepdims=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_layout_at_128_px(backend):
    ext = featinv.get_feature("sift", backend=backend)
    out = ext(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 133, 32, 32) and out.dtype == torch.float32
    assert ext.layout(128, 128).sparse


@pytest.mark.parametrize("size, cells", [((99, 131), (25, 33)), ((17, 200), (5, 50)),
                                         ((8, 8), (2, 2))])
def test_layout_rounds_up(size, cells):
    ext = featinv.get_feature("sift")
    assert ext(_rgb(photo_like(*size, seed=1))).shape == (1, CHANNELS, *cells)


def test_grid_cell_contents():
    # two keypoints in one cell (x, y in [3.5, 7.5) -> cell (1, 1)), one alone in cell (0, 2)
    kp = _keypoints([[5.0, 6.0, 2.0, 0.5], [6.0, 5.0, 3.0, 1.0], [9.0, 2.0, 1.6, -2.0]])
    grid = keypoint_grid(kp, 12, 16, cell_size=4, seed=0)
    assert grid.shape == (133, 3, 4)
    filled = np.argwhere(np.abs(grid).sum(0) > 0).tolist()
    assert filled == [[0, 2], [1, 1]]
    alone = grid[:, 0, 2]
    np.testing.assert_allclose(alone[:128], kp.descriptors[2])
    np.testing.assert_allclose(alone[128:], [(9.5 / 4) - 2, 2.5 / 4, math.sin(-2.0),
                                             math.cos(-2.0), math.log(1.6)], rtol=1e-6)
    shared = grid[:, 1, 1]
    assert any(np.allclose(shared[:128], kp.descriptors[i]) for i in (0, 1))


def test_random_choice_is_seeded_and_varies_with_the_seed():
    kp = _keypoints([[1.0 + 0.1 * i, 1.0, 2.0, 0.0] for i in range(8)])  # all in cell (0, 0)
    picks = [int(np.argmax(kp.descriptors @ keypoint_grid(kp, 8, 8, seed=s)[:128, 0, 0]))
             for s in range(12)]
    again = [int(np.argmax(kp.descriptors @ keypoint_grid(kp, 8, 8, seed=s)[:128, 0, 0]))
             for s in range(12)]
    assert picks == again
    assert len(set(picks)) > 2


def test_grid_round_trip_gives_the_kept_frames():
    kp = _keypoints([[5.0, 6.0, 2.0, 0.5], [30.2, 11.7, 4.5, -2.5], [0.0, 0.0, 1.7, 3.0]])
    frames = grid_keypoints(keypoint_grid(kp, 40, 40))
    order = np.lexsort((frames[:, 0], frames[:, 1]))
    expected = kp.frames[np.lexsort((kp.frames[:, 0], kp.frames[:, 1]))]
    np.testing.assert_allclose(frames[order], expected, atol=1e-5)


def test_report_counts_keypoints_and_cells():
    ext = featinv.get_feature("sift")
    images = torch.stack([_rgb(photo_like(96, 96, seed=s))[0] for s in (3, 4)])
    out, report = ext.forward_with_report(images)
    assert set(report) == {"keypoints", "cells_filled"}
    for i in range(2):
        filled = int((out[i, :128].abs().sum(0) > 0).sum())
        assert report["cells_filled"][i] == filled > 10
        assert report["keypoints"][i] >= filled


@pytest.mark.skipif(not REFERENCE_FILES, reason=NO_REFERENCE)
@needs_libvl
@pytest.mark.parametrize("path", REFERENCE_FILES[:3], ids=lambda p: p.stem)
def test_vlfeat_backend_reproduces_reference(path):
    data = np.load(path)
    kp = detect(data["image"], "vlfeat")
    assert len(kp) == len(data["sift_frames"])
    np.testing.assert_allclose(kp.frames, data["sift_frames"], atol=1e-5)
    np.testing.assert_array_equal(kp.descriptors, data["sift_descr"])


@pytest.mark.skipif(not REFERENCE_FILES, reason=NO_REFERENCE)
def test_opencv_backend_agrees_with_reference():
    """Measured: 75 % of VLFeat's frames found, descriptor correlation 0.99 (benchmarks/)."""
    found, corr = [], []
    for path in REFERENCE_FILES:
        data = np.load(path)
        ref, ours = data["sift_frames"], detect(data["image"], "opencv")
        assert 0.5 * len(ref) <= len(ours) <= 1.5 * len(ref), path.stem
        for (x, y, s, a), d in zip(ref, data["sift_descr"]):
            dist = np.hypot(ours.frames[:, 0] - x, ours.frames[:, 1] - y)
            dang = np.abs((ours.frames[:, 3] - a + np.pi) % (2 * np.pi) - np.pi)
            close = (dist < 1) & (np.abs(np.log2(ours.frames[:, 2] / s)) < 0.25)
            found.append(close.any())
            if close.any():
                best = np.flatnonzero(close)[np.argmin(dang[close])]
                corr.append(np.corrcoef(d, ours.descriptors[best])[0, 1])
    assert np.mean(found) >= 0.65
    assert np.median(corr) >= 0.95


@needs_libvl
@pytest.mark.parametrize("size", [(99, 131), (17, 200), (128, 128)])
def test_backends_agree_on_photo_like_images(size):
    gray = photo_like(*size, seed=7)
    ours, theirs = detect(gray, "opencv"), detect(gray, "vlfeat")
    assert abs(len(ours) - len(theirs)) <= max(5, 0.5 * len(theirs))
    a = featinv.get_feature("sift", backend="opencv")(_rgb(gray))
    b = featinv.get_feature("sift", backend="vlfeat")(_rgb(gray))
    assert a.shape == b.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_constant_image_gives_zeros(backend):
    ext = featinv.get_feature("sift", backend=backend)
    out, report = ext.forward_with_report(torch.full((2, 3, 64, 48), 0.4))
    assert out.shape == (2, 133, 16, 12) and not out.any()
    assert report == {"keypoints": [0, 0], "cells_filled": [0, 0]}


def test_too_small_and_nan_are_clear_errors():
    ext = featinv.get_feature("sift")
    with pytest.raises(ShapeError, match="at least 8"):
        ext(torch.rand(1, 3, 7, 64))
    bad = torch.rand(1, 3, 32, 32)
    bad[0, 1, 5, 5] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        ext(bad)


def test_unknown_backend_is_refused():
    with pytest.raises(FeatinvError, match="must be one of"):
        featinv.get_feature("sift", backend="matlab")


def test_not_differentiable():
    assert featinv.get_spec("sift").differentiable is False
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    assert not featinv.get_feature("sift")(x).requires_grad
