"""Drawing primitives shared by the representations' ``visualize`` functions (HOG glyphs, LBP
sectors, SIFT arrows): scaling, tiling, stamping templates, lines and circles, colours.

Pictures are NumPy arrays ``(H, W, 3)`` (or masks ``(H, W)``), float32 in [0, 1]. Coordinates
are ``(x, y)`` in pixels of the picture, x = column, y down; integer values are pixel centres.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError

__all__ = ["display_scale", "upscale", "resize_nearest", "fit", "beside", "below", "tile", "stamp",
           "line_templates", "sector_templates", "draw_lines", "draw_circles", "paint",
           "hue_colours"]

# smallest side of a picture, so that glyphs of small images stay visible
MIN_DISPLAY = 256
MAX_DISPLAY_PIXELS = 2**22  # an upscaled drawing's pixels at most (float RGB: 48 MB; a few copies are made)
_SHIFT = 4  # OpenCV fixed-point bits: coordinates to 1/16 px
GAP = 4  # px between pictures shown together


def display_scale(height: int, width: int, min_side: int = MIN_DISPLAY, cell: int = 1,
                  min_cell: int = 1) -> int:
    """Integer upscaling factor so the shorter side reaches ``min_side`` px and a ``cell``-px
    cell becomes at least ``min_cell`` px, but the picture stays within ``MAX_DISPLAY_PIXELS``
    (a 4096 x 4 px strip scaled 64 times took over 4 GB)."""
    wanted = max(1, math.ceil(min_side / max(1, min(height, width))), math.ceil(min_cell / cell))
    room = max(1, math.isqrt(MAX_DISPLAY_PIXELS // max(1, height * width)))
    return min(wanted, room)


def upscale(picture: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer ``factor``: ``(H, W, ...) -> (fH, fW, ...)``."""
    if factor == 1:
        return picture
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def resize_nearest(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(h, w, ...)`` to ``(height, width, ...)``."""
    h, w = picture.shape[:2]
    rows = (np.arange(height) * h) // height
    cols = (np.arange(width) * w) // width
    return picture[rows][:, cols]


def fit(picture: np.ndarray, height: int, width: int, fill: float = 0.0) -> np.ndarray:
    """Crop or pad (bottom and right, with ``fill``) ``(h, w, ...)`` to ``(height, width, ...)``."""
    out = np.full((height, width, *picture.shape[2:]), fill, np.float32)
    h, w = min(height, picture.shape[0]), min(width, picture.shape[1])
    out[:h, :w] = picture[:h, :w]
    return out


def _rgb(picture: np.ndarray) -> np.ndarray:
    picture = np.asarray(picture, np.float32)
    return np.repeat(picture[..., None], 3, axis=2) if picture.ndim == 2 else picture


def beside(*pictures: np.ndarray, gap: int = GAP) -> np.ndarray:
    """Pictures side by side, top-aligned, on white, ``gap`` px apart."""
    pictures = [_rgb(p) for p in pictures]
    height = max(p.shape[0] for p in pictures)
    parts = []
    for i, p in enumerate(pictures):
        if i:
            parts.append(np.ones((height, gap, 3), np.float32))
        parts.append(fit(p, height, p.shape[1], fill=1.0))
    return np.concatenate(parts, axis=1)


def below(*pictures: np.ndarray, gap: int = GAP) -> np.ndarray:
    """Pictures stacked top to bottom, left-aligned, on white, ``gap`` px apart."""
    turned = [np.swapaxes(_rgb(p), 0, 1) for p in pictures]
    return np.swapaxes(beside(*turned, gap=gap), 0, 1)


def tile(cells: np.ndarray) -> np.ndarray:
    """``(h, w, g, g, ...)`` per-cell patches -> one ``(h*g, w*g, ...)`` picture."""
    h, w, gh, gw = cells.shape[:4]
    return cells.swapaxes(1, 2).reshape(h * gh, w * gw, *cells.shape[4:])


def stamp(templates: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per cell, the brightest of the weighted templates: ``max_k weights[k] * templates[k]``.

    ``templates`` ``(K, g, g)``, ``weights`` ``(K, h, w)`` -> ``(h*g, w*g)``.
    """
    k, g = templates.shape[0], templates.shape[1]
    if weights.shape[0] != k:
        raise ShapeError(f"stamp: {k} templates but {weights.shape[0]} weight channels")
    out = np.zeros((*weights.shape[1:], g, g), np.float32)
    for template, weight in zip(templates, weights):  # a loop keeps memory at one picture
        np.maximum(out, weight[:, :, None, None] * template, out=out)
    return tile(out)


def _canvas(shape: Sequence[int]) -> np.ndarray:
    return np.zeros(tuple(shape[:2]), np.uint8)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int64)


