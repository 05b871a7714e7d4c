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

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import vlfeat
from ..errors import ShapeError, pixel_size
from ..representation.hookspecs import hookimpl
from ..representation.layout import CellGrid
from ..representation.spec import FeatureSpec, Param
from .drawing import beside, display_scale, fit, hue_colours, sector_templates, tile, upscale

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


# The CPU works through a batch in chunks of about this many pixels, reusing one set of work
# buffers: they stay in cache, and the memory allocator does not hand out (and page-fault) fresh
# memory for every step. Other devices take the batch at once.
_CHUNK_PIXELS = 1 << 17
# the 8 comparisons in three groups of evenly spaced neighbours: the row above (NW, N, NE), the row
# below (SW, S, SE) and the pixels beside (W, E); the value of each one's bit follows _NEIGHBOURS
_GROUPS = (((-1, -1), (0, -1), (1, -1)), ((-1, 1), (0, 1), (1, 1)), ((-1, 0), (1, 0)))
_BIT_VALUES = tuple(float(1 << _NEIGHBOURS.index(n)) for group in _GROUPS for n in group)


@lru_cache(maxsize=64)
def _pooling(height: int, width: int, cell_size: int):
    """Bilinear pooling of every pixel of an ``H x W`` image into the padded cell grid (CPU).

    Returns the flat index (int32, ``(H*W,)``) of the first of the 4 cells each pixel votes into,
    the votes as complex numbers (``(H*W,)`` each): ``upper`` for the cells in the row of that first
    cell, ``lower`` for the row below, the real part for the cell itself and the imaginary part for
    the cell to its right; and the bin table times the cells per bin (int32). The outermost ring
    of pixels has no code and votes 0.
    """
    rows, cols = height // cell_size + 3, width // cell_size + 3

    def axis(size):
        before, w_before, w_after = _axis_weights(size, cell_size)
        first = torch.zeros(size, dtype=torch.int32)
        weights = torch.zeros(2, size)
        if size > 2:
            first[1:-1] = before + 1  # + 1: the padding cell before the grid
            weights[0, 1:-1], weights[1, 1:-1] = w_before, w_after
        return first, weights

    by, wy = axis(height)
    bx, wx = axis(width)
    cell = (by.view(-1, 1) * cols + bx.view(1, -1)).view(-1)
    upper = torch.complex(wx[0] * wy[0].view(-1, 1), wx[1] * wy[0].view(-1, 1)).view(-1)
    lower = torch.complex(wx[0] * wy[1].view(-1, 1), wx[1] * wy[1].view(-1, 1)).view(-1)
    return cell, upper, lower, (_mapping_cpu() * (rows * cols)).int()


def _codes(flat: torch.Tensor, width: int, code: torch.Tensor, bits: torch.Tensor) -> None:
    """8-bit codes (as floats) of the flattened images ``flat`` into ``code`` (same size).

    The neighbours of the pixels ``W+1 .. N-W-2`` are evenly spaced slices of the flat array (codes
    that straddle two rows or images land on border pixels, which do not vote); the first and last
    ``W+1`` codes are set to 0. Each group of comparisons writes floats (vectorised, unlike boolean
    outputs) into ``bits`` (``(3, >= N-2W-2)``) and a matrix-vector product adds their bit values
    to the codes, exactly.
    """
    n = flat.numel()
    m = n - 2 * (width + 1)
    code.zero_()
    if m <= 0:
        return
    inner = code[width + 1:width + 1 + m]
    centre = flat[width + 1:width + 1 + m]
    values = torch.tensor(_BIT_VALUES, dtype=flat.dtype, device=flat.device)
    groups = ((flat[:m + 2], 1, 0), (flat[2 * width:2 * width + m + 2], 1, 3),
              (flat[width:width + m + 2], 2, 6))  # above, below, beside: (slice, step, first bit)
    for neighbours, step, first in groups:
        count = 3 if step == 1 else 2
        group = bits[:count, :m]
        torch.gt(neighbours.unfold(0, m, step), centre, out=group)
        torch.addmv(inner, group.t(), values[first:first + count], out=inner)


