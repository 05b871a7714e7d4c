"""Block DCT features for featinv, as in JPEG: an example third-party plugin.

The grayscale image is cut into non-overlapping ``block x block`` blocks (pixels past the last
full block are dropped), each block goes through the orthonormal 2-D DCT-II, and the lowest
``coefficients`` frequencies in JPEG's zig-zag order are kept as channels::

    (B, 1, H, W) -> (B, coefficients, floor(H / block), floor(W / block))

The transform is one matrix product of the image, cut into blocks, with the DCT basis images.
"""
from __future__ import annotations

import math

import torch
from torch import nn

import featinv
from featinv import CellGrid, FeatureSpec, Param


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``(n, n)`` in float64; row ``u`` is the frequency-``u`` cosine."""
    k = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


def zigzag(n: int) -> list[tuple[int, int]]:
    """The ``(row, col)`` frequencies of an ``n x n`` block in JPEG's zig-zag order."""
    # walk the anti-diagonals r + c = s, alternating direction: down on odd s, up on even s
    return sorted(((r, c) for r in range(n) for c in range(n)),
                  key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else rc[1]))


def dct_basis(block: int, coefficients: int) -> torch.Tensor:
    """The lowest ``coefficients`` DCT basis images in zig-zag order.

    Shape: ``(coefficients, block, block)``, float32; image ``k`` is the outer product of
    two rows of ``dct_matrix(block)``.
    """
    d = dct_matrix(block)
    return torch.stack([torch.outer(d[r], d[c]) for r, c in zigzag(block)[:coefficients]]).float()


def check_params(block: int, coefficients: int) -> None:
    """Raise ``FeatinvError`` unless ``block >= 1`` and ``1 <= coefficients <= block**2``."""
    if block < 1:
        raise featinv.FeatinvError(f"dct: 'block' must be at least 1, got {block}.")
    if not 1 <= coefficients <= block * block:
        raise featinv.FeatinvError(
            f"dct: 'coefficients' must be between 1 and {block * block} (block * block for "
            f"block={block}), got {coefficients}.")


class BlockDCT(nn.Module):
    """Gray images ``(B, 1, H, W)`` -> ``(B, coefficients, H // block, W // block)``.

    Channel ``k`` is the ``k``-th zig-zag DCT coefficient of each block; channel 0 (DC) is the
    block mean times ``block``.
    """

    def __init__(self, block: int = 8, coefficients: int = 15):
        super().__init__()
        check_params(block, coefficients)
        self.block = block
        self.register_buffer("basis", dct_basis(block, coefficients), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, b = x.shape[0], self.block
        h, w = x.shape[-2] // b, x.shape[-1] // b
        # crop to whole blocks; pixel (i, j) of block (y, x) lands at blocks[:, y, i, x, j]
        blocks = x[:, 0, : h * b, : w * b].reshape(n, h, b, w, b).to(self.basis.dtype)
        # a matmul rather than a strided conv2d: cuDNN may run float32 convs in TF32 on GPUs
        return torch.einsum("kij,nyixj->nkyx", self.basis, blocks)

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """``(B, coefficients, h, w)`` -> gray ``(B, 1, h * block, w * block)``.

        The basis is orthonormal, so this is the least-squares image: the cropped input itself
        when all ``block * block`` coefficients are kept, a JPEG-like low-pass image otherwise.
        """
        n, _, h, w = coeffs.shape
        blocks = torch.einsum("kij,nkyx->nyixj", self.basis, coeffs)
        return blocks.reshape(n, 1, h * self.block, w * self.block)


def dct_rule(block: int, coefficients: int) -> CellGrid:
    """One channel per kept coefficient, one cell per whole block."""
    check_params(block, coefficients)
    return CellGrid(coefficients, block, rounding="floor")


@featinv.hookimpl
def featinv_register_features(register):
    register(FeatureSpec(
        name="dct",
        description="JPEG-style block DCT: the lowest zig-zag DCT coefficients of each gray block",
        input="gray",
        differentiable=True,
        build=BlockDCT,
        rule=dct_rule,
        params=(
            # the basis holds coefficients * block**2 numbers: 64 px blocks, all 4096
            # coefficients, take 64 MB (256 px blocks took 17 GB, within the old bounds)
            Param("block", 8, "block side in pixels", low=1, high=64),
            Param("coefficients", 15, "DCT coefficients kept per block, in zig-zag order "
                                      "(1 to block*block)", low=1, high=64 * 64),
        ),
        decoder_family="two_stream",
    ))