def draw_lines(shape: Sequence[int], starts: np.ndarray, ends: np.ndarray,
               thickness: int = 1) -> np.ndarray:
    """Anti-aliased coverage mask ``(H, W)`` in [0, 1] of segments ``starts[i] -> ends[i]``
    (each ``(N, 2)`` ``(x, y)``)."""
    import cv2

    canvas = _canvas(shape)
    for (x0, y0), (x1, y1) in zip(_fixed(starts), _fixed(ends)):
        cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), 255, thickness, cv2.LINE_AA,
                 _SHIFT)
    return canvas.astype(np.float32) / 255.0


def draw_circles(shape: Sequence[int], centres: np.ndarray, radii: np.ndarray,
                 thickness: int = 1) -> np.ndarray:
    """Anti-aliased coverage mask ``(H, W)`` of circles (``centres`` ``(N, 2)``, ``radii``
    ``(N,)``); ``thickness=-1`` fills them."""
    import cv2

    canvas = _canvas(shape)
    for (x, y), r in zip(_fixed(centres), _fixed(radii)):
        cv2.circle(canvas, (int(x), int(y)), int(r), 255, thickness, cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) / 255.0


def line_templates(size: int, angles: np.ndarray, thickness: int = 1) -> np.ndarray:
    """``(K, size, size)`` masks of a line through the patch centre at each angle (radians,
    clockwise on screen from +x), spanning the patch."""
    centre = np.full((1, 2), (size - 1) / 2)
    half = size / 2
    out = []
    for a in np.asarray(angles, np.float64):
        d = half * np.array([[math.cos(a), math.sin(a)]])
        out.append(draw_lines((size, size), centre - d, centre + d, thickness))
    return np.stack(out)


def sector_templates(size: int, spans: Sequence[tuple[float, float]],
                     radii: Sequence[float] | None = None) -> np.ndarray:
    """``(K, size, size)`` masks of filled pie sectors centred in the patch.

    ``spans[k] = (start, end)`` in degrees clockwise on screen from +x (``(0, 360)``: a disc);
    ``radii[k]`` is a fraction of half the patch (default 0.9).
    """
    import cv2

    radii = [0.9] * len(spans) if radii is None else radii
    c = int(round((size - 1) / 2 * (1 << _SHIFT)))
    out = []
    for (start, end), fraction in zip(spans, radii):
        canvas = _canvas((size, size))
        r = int(round(fraction * size / 2 * (1 << _SHIFT)))
        cv2.ellipse(canvas, (c, c), (r, r), 0.0, float(start), float(end), 255, -1, cv2.LINE_AA,
                    _SHIFT)
        out.append(canvas.astype(np.float32) / 255.0)
    return np.stack(out)


def paint(picture: np.ndarray, coverage: np.ndarray, colour: Sequence[float]) -> np.ndarray:
    """Blend ``colour`` into ``picture`` ``(H, W, 3)`` where ``coverage`` ``(H, W)`` says."""
    alpha = coverage[..., None]
    return (1.0 - alpha) * picture + alpha * np.asarray(colour, np.float32)


def hue_colours(angles: np.ndarray) -> np.ndarray:
    """Colour wheel: angles (radians) ``(...)`` -> fully saturated RGB ``(..., 3)``.

    0 is red, a third of a turn green, two thirds blue.
    """
    turn = np.mod(np.asarray(angles, np.float64) / (2 * np.pi), 1.0)
    offsets = np.array([0.0, 2 / 3, 1 / 3])  # R, G, B peak at 0, 1/3, 2/3 of a turn
    # triangle waves, clipped: the classic HSV hue with S = V = 1
    d = np.abs(np.mod(turn[..., None] + offsets, 1.0) * 6 - 3) - 1
    return np.clip(d, 0, 1).astype(np.float32)