def _work_buffers(device: torch.device, specs: list[tuple[tuple[int, ...], torch.dtype]]
                  ) -> list[torch.Tensor]:
    """Uninitialised tensors of the given shapes and dtypes, carved from one allocation.

    One block rather than several keeps the memory allocator from returning the memory to the
    system after every call and page-faulting it back in at the next (glibc trims the heap when
    the freed memory at its top exceeds twice the largest block it ever unmapped).
    """
    sizes = [math.prod(shape) * dtype.itemsize for shape, dtype in specs]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + -(-size // 64) * 64)  # 64-byte aligned
    block = torch.empty(starts[-1], dtype=torch.uint8, device=device)
    return [block[start:start + size].view(dtype).view(shape)
            for start, size, (shape, dtype) in zip(starts, sizes, specs)]


def _histograms(gray: torch.Tensor, cell_size: int) -> torch.Tensor:
    """Bilinearly pooled bin counts ``(B, 58, Hc, Wc)`` before normalisation.

    Each pixel votes into the 4 cells around it. The grid is padded by one cell before the first
    and two after the last, so that votes off the grid land in the padding, which is cut off; a
    pixel whose first cell is past the last one (VLFeat skips it) has floor(w) == Hc (or Wc) and so
    votes into the padding only. Each complex slot of the accumulator holds the votes for its own
    cell (real part) and for the cell to its right (imaginary part), so that two scatters carry
    the four bilinear votes.
    """
    img = gray[:, 0].contiguous()
    b, height, width = img.shape
    hc, wc = height // cell_size, width // cell_size
    rows, cols = hc + 3, wc + 3
    device, pixels = img.device, height * width
    per_chunk = b if device.type != "cpu" else min(b, max(1, _CHUNK_PIXELS // pixels))
    cell, upper, lower, table = (t.to(device) for t in _pooling(height, width, cell_size))
    complex_dtype = torch.complex128 if img.dtype == torch.float64 else torch.complex64
    upper, lower = upper.to(complex_dtype), lower.to(complex_dtype)

    n = per_chunk * pixels
    code, bits, code32, index32, index, acc = _work_buffers(device, [
        ((n,), img.dtype), ((3, max(n - 2 * (width + 1), 0)), img.dtype), ((n,), torch.int32),
        ((n,), torch.int32), ((n,), torch.long),
        ((per_chunk, NUM_BINS * rows * cols), complex_dtype)])
    out = img.new_empty(b, NUM_BINS, hc, wc)
    for first in range(0, b, per_chunk):
        chunk = img[first:first + per_chunk]
        k, size = chunk.shape[0], chunk.numel()
        _codes(chunk.view(-1), width, code[:size], bits)
        code32[:size].copy_(code[:size])
        torch.index_select(table, 0, code32[:size], out=index32[:size])
        index32[:size].view(k, pixels).add_(cell)
        votes = index[:size].copy_(index32[:size]).view(k, pixels)
        sums = acc[:k].zero_()
        sums.scatter_add_(1, votes, upper.expand(k, -1))
        sums[:, cols:].scatter_add_(1, votes, lower.expand(k, -1))
        parts = torch.view_as_real(sums)
        own = parts[..., 0].view(k, NUM_BINS, rows, cols)
        right = parts[..., 1].view(k, NUM_BINS, rows, cols)  # votes for the cell to the right
        torch.add(own[:, :, 1:hc + 1, 1:wc + 1], right[:, :, 1:hc + 1, 0:wc],
                  out=out[first:first + k])
    return out


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
        raise ShapeError(f"lbp: image of {pixel_size(width, height)} is too small for cell size "
                         f"{cell_size}: each side needs at least {cell_size} px")
    gray = gray.detach()
    if gray.dtype != torch.float64:
        gray = gray.float()
    hist = _histograms(gray, cell_size)
    norm = torch.sqrt(hist.sum(1, keepdim=True)) + _EPS
    return hist.sqrt_().div_(norm)


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


def lbp_rule(cell_size: int = 16, backend: str = "torch") -> CellGrid:
    """58 channels on cells of ``floor(n / cell)``."""
    return CellGrid(NUM_BINS, cell_size, rounding="floor")


def lbp_picture(image, features, cell_size: int = 16, **_):
    """The image beside each cell's dominant uniform pattern: a pie sector over its run of
    brighter neighbours, coloured by the run's direction (hue wheel, red = East), brighter when
    it covers a larger share of the cell; a grey disc where the flat bin dominates the cell.

    ``image`` ``(H, W, 3)``, ``features`` ``(58, h, w)``.
    """
    height, width = image.shape[:2]
    s = display_scale(height, width, cell=cell_size, min_cell=24)
    g = cell_size * s
    runs = [(i, j) for i in range(8) for j in range(1, 8)]  # bin 7*i + j - 1
    spans = [(45 * i - 22.5, 45 * (i + j) - 22.5) for i, j in runs] + [(0, 360)]
    glyphs = sector_templates(g, spans)
    colours = np.full((_FLAT_BIN + 1, 3), 0.6, np.float32)
    colours[:_FLAT_BIN] = hue_colours([np.radians(45 * (i + (j - 1) / 2)) for i, j in runs])
    share = features ** 2  # each cell's histogram: features are sqrt(h) / ||sqrt(h)||
    # non-uniform patterns (bin 57) are common in noise and say little: never shown
    dominant = share[:_FLAT_BIN].argmax(0)
    dominant[share.argmax(0) == _FLAT_BIN] = _FLAT_BIN
    strength = np.take_along_axis(share, dominant[None], 0)[0]
    strength = 0.3 + 0.7 * strength / max(float(strength.max()), 1e-12)
    cells = glyphs[dominant][..., None] * (colours[dominant] * strength[..., None])[:, :, None, None]
    return beside(upscale(image, s), fit(tile(cells), height * s, width * s))


def lbp_memory(height: int, width: int, cell_size: int = 16, **_) -> float:
    """Bytes LBP of one ``height x width`` image takes beyond the image: the peak growth
    measured (torch backend, 512 to 2048 px, linear in the pixels) was 74 B/px at cell 16 and
    762 at cell 1 (72 + 690 / cell^2); 20 % added."""
    return height * width * (85 + 830 / cell_size ** 2)


@hookimpl
def featinv_register_features(register):
    register(FeatureSpec(
        name="lbp", description="VLFeat uniform LBP (58 bins) per 16-px cell; not differentiable",
        input="gray", differentiable=False, build=LBP, rule=lbp_rule,
        params=(Param("cell_size", 16, "cell side in pixels", low=1, high=4096),
                Param("backend", "torch", "implementation: torch, or VLFeat's C library",
                      choices=("torch", "vlfeat"))),
        decoder_family="two_stream", backends=_backends, visualize=lbp_picture, memory=lbp_memory))
