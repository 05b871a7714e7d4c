"""HOG in VLFeat's UoCTTI variant (Felzenszwalb et al.), as ``vl_hog(im, cell)`` computes it.

Pure torch, batched, device-agnostic and differentiable with respect to the image: the
orientation of each pixel is a hard (piecewise-constant) choice, and the votes are weighted by the
gradient magnitude, so the gradient flows through the magnitudes and the block normalisation.

The computation follows ``vl/hog.c`` (VLFeat 0.9.21) step by step, including its float32
orientation scores and tie-breaking, so the output matches VLFeat up to float rounding (about 1e-7
for images in [0, 1]; only the order of the float32 sums differs).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import vlfeat
from ..errors import ShapeError, pixel_size
from ..representation.hookspecs import hookimpl
from ..representation.layout import CellGrid
from ..representation.spec import FeatureSpec, Param
from .drawing import beside, display_scale, fit, line_templates, stamp, upscale

__all__ = ["hog_uoctti", "hog_cells", "HOG"]

# VLFeat hard-codes 1.0f / sqrtf(18.0f) (float32) whatever the number of orientations
_TEXTURE_SCALE = float(1.0 / torch.tensor(18.0, dtype=torch.float32).sqrt())
_CLIP = 0.2
_EPS = 1e-4
# below this many histogram bins per image, flat vote indices are computed exactly in float32
_FLOAT_INDEX_LIMIT = 2 ** 24
_CHUNK_PIXELS = 1 << 18


def hog_cells(size: int, cell_size: int) -> int:
    """Number of HOG cells along a side of ``size`` pixels: ``floor((size + cell//2) / cell)``."""
    return (size + cell_size // 2) // cell_size


@lru_cache(maxsize=64)
def _axis_weights(size: int, cell_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear voting along one axis for the interior pixels ``1 .. size-2`` (CPU tensors).

    Returns the index of the cell before each pixel, ``floor(h)`` (long, -1 before the first
    centre), and the float32 weights of that cell and the next, with ``h = (p + 0.5)/cell - 0.5``
    rounded as in ``vl/hog.c``.
    """
    h = torch.tensor([(p + 0.5) / cell_size - 0.5 for p in range(1, size - 1)],
                     dtype=torch.float32)
    before = torch.floor(h)
    w_after = h - before  # exact in float32
    # ``1.0 - w`` is a double expression stored to a float in C
    w_before = (1.0 - w_after.double()).float()
    return before.long(), w_before, w_after


def _axis(size: int, cell_size: int, like: torch.Tensor):
    before, w_before, w_after = _axis_weights(size, cell_size)
    return (before.to(like.device), w_before.to(like.device, like.dtype),
            w_after.to(like.device, like.dtype))


@lru_cache(maxsize=16)
def _orientation_table(num_orientations: int) -> torch.Tensor:
    """``(2, O)`` float32: ``cos`` and ``sin`` of ``k*pi/O``, computed in double then rounded."""
    angles = [k * math.pi / num_orientations for k in range(num_orientations)]
    return torch.tensor([[math.cos(a) for a in angles], [math.sin(a) for a in angles]],
                        dtype=torch.float32)


class _Workspace:
    """Work buffers shared by the chunks of one call on the CPU, so that the memory allocator does
    not hand out (and page-fault) fresh memory for every step.

    ``out(...)`` gives the buffer to pass as ``out=``, or ``None`` (a fresh tensor) when the
    workspace is off: with autograd, which refuses ``out=`` and keeps intermediate results for
    the backward pass. ``take(...)`` always gives a tensor (a fresh one when off). The buffers
    named in ``sizes`` (name -> (elements, dtype)) are carved from one allocation: one block
    rather than many keeps the allocator from returning the memory to the system after every
    call and page-faulting it back in at the next (glibc trims the heap when the freed memory at
    its top exceeds twice the largest block it ever unmapped).
    """

    def __init__(self, enabled: bool, sizes: dict[str, tuple[int, torch.dtype]] | None = None,
                 device: torch.device | str = "cpu"):
        self.enabled = enabled
        self._buffers: dict[str, torch.Tensor] = {}
        if enabled and sizes:
            nbytes = [n * dtype.itemsize for n, dtype in sizes.values()]
            starts = [0]
            for size in nbytes:
                starts.append(starts[-1] + -(-size // 64) * 64)  # 64-byte aligned
            block = torch.empty(starts[-1], dtype=torch.uint8, device=device)
            for (name, (_, dtype)), start, size in zip(sizes.items(), starts, nbytes):
                self._buffers[name] = block[start:start + size].view(dtype)

    def take(self, name: str, shape: tuple[int, ...], like: torch.Tensor,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = like.dtype if dtype is None else dtype
        if not self.enabled:
            return torch.empty(shape, dtype=dtype, device=like.device)
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = torch.empty(size, dtype=dtype, device=like.device)
        return buffer[:size].view(shape)

    def out(self, name: str, shape: tuple[int, ...], like: torch.Tensor,
            dtype: torch.dtype | None = None) -> torch.Tensor | None:
        return self.take(name, shape, like, dtype) if self.enabled else None


def _orientation_bins(gx: torch.Tensor, gy: torch.Tensor, num_orientations: int,
                      ws: _Workspace | None = None) -> torch.Tensor:
    """Directed orientation bin in ``0 .. 2*O-1`` of each gradient (float holding integers).

    VLFeat takes ``k = argmax_k |gx cos(k pi/O) + gy sin(k pi/O)|`` (float32 scores, ties to the
    lowest ``k``) and adds ``O`` when that score is negative: the nearest of the ``2*O`` directions.
    ``atan2`` gives it directly except within rounding of a boundary between two bins; for those
    few pixels (e.g. every ``gx == 0`` when ``O`` is odd) the float32 scores of the two
    neighbouring bins decide, as in VLFeat.
    """
    o = num_orientations
    ws = _Workspace(False) if ws is None else ws
    shape = tuple(gx.shape)
    angle = torch.atan2(gy, gx, out=ws.take("angle", shape, gx)).mul_(o / math.pi)  # in bins
    nearest = torch.round(angle, out=ws.take("nearest", shape, gx))  # -O .. O
    # + 2*O below 0 (torch.remainder is slow on the CPU, comparisons with float output are fast)
    bins = torch.lt(nearest, 0, out=ws.take("bins", shape, gx)).mul_(2 * o).add_(nearest)
    # atan2 is accurate to a few ulp, so 1e-3 of a bin is a wide margin
    frac = torch.sub(angle, nearest, out=ws.take("frac", shape, gx))
    unsure = torch.gt(frac.abs_(), 0.5 - 1e-3)
    table = _orientation_table(o).to(device=gx.device, dtype=gx.dtype)
    if gx.device.type == "cpu" and not torch.compiler.is_compiling():
        # few pixels are unsure: decide just those (nonzero() would sync a GPU, and breaks graphs)
        where = unsure.view(-1).nonzero().squeeze(1)
        if where.numel():
            picked = _decide(gx.reshape(-1)[where], gy.reshape(-1)[where],
                             angle.reshape(-1)[where], table, o)
            bins.view(-1)[where] = picked.to(bins.dtype)
        return bins
    return torch.where(unsure, _decide(gx, gy, angle, table, o).to(bins.dtype), bins)


def _decide(x: torch.Tensor, y: torch.Tensor, angle: torch.Tensor, table: torch.Tensor,
            o: int) -> torch.Tensor:
    """VLFeat's bin for gradients ``(x, y)`` near a boundary: the better of the two
    neighbouring directions by float32 score (ties to the lower ``k``), ``+ O`` if negative."""
    k0 = torch.remainder(torch.floor(angle), o).long()
    k1 = torch.remainder(k0 + 1, o)
    d0 = x * table[0, k0] + y * table[1, k0]
    d1 = x * table[0, k1] + y * table[1, k1]
    pick1 = (d1.abs() > d0.abs()) | ((d1.abs() == d0.abs()) & (k1 < k0))
    k = torch.where(pick1, k1, k0)
    d = torch.where(pick1, d1, d0)
    return k + o * (d < 0).long()


def _histograms(gray: torch.Tensor, cell_size: int, num_orientations: int,
                ws: _Workspace) -> torch.Tensor:
    """Magnitude-weighted orientation histograms ``(B, 2*O, Hc, Wc)`` before normalisation."""
    b, _, height, width = gray.shape
    hc, wc = hog_cells(height, cell_size), hog_cells(width, cell_size)
    hi, wi = max(height - 2, 0), max(width - 2, 0)
    shape = (b, hi, wi)
    bins = 2 * num_orientations
    img = gray[:, 0]
    # central differences at the interior pixels only, no 1/2 (y points down)
    gx = torch.sub(img[:, 1:-1, 2:], img[:, 1:-1, :-2], out=ws.out("gx", shape, img))
    gy = torch.sub(img[:, 2:, 1:-1], img[:, :-2, 1:-1], out=ws.out("gy", shape, img))
    norm2 = torch.mul(gx, gx, out=ws.out("norm2", shape, img))
    norm2 = torch.add(norm2, torch.mul(gy, gy, out=ws.out("temp", shape, img)),
                      out=ws.out("norm2", shape, img))
    # sqrt has an infinite derivative at 0: flat pixels take the constant branch (a float mask
    # rather than torch.where, which is slow on the CPU)
    tiny = torch.finfo(norm2.dtype).tiny
    moving = torch.gt(norm2.detach(), 0, out=ws.take("moving", shape, img))
    mag = torch.clamp_min(norm2, tiny, out=ws.out("mag", shape, img))
    mag = torch.mul(torch.sqrt(mag, out=ws.out("mag", shape, img)), moving,
                    out=ws.out("mag", shape, img))
    with torch.no_grad():
        orient = _orientation_bins(gx.detach(), gy.detach(), num_orientations, ws)

    # each pixel votes into the 4 cells around it; the grid is padded by one cell on each side so
    # that votes off the grid land in the padding, which is cut off
    bx, wx1, wx2 = _axis(width, cell_size, mag)
    by, wy1, wy2 = _axis(height, cell_size, mag)
    wy1, wy2 = wy1.view(hi, 1), wy2.view(hi, 1)
    rows, cols = hc + 2, wc + 2
    cell = (by + 1).view(hi, 1) * cols + (bx + 1).view(1, wi)
    if bins * rows * cols < _FLOAT_INDEX_LIMIT:  # cheaper than int64 arithmetic
        flat = torch.mul(orient, rows * cols, out=ws.take("frac", shape, img))
        flat = flat.add_(cell.to(orient.dtype))
        index = ws.take("index", shape, img, torch.long).copy_(flat)
    else:
        index = orient.long() * (rows * cols) + cell
    index = index.view(b, hi * wi)
    # products in VLFeat's order: (magnitude * wx) * wy. Each complex slot holds the votes for its
    # own cell (real) and for the cell to its right (imaginary): two scatters carry the four votes
    complex_dtype = torch.complex128 if mag.dtype == torch.float64 else torch.complex64
    mx1 = torch.mul(mag, wx1, out=ws.out("mx1", shape, img))
    mx2 = torch.mul(mag, wx2, out=ws.out("mx2", shape, img))
    votes = []
    for wy in (wy1, wy2):
        own = torch.mul(mx1, wy, out=ws.out("own", shape, img))
        right = torch.mul(mx2, wy, out=ws.out("right", shape, img))
        votes.append(torch.complex(own, right, out=ws.out(f"votes{len(votes)}", shape, img,
                                                          complex_dtype)).view(b, -1))
    acc = ws.take("acc", (b, bins * rows * cols), img, complex_dtype).zero_()
    acc.scatter_add_(1, index, votes[0])
    acc[:, cols:].scatter_add_(1, index, votes[1])
    parts = torch.view_as_real(acc)
    own, right = parts[..., 0].view(b, bins, rows, cols), parts[..., 1].view(b, bins, rows, cols)
    return torch.add(own[:, :, 1:hc + 1, 1:wc + 1], right[:, :, 1:hc + 1, :wc],
                     out=ws.out("hist", (b, bins, hc, wc), img))


def _normalise(hist: torch.Tensor, num_orientations: int,
               ws: _Workspace | None = None) -> torch.Tensor:
    """UoCTTI block normalisation: ``(B, 2*O, Hc, Wc)`` histograms -> ``(B, 3*O+4, Hc, Wc)``."""
    o = num_orientations
    ws = _Workspace(False) if ws is None else ws
    undirected = hist[:, :o] + hist[:, o:]
    energy = (undirected * undirected).sum(1, keepdim=True)
    # 2x2 block sums with the cell grid's border replicated (not zero-padded)
    padded = F.pad(energy, (1, 1, 1, 1), mode="replicate")
    block = padded[..., :-1, :-1] + padded[..., :-1, 1:] + padded[..., 1:, :-1] + padded[..., 1:, 1:]
    factor = torch.rsqrt(block + _EPS)  # (B, 1, Hc+1, Wc+1)
    # blocks up-left, up-right, down-left, down-right of each cell
    factors = torch.stack([factor[..., :-1, :-1], factor[..., :-1, 1:],
                           factor[..., 1:, :-1], factor[..., 1:, 1:]], dim=1)  # (B, 4, 1, Hc, Wc)
    both = torch.cat([hist, undirected], dim=1).unsqueeze(1)  # (B, 1, 3*O, Hc, Wc)
    shape = (hist.shape[0], 4, 3 * o, *hist.shape[2:])
    clipped = torch.mul(factors, both, out=ws.out("clipped", shape, hist))
    clipped = torch.clamp(clipped, max=_CLIP, out=ws.out("clipped", shape, hist))
    oriented = 0.5 * clipped.sum(1)
    texture = _TEXTURE_SCALE * clipped[:, :, 2 * o:].sum(2)
    return torch.cat([oriented, texture], dim=1)


def _buffer_sizes(b: int, height: int, width: int, cell_size: int, num_orientations: int,
                  dtype: torch.dtype) -> dict[str, tuple[int, torch.dtype]]:
    """The work buffers ``_histograms`` and ``_normalise`` take for ``b`` images (elements)."""
    pixels = b * max(height - 2, 0) * max(width - 2, 0)
    hc, wc = hog_cells(height, cell_size), hog_cells(width, cell_size)
    complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    o = num_orientations
    sizes = {name: (pixels, dtype) for name in (
        "gx", "gy", "norm2", "temp", "moving", "mag", "angle", "nearest", "bins", "frac", "mx1",
        "mx2", "own", "right")}
    sizes.update(index=(pixels, torch.long), votes0=(pixels, complex_dtype),
                 votes1=(pixels, complex_dtype),
                 acc=(b * 2 * o * (hc + 2) * (wc + 2), complex_dtype),
                 hist=(b * 2 * o * hc * wc, dtype), clipped=(b * 4 * 3 * o * hc * wc, dtype))
    return sizes


def hog_uoctti(gray: torch.Tensor, cell_size: int = 8, num_orientations: int = 9) -> torch.Tensor:
    """VLFeat UoCTTI HOG of a batch of grayscale images.

    Channels: ``0 .. 2O-1`` contrast-sensitive orientations (angle ``k*180/O`` degrees, from +x
    towards +y, y down), ``2O .. 3O-1`` contrast-insensitive ones, then 4 texture channels (blocks
    up-left, up-right, down-left, down-right). With ``O = 9``: 31 channels, values in [0, 0.4]
    (texture: [0, 0.4243]).

    Args:
        gray: ``(B, 1, H, W)`` float images (VLFeat's reference uses values in [0, 1]). Each side
            needs at least half a cell; gradients exist only at interior pixels, so images of 1 or
            2 px in a direction give all-zero features (VLFeat itself refuses fewer than 4 px).
        cell_size: cell side in pixels.
        num_orientations: undirected orientations ``O``.

    Returns:
        ``(B, 3*O+4, Hc, Wc)`` with ``Hc = floor((H + cell//2) / cell)`` and the same for ``W``;
        float32 unless ``gray`` is float64.
    """
    if gray.ndim != 4 or gray.shape[1] != 1:
        raise ShapeError(f"hog: expected gray images of shape (B, 1, H, W), got {tuple(gray.shape)}")
    if cell_size < 1 or num_orientations < 1:
        raise ValueError(f"hog: cell_size and num_orientations must be >= 1, got {cell_size} "
                         f"and {num_orientations}")
    height, width = gray.shape[-2:]
    if hog_cells(height, cell_size) < 1 or hog_cells(width, cell_size) < 1:
        raise ShapeError(f"hog: image of {pixel_size(width, height)} is too small for cell size "
                         f"{cell_size}: "
                         f"each side needs at least {cell_size - cell_size // 2} px")
    if gray.dtype != torch.float64:
        gray = gray.float()
    # the CPU works through a batch in chunks of about _CHUNK_PIXELS pixels that share one set of
    # work buffers (unless autograd needs the intermediate results), so that they stay in cache
    # and clear of the allocator's page faults; other devices take the batch at once
    b = gray.shape[0]
    per_chunk = b if gray.device.type != "cpu" else max(1, _CHUNK_PIXELS // (height * width))
    chunked = per_chunk < b
    if chunked and not (torch.is_grad_enabled() and gray.requires_grad):
        ws = _Workspace(True, _buffer_sizes(per_chunk, height, width, cell_size,
                                            num_orientations, gray.dtype), gray.device)
    else:
        ws = _Workspace(False)
    chunks = [_normalise(_histograms(chunk, cell_size, num_orientations, ws), num_orientations, ws)
              for chunk in gray.split(per_chunk)]
    return torch.cat(chunks) if chunked else chunks[0]


class HOG(nn.Module):
    """VLFeat UoCTTI HOG as a module; see :func:`hog_uoctti`.

    ``backend="vlfeat"`` calls VLFeat's C library instead (no gradient, computed on the CPU).

    Shape:
        - Input: ``(B, 1, H, W)``.
        - Output: ``(B, 3*O+4, floor((H + cell//2)/cell), floor((W + cell//2)/cell))``.
    """

    def __init__(self, cell_size: int = 8, num_orientations: int = 9, backend: str = "torch"):
        super().__init__()
        self.cell_size = int(cell_size)
        self.num_orientations = int(num_orientations)
        self.backend = backend
        if backend == "vlfeat":
            vlfeat.library()  # fail now, with instructions, rather than at the first batch

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        if self.backend == "vlfeat":
            return vlfeat.per_image(
                lambda im: vlfeat.hog(im, self.cell_size, self.num_orientations), gray)
        return hog_uoctti(gray, self.cell_size, self.num_orientations)

    def extra_repr(self) -> str:
        return (f"cell_size={self.cell_size}, num_orientations={self.num_orientations}, "
                f"backend={self.backend!r}")


def _backends() -> dict[str, str]:
    return {"torch": "built in (batched, CPU or CUDA, differentiable)", "vlfeat": vlfeat.status()}


def hog_rule(cell_size: int = 8, num_orientations: int = 9, backend: str = "torch") -> CellGrid:
    """``3*O + 4`` channels (31 for O = 9) on cells of ``floor((n + cell//2) / cell)``."""
    return CellGrid(3 * num_orientations + 4, cell_size, rounding="half_up")


def hog_picture(image, features, cell_size: int = 8, num_orientations: int = 9, **_):
    """The image beside HOG glyphs: per cell a star with one stroke per undirected orientation.

    The stroke of orientation ``k`` (gradient at ``k*180/O`` degrees) runs along the edge, at
    right angles to the gradient; its brightness is the contrast-insensitive channel ``2O + k``
    (scaled by the image's largest). ``image`` ``(H, W, 3)``, ``features`` ``(3O+4, h, w)``.
    """
    o, (height, width) = num_orientations, image.shape[:2]
    s = display_scale(height, width, cell=cell_size, min_cell=16)
    undirected = features[2 * o:3 * o]
    undirected = undirected / max(float(undirected.max()), 1e-12)
    strokes = line_templates(cell_size * s, np.arange(o) * np.pi / o + np.pi / 2)
    return beside(upscale(image, s), fit(stamp(strokes, undirected), height * s, width * s))


def hog_memory(height: int, width: int, cell_size: int = 8, **_) -> float:
    """Bytes HOG of one ``height x width`` image takes beyond the image: the peak growth
    measured (torch backend, 512 to 2048 px, linear in the pixels) was 100 B/px at cell 8 and
    333 at cell 2 (85 + 1000 / cell^2); 20 % added."""
    return height * width * (100 + 1200 / cell_size ** 2)


@hookimpl
def featinv_register_features(register):
    register(FeatureSpec(
        name="hog", description="VLFeat UoCTTI HOG (Felzenszwalb et al.), 31 channels per 8-px cell",
        input="gray", differentiable=True, build=HOG, rule=hog_rule,
        params=(Param("cell_size", 8, "cell side in pixels", low=1, high=4096),
                Param("num_orientations", 9, "undirected orientation bins (directed: twice as many)",
                      low=1, high=180),
                Param("backend", "torch", "implementation: torch, or VLFeat's C library",
                      choices=("torch", "vlfeat"))),
        decoder_family="two_stream", backends=_backends, visualize=hog_picture, memory=hog_memory))
