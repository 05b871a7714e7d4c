"""Image sizing for inversion: the size an image is worked at, and the padding that keeps a
reconstruction aligned with the cells of its representation.

Decoders of grid layouts are fully convolutional, so images are inverted at their own size by
default (longer side capped at ``DEFAULT_MAX_SIDE``); vector layouts work at the decoder's
training size (``default_size``). A side that the representation's cells do not divide is
reflect-padded at the bottom/right to the next side at which the decoder's output has exactly
the padded size (``fit_sides``, ``pad_images``), and the reconstruction is cropped back, so
outputs have the input's size and their pixels stay aligned with the cells (no stretching).
"""
from __future__ import annotations

import torch
from PIL import Image

from ..decoders.networks import Decoder
from ..io.images import (check_image_tensor, fitted_size, load_fitted, load_image, pil_to_tensor,
                         tensor_to_pil)
from ..representation.layout import CellGrid
from ..representation.spec import Extractor


def _as_tensor(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return check_image_tensor(image if image.ndim == 3 else image.squeeze(0))
    if isinstance(image, Image.Image):
        return pil_to_tensor(image.convert("RGB"))
    return load_image(image)


def work_size(width: int, height: int, size: int | None, max_side: int | None = None,
              name: str = "image") -> tuple[int, int]:
    """``(width, height)`` to work at: the shorter side resized to ``size`` (None: as is), then
    shrunk, aspect ratio kept, so the longer side is at most ``max_side`` (None: no cap).
    Enlarging beyond ``MAX_RESIZED_PIXELS`` is refused as in ``shorter_side_size``, and so is a
    result with a side under ``MIN_WORK_SIDE`` (``featinv.io.images.fitted_size``)."""
    return fitted_size(width, height, size, max_side, name=name)


def prepare(image, size: int | None, max_side: int | None = None) -> torch.Tensor:
    """``(3, H, W)`` at ``work_size``: the shorter side resized to ``size`` (None: the image's
    own), the longer side at most ``max_side`` (Pillow's bicubic, as for training). A file is
    sized from its header before its pixels are decoded (``load_fitted``)."""
    if not isinstance(image, (torch.Tensor, Image.Image)):
        return load_fitted(image, size, max_side)
    img = _as_tensor(image)
    height, width = img.shape[-2:]
    new = work_size(width, height, size, max_side)  # refuses absurd sizes first
    if new == (width, height):
        return img
    return pil_to_tensor(tensor_to_pil(img).resize(new, Image.BICUBIC))


def fit_sides(extractor: Extractor, decoder: Decoder, height: int, width: int
              ) -> tuple[int, int]:
    """The smallest ``(H', W') >= (height, width)`` at which ``decoder`` reconstructs exactly
    ``H' x W'`` pixels from ``extractor``'s features: for cell grids (HOG, LBP, SIFT) decoded
    by a built-in network, the next sides with ``cells(side) * r == side`` (multiples of the
    cell for HOG, LBP and SIFT). ``(height, width)`` itself where no padding applies (vector
    layouts, other layout rules, plugin networks: their output is resized instead). An image
    smaller than the representation accepts is refused here, as unpadded."""
    rule, r = extractor.rule, decoder.output_factor()
    extractor.check_large_enough(height, width, "invert")  # before any padding
    if r is None or not isinstance(rule, CellGrid):
        return height, width

    def fit(side: int) -> int:
        for padded in range(side, side + 2 * r + 1):
            cells = rule(padded, padded).height  # square cells: each side on its own
            if cells * r == padded:
                return padded
        return side  # no such side nearby: the output is resized to this one

    return fit(height), fit(width)


def pad_images(images: torch.Tensor, sides: tuple[int, int]) -> torch.Tensor:
    """``(B, 3, H, W)`` reflect-padded at the bottom and right to ``sides`` (replicated where
    a side is too short to reflect)."""
    pad_h, pad_w = sides[0] - images.shape[-2], sides[1] - images.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return images
    short = pad_h >= images.shape[-2] or pad_w >= images.shape[-1]
    return torch.nn.functional.pad(images, (0, pad_w, 0, pad_h),
                                   mode="replicate" if short else "reflect")


def default_size(decoder: Decoder) -> int | None:
    """The shorter side ``invert`` works at by default: None (the image's own) for grid
    layouts, the training size for vector layouts."""
    return None if decoder.layout.kind == "grid" else int(decoder.config["image_size"])
