"""Uniform LBP in VLFeat's 58-bin variant, as ``vl_lbp(im, cell)`` computes it.

Pure torch, batched and device-agnostic. Each interior pixel gets an 8-bit code from its 3x3
neighbourhood (bit set iff the neighbour is strictly brighter than the centre), the code is mapped
to one of 58 bins (56 uniform patterns, the two flat patterns, everything else), and the pixels
vote bilinearly into square cells whose histograms are square-rooted and L2-normalised.

The representation is **not differentiable**: the codes are comparisons, so the features are
piecewise constant in the image and their gradient is zero almost everywhere. That is the point of
including it: gradient-based inversion cannot recover an image from it, a learned decoder can.

The computation follows ``vl/lbp.c`` (VLFeat 0.9.21), including its float32 pooling weights, so
the output matches VLFeat up to float rounding (only the order of the float32 sums differs).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from .. import vlfeat
from ..errors import ShapeError
from ..hookspecs import hookimpl
from ..layout import CellGrid
from ..spec import FeatureSpec, Param

__all__ = ["lbp_uniform", "LBP", "lbp_mapping", "NUM_BINS"]

NUM_BINS = 58
_FLAT_BIN = 56  # 0x00 and 0xFF
_OTHER_BIN = 57  # every non-uniform pattern
_EPS = 1e-10
# neighbour offsets (dx, dy) of bits 0..7, y down: E, SE, S, SW, W, NW, N, NE (as in vl/lbp.c)
_NEIGHBOURS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


@lru_cache(maxsize=1)
def _mapping_cpu() -> torch.Tensor:
    table = torch.full((256,), _OTHER_BIN, dtype=torch.long)
    table[0x00] = table[0xFF] = _FLAT_BIN
    for i in range(8):  # first bit of the run
        for j in range(1, 8):  # length of the run
            run = ((1 << j) - 1) << i
            table[(run | (run >> 8)) & 0xFF] = 7 * i + (j - 1)
    return table


def lbp_mapping() -> torch.Tensor:
    """The 256-entry table from an 8-bit code to its bin in ``0 .. 57`` (CPU, long).

    A circular run of ``j`` ones (1..7) starting at bit ``i`` goes to bin ``7*i + j - 1``; the
    codes 0x00 and 0xFF to bin 56; all other codes to bin 57.
    """
    return _mapping_cpu().clone()


@lru_cache(maxsize=64)
def _axis_weights(size: int, cell_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear pooling along one axis for the interior pixels ``1 .. size-2`` (CPU tensors).

    Returns the cell before each pixel, ``floor(w)`` (long, -1 before the first centre), and the
    float32 weights of that cell and the next, with ``w = (p + 0.5)/cell - 0.5`` computed in float32
    as in ``vl/lbp.c``.
    """
    p = torch.arange(1, max(size - 1, 1), dtype=torch.float32)
    w = (p + 0.5) / float(cell_size) - 0.5
    before = torch.floor(w)
    w_after = w - before
    w_before = 1.0 - w_after
    return before.long(), w_before, w_after


def _axis(size: int, cell_size: int, like: torch.Tensor):
    before, w_before, w_after = _axis_weights(size, cell_size)
    return (before.to(like.device), w_before.to(like.device, like.dtype),
            w_after.to(like.device, like.dtype))


