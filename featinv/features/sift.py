"""Sparse SIFT on a grid, as in the paper (section 3, "Sparse SIFT").

SIFT keypoints are detected with default settings and each one is put in the cell of an
``s``-pixel grid (``s = 4``) that contains it. A cell holds a zero vector when no keypoint falls in
it, and otherwise 133 numbers for one keypoint, chosen at random (seeded, per image) when several
fall in the same cell:

    channels 0-127  the descriptor (unit L2 norm, VLFeat's element order ``t + 8*bx + 32*by``)
    channel  128    x offset of the keypoint in its cell, in cells (0 .. 1)
    channel  129    y offset, in cells (0 .. 1)
    channels 130-131  sin and cos of the orientation (clockwise on screen from +x, y down)
    channel  132    log of the scale sigma (pixels)

Two detectors: ``backend="opencv"`` (default; OpenCV's SIFT set up as close to ``vl_sift``'s
defaults as it allows: 3 levels per octave, no contrast threshold, edge threshold 10, the
doubled-resolution octave dropped and as many octaves as VLFeat uses) and ``backend="vlfeat"``
(VLFeat's C library, what the paper used). docs/benchmarks.md reports how closely they agree.

Not differentiable: keypoint detection is a discrete choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import vlfeat
from ..representation.hookspecs import hookimpl
from ..representation.layout import CellGrid
from ..representation.spec import FeatureSpec, Param
from .drawing import display_scale, draw_circles, draw_lines, paint, upscale

__all__ = ["Keypoints", "detect", "keypoint_grid", "grid_keypoints", "SparseSIFT", "CHANNELS"]

DESCRIPTOR = 128
CHANNELS = DESCRIPTOR + 5
_DX, _DY, _SIN, _COS, _LOG_SIGMA = range(DESCRIPTOR, CHANNELS)
BACKENDS = ("opencv", "vlfeat")
MIN_SIZE = 8


@dataclass(frozen=True)
class Keypoints:
    """SIFT keypoints of one image.

    ``frames``: ``(N, 4)`` float64 ``[x, y, sigma, angle]`` (0-based pixels, x = column, angle in
    radians clockwise on screen from +x); ``descriptors``: ``(N, 128)`` float32, unit L2 norm.
    """

    frames: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def _vlfeat_octaves(height: int, width: int) -> int:
    """Octaves ``vl_sift`` uses by default: ``max(floor(log2(min(H, W))) - 3, 1)``."""
    return max(int(math.floor(math.log2(min(height, width)))) - 3, 1)


@lru_cache(maxsize=1)
def _opencv_detector():
    import cv2

    # VLFeat's defaults: S = 3 levels, peak threshold 0, edge threshold 10, sigma0 = 1.6 at level -1
    return cv2.SIFT_create(nfeatures=0, nOctaveLayers=3, contrastThreshold=0.0,
                           edgeThreshold=10.0, sigma=1.6, enable_precise_upscale=True)


# OpenCV numbers the orientation bins the other way round: vl[t + 8j] = cv[(8 - t) % 8 + 8j]
_FROM_OPENCV = np.array([(-t) % 8 + 8 * j for j in range(16) for t in range(8)])


def _detect_opencv(gray: np.ndarray) -> Keypoints:
    image = np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)
    found, descriptors = _opencv_detector().detectAndCompute(image, None)
    octaves = _vlfeat_octaves(*gray.shape)
    # OpenCV packs the octave in the low byte (255 = -1, its doubled-resolution octave, which
    # VLFeat does not compute) and finds more octaves than VLFeat searches
    keep = [i for i, k in enumerate(found) if (k.octave & 0xFF) < octaves]
    frames = np.array([(found[i].pt[0], found[i].pt[1], found[i].size / 2.0,
                        math.radians(found[i].angle)) for i in keep], np.float64).reshape(-1, 4)
    if not keep:
        return Keypoints(frames, np.zeros((0, DESCRIPTOR), np.float32))
    d = descriptors[keep][:, _FROM_OPENCV].astype(np.float32)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return Keypoints(frames, d)


def _detect_vlfeat(gray: np.ndarray) -> Keypoints:
    return Keypoints(*vlfeat.sift(gray))


def detect(gray: np.ndarray, backend: str = "opencv") -> Keypoints:
    """SIFT keypoints and descriptors of one ``(H, W)`` float image in [0, 1]."""
    if backend not in BACKENDS:
        raise ValueError(f"sift backend must be one of {BACKENDS}, got {backend!r}")
    if min(gray.shape) < MIN_SIZE:
        return Keypoints(np.zeros((0, 4)), np.zeros((0, DESCRIPTOR), np.float32))
    return (_detect_opencv if backend == "opencv" else _detect_vlfeat)(gray)


def keypoint_grid(keypoints: Keypoints, height: int, width: int, cell_size: int = 4,
                  seed: int = 0) -> np.ndarray:
    """Arrange keypoints on a grid: ``(133, ceil(H/cell), ceil(W/cell))`` float32.

    Pixel ``p`` covers ``[p - 0.5, p + 0.5)``, so a keypoint at ``x`` lies in cell
    ``floor((x + 0.5) / cell)``. When several keypoints share a cell, one is kept at random: the
    choice depends only on ``seed`` and the keypoints, so it is the same in any batch.
    """
    rows, cols = -(-height // cell_size), -(-width // cell_size)
    grid = np.zeros((CHANNELS, rows, cols), np.float32)
    if len(keypoints) == 0:
        return grid
    x, y, sigma, angle = keypoints.frames.T
    fx, fy = (x + 0.5) / cell_size, (y + 0.5) / cell_size
    cx = np.clip(np.floor(fx), 0, cols - 1).astype(np.int64)
    cy = np.clip(np.floor(fy), 0, rows - 1).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(keypoints))
    # the first keypoint of each cell in the random order wins
    _, first = np.unique((cy * cols + cx)[order], return_index=True)
    pick = order[first]
    values = np.concatenate([
        keypoints.descriptors[pick],
        np.stack([np.clip(fx[pick] - cx[pick], 0.0, 1.0), np.clip(fy[pick] - cy[pick], 0.0, 1.0),
                  np.sin(angle[pick]), np.cos(angle[pick]), np.log(sigma[pick])], axis=1),
    ], axis=1)
    grid[:, cy[pick], cx[pick]] = values.T
    return grid


def _occupied(grid: np.ndarray) -> np.ndarray:
    """Which cells of a ``(..., 133, h, w)`` grid hold a keypoint: ``(..., h, w)`` bool."""
    return np.abs(grid[..., :DESCRIPTOR, :, :]).sum(-3) > 0


def grid_keypoints(grid: np.ndarray, cell_size: int = 4) -> np.ndarray:
    """The keypoint frames ``(N, 4)`` ``[x, y, sigma, angle]`` stored in a ``(133, h, w)`` grid."""
    cy, cx = np.nonzero(_occupied(grid))
    cells = grid[:, cy, cx]
    x = (cx + cells[_DX]) * cell_size - 0.5
    y = (cy + cells[_DY]) * cell_size - 0.5
    angle = np.arctan2(cells[_SIN], cells[_COS])
    return np.stack([x, y, np.exp(cells[_LOG_SIGMA]), angle], axis=1).astype(np.float64)


class SparseSIFT(nn.Module):
    """SIFT keypoints on a grid of ``cell_size``-px cells; see the module docstring.

    Computed on the CPU image by image; the result goes back to the input's device.

    Shape:
        - Input: ``(B, 1, H, W)`` in [0, 1], each side at least 8 px.
        - Output: ``(B, 133, ceil(H/cell), ceil(W/cell))``, zero in cells without a keypoint.
    """

    def __init__(self, cell_size: int = 4, seed: int = 0, backend: str = "opencv"):
        super().__init__()
        if cell_size < 1:
            raise ValueError(f"sift: cell_size must be >= 1, got {cell_size}")
        self.cell_size, self.seed, self.backend = int(cell_size), int(seed), backend
        if backend == "vlfeat":
            vlfeat.library()  # fail now, with instructions, rather than at the first batch

    def _grid(self, image: np.ndarray, keypoints: Keypoints | None = None) -> np.ndarray:
        keypoints = detect(image, self.backend) if keypoints is None else keypoints
        return keypoint_grid(keypoints, *image.shape, self.cell_size, self.seed)

    def forward_with_report(self, gray: torch.Tensor) -> tuple[torch.Tensor, dict[str, list]]:
        """Features and, per image, keypoints detected and grid cells filled."""
        detected: list[int] = []

        def grid(image: np.ndarray) -> np.ndarray:
            keypoints = detect(image, self.backend)
            detected.append(len(keypoints))
            return self._grid(image, keypoints)

        out = vlfeat.per_image(grid, gray)
        filled = _occupied(out.cpu().numpy()).sum((1, 2)).tolist()
        return out, {"keypoints": detected, "cells_filled": filled}

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return vlfeat.per_image(self._grid, gray)

    def extra_repr(self) -> str:
        return f"cell_size={self.cell_size}, seed={self.seed}, backend={self.backend!r}"


def sift_rule(cell_size: int = 4, seed: int = 0, backend: str = "opencv") -> CellGrid:
    """133 channels on cells of ``ceil(n / cell)``; mostly empty (sparse)."""
    return CellGrid(CHANNELS, cell_size, rounding="ceil", sparse=True, min_size=MIN_SIZE)


def _backends() -> dict[str, str]:
    import cv2

    return {"opencv": f"OpenCV {cv2.__version__} SIFT with VLFeat-like settings (CPU)",
            "vlfeat": vlfeat.status()}


def sift_picture(image, features, cell_size: int = 4, **_):
    """The keypoints of the grid drawn on the image: a circle of radius ``2 sigma`` (at least
    2 px) and a line from the centre along the orientation, green with a dark outline.

    ``image`` ``(H, W, 3)``, ``features`` ``(133, h, w)``.
    """
    s = display_scale(*image.shape[:2])
    picture = upscale(image, s)
    x, y, sigma, angle = grid_keypoints(features, cell_size).T
    centres = np.stack([x, y], axis=1) * s + (s - 1) / 2  # pixel centres after upscaling
    radii = np.maximum(2 * sigma * s, 2.0)
    ends = centres + radii[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    for thickness, colour in ((3, (0.0, 0.0, 0.0)), (1, (0.2, 1.0, 0.2))):
        mask = np.maximum(draw_circles(picture.shape, centres, radii, thickness),
                          draw_lines(picture.shape, centres, ends, thickness))
        picture = paint(picture, mask, colour)
    return picture


def sift_memory(height: int, width: int, cell_size: int = 4, **_) -> float:
    """Bytes sparse SIFT of one ``height x width`` image takes beyond the image: the peak growth
    measured (OpenCV backend, 512 to 2048 px, linear in the pixels) was 245 B/px at cell 4 and
    1111 at cell 1 (190 + 925 / cell^2; 4 GB at 4096 x 4096 px); 20 % added."""
    return height * width * (230 + 1100 / cell_size ** 2)


@hookimpl
def featinv_register_features(register):
    register(FeatureSpec(
        name="sift", description="Sparse SIFT: a keypoint's descriptor, offset, angle and scale "
        "per 4-px cell (zeros elsewhere); not differentiable",
        input="gray", differentiable=False, build=SparseSIFT, rule=sift_rule,
        params=(Param("cell_size", 4, "grid cell side in pixels", low=1, high=4096),
                Param("seed", 0, "seed of the random choice when keypoints share a cell",
                      low=0, high=2**32 - 1),
                Param("backend", "opencv", "keypoint detector: OpenCV, or VLFeat's C library",
                      choices=BACKENDS)),
        decoder_family="contract_expand", backends=_backends, visualize=sift_picture,
        memory=sift_memory))
