"""Reconstruction metrics: the paper's normalized error, PSNR and SSIM.

All take float image batches ``(N, 3, H, W)`` in [0, 1].
"""
from __future__ import annotations

import torch

from ..errors import ShapeError


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ShapeError(f"expected two (N, C, H, W) batches of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def reconstruction_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ``||x_i - y_i||_2`` per image. Shape: ``(N,)``."""
    _check_pair(x, y)
    return (x - y).flatten(1).double().norm(dim=1)


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """Average Euclidean distance between all pairs of distinct images of ``x`` (N >= 2)."""
    n = x.shape[0]
    if n < 2:
        raise ShapeError("the normalized error needs at least 2 test images")
    flat = x.flatten(1).double()
    sq = (flat * flat).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T).clamp_min(0)
    iu = torch.triu_indices(n, n, offset=1)
    return float(d2[iu[0], iu[1]].sqrt().mean())


def normalized_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """The paper's average normalized reconstruction error: mean_i ||x_i - y_i|| / N, where N is
    the average distance between the (true) test images ``x``."""
    spread = mean_pairwise_distance(x)
    if spread == 0 or bool((x == x[:1]).all()):  # rounding can leave a spread of 1e-8
        raise ShapeError("the normalized error divides by the mean distance between the test "
                         "images, which is 0: they are all identical. Use distinct images.")
    return float(reconstruction_distances(x, y).mean()) / spread


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image for data range 1. Shape: ``(N,)``."""
    _check_pair(x, y)
    mse = (x - y).flatten(1).double().pow(2).mean(1).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


def _gaussian_1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


SSIM_WORK_BYTES = 256 * 2**20  # the float64 temporaries of one SSIM pass stay below this
_SSIM_TEMPORARIES = 16  # float64 values alive per input value in one pass (measured: ~14)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         chunk: int = 64) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per image, Gaussian window, data range 1,
    averaged over channels and valid positions. Shape: ``(N,)``.

    Computed in float64, with the Gaussian applied as two 1-D passes (the same result as the
    2-D window, in a fraction of the memory and time; float64 convolutions are slow on CPU, so
    each pass is a matrix product over sliding windows). At most ``chunk`` images go through
    one pass, fewer (down to bands of rows of one image) when their temporaries would exceed
    ``SSIM_WORK_BYTES``: the memory SSIM needs does not grow with the image size.
    """
    _check_pair(x, y)
    n, c, h, w = x.shape
    per_image = c * h * w * 8 * _SSIM_TEMPORARIES
    chunk = max(1, min(chunk, SSIM_WORK_BYTES // per_image))
    if n > chunk:
        return torch.cat([ssim(x[i:i + chunk], y[i:i + chunk], window, sigma, chunk)
                          for i in range(0, n, chunk)])
    window = min(window, h, w)
    g = _gaussian_1d(window, sigma, x.device, torch.float64)
    rows = max(1, SSIM_WORK_BYTES // (n * c * w * 8 * _SSIM_TEMPORARIES) - window + 1)
    total = torch.zeros(n, dtype=torch.float64, device=x.device)
    for top in range(0, h - window + 1, rows):  # bands of output rows, each with its margin
        band = slice(top, min(h, top + rows + window - 1))
        total += _ssim_sum(x[..., band, :].double(), y[..., band, :].double(), window, g)
    return total / (c * (h - window + 1) * (w - window + 1))


def _ssim_sum(x: torch.Tensor, y: torch.Tensor, window: int, g: torch.Tensor) -> torch.Tensor:
    """Per image, the sum of the SSIM map over channels and valid positions."""
    blur = lambda t: t.unfold(-1, window, 1).matmul(g).unfold(-2, window, 1).matmul(g)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).sum(1)


def metrics_bytes(n: int, size: int) -> int:
    """Peak bytes of ``quality`` on ``n`` pairs of ``size`` px images, the images included:
    the two float32 batches, then float64 copies and differences of them (reconstruction
    distances, PSNR, pairwise distances), plus SSIM's bounded pass."""
    values = n * 3 * size * size
    return values * (4 + 4 + 8 + 8 + 8) + SSIM_WORK_BYTES


def quality(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The reconstruction metrics every report gives (evaluate, compare, training's validation):
    ``normalized_error``, and ``psnr`` (dB) and ``ssim`` averaged over the images."""
    return {"normalized_error": normalized_error(x, y), "psnr": float(psnr(x, y).mean()),
            "ssim": float(ssim(x, y).mean())}