def _codes(img: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B, H-2, W-2)`` 8-bit codes (long) of the interior pixels."""
    height, width = img.shape[-2:]
    centre = img[:, 1:-1, 1:-1]
    code = torch.zeros(centre.shape, dtype=torch.long, device=img.device)
    for bit, (dx, dy) in enumerate(_NEIGHBOURS):
        neighbour = img[:, 1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx]
        code |= (neighbour > centre).long() << bit
    return code


def _histograms(gray: torch.Tensor, cell_size: int) -> torch.Tensor:
    """Bilinearly pooled bin counts ``(B, 58, Hc, Wc)`` before normalisation."""
    b, _, height, width = gray.shape
    hc, wc = height // cell_size, width // cell_size
    hi, wi = max(height - 2, 0), max(width - 2, 0)
    img = gray[:, 0]
    bins = _mapping_cpu().to(img.device)[_codes(img)]  # (B, hi, wi)

    # each pixel votes into the 4 cells around it. The grid is padded by one cell before the first
    # and two after the last, so that votes off the grid land in the padding, which is cut off; a
    # pixel whose first cell is past the last one (VLFeat skips it) has floor(w) == Hc (or Wc) and
    # so votes into the padding only
    bx, wx1, wx2 = _axis(width, cell_size, img)
    by, wy1, wy2 = _axis(height, cell_size, img)
    wy1, wy2 = wy1.view(hi, 1), wy2.view(hi, 1)
    rows, cols = hc + 3, wc + 3
    cell = (by + 1).view(hi, 1) * cols + (bx + 1).view(1, wi)
    index = bins * (rows * cols) + cell
    index = index.view(b, hi * wi)
    acc = img.new_zeros(b, NUM_BINS * rows * cols)
    for offset, weight in ((0, wx1 * wy1), (1, wx2 * wy1), (cols, wx1 * wy2), (cols + 1, wx2 * wy2)):
        acc.scatter_add_(1, index + offset, weight.expand(b, hi, wi).reshape(b, -1))
    return acc.view(b, NUM_BINS, rows, cols)[:, :, 1:hc + 1, 1:wc + 1]


def lbp_uniform(gray: torch.Tensor, cell_size: int = 16) -> torch.Tensor:
    """VLFeat uniform-58 LBP of a batch of grayscale images.

    Bins ``7*i + j - 1`` (``i`` in 0..7, ``j`` in 1..7): a circular run of ``j`` brighter neighbours
    starting at neighbour ``i``, the neighbours numbered clockwise on screen from East (E, SE, S,
    SW, W, NW, N, NE; y down); bin 56: no or all neighbours brighter; bin 57: all other patterns.
    Each cell is ``sqrt(h) / (sqrt(sum h) + 1e-10)``: unit L2 norm, values in [0, 1].

    Args:
        gray: ``(B, 1, H, W)`` float images; each side needs at least ``cell_size`` px.
            Only interior pixels get a code, so the outermost ring of pixels only serves as
            neighbours.
        cell_size: cell side in pixels.

    Returns:
        ``(B, 58, floor(H/cell), floor(W/cell))``, float32 unless ``gray`` is float64. Not
        differentiable: the result never requires grad.
    """
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ShapeError(f"lbp: expected gray images of shape (B, 1, H, W), got {tuple(gray.shape)}")
    if cell_size < 1:
        raise ValueError(f"lbp: cell_size must be >= 1, got {cell_size}")
    height, width = gray.shape[-2:]
    if height < cell_size or width < cell_size:
        raise ShapeError(f"lbp: image of {height}x{width} px is too small for cell size "
                         f"{cell_size}: each side needs at least {cell_size} px")
    gray = gray.detach()
    if gray.dtype != torch.float64:
        gray = gray.float()
    hist = _histograms(gray, cell_size)
    norm = torch.sqrt(hist.sum(1, keepdim=True)) + _EPS
    return torch.sqrt(hist) / norm


class LBP(nn.Module):
    """VLFeat uniform-58 LBP as a module; see :func:`lbp_uniform`.

    ``backend="vlfeat"`` calls VLFeat's C library instead (computed on the CPU).

    Shape:
        - Input: ``(B, 1, H, W)``.
        - Output: ``(B, 58, floor(H/cell), floor(W/cell))``.
    """

    def __init__(self, cell_size: int = 16, backend: str = "torch"):
        super().__init__()
        self.cell_size = int(cell_size)
        self.backend = backend
        if backend == "vlfeat":
            vlfeat.library()  # fail now, with instructions, rather than at the first batch

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        if self.backend == "vlfeat":
            return vlfeat.per_image(lambda im: vlfeat.lbp(im, self.cell_size), gray)
        return lbp_uniform(gray, self.cell_size)

    def extra_repr(self) -> str:
        return f"cell_size={self.cell_size}, backend={self.backend!r}"


def _backends() -> dict[str, str]:
    return {"torch": "built in (batched, CPU or CUDA)", "vlfeat": vlfeat.status()}


def lbp_layout(cell_size: int = 16, backend: str = "torch") -> CellGrid:
    """58 channels on cells of ``floor(n / cell)``."""
    return CellGrid(NUM_BINS, cell_size, rounding="floor")


@hookimpl
def featinv_register_features(register):
    register(FeatureSpec(
        name="lbp", description="VLFeat uniform LBP (58 bins) per 16-px cell; not differentiable",
        input="gray", differentiable=False, build=LBP, layout=lbp_layout,
        params=(Param("cell_size", 16, "cell side in pixels"),
                Param("backend", "torch", "implementation: torch, or VLFeat's C library",
                      choices=("torch", "vlfeat"))),
        decoder="two_stream", backends=_backends))
