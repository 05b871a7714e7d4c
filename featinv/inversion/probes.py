"""Fixed test pictures that `train`'s save check, `pack` and `invert` run a decoder on.

A checkpoint can pass every check of its tensors and still be no decoder: trained with a
marginal learning rate, its pictures of a black or white image lie far outside [0, 1] (invert
refuses them); with forged feature statistics it refuses every photo, or draws the same flat
picture for all. The probes below do not depend on anything stored in the checkpoint, so forged
statistics cannot steer them.
"""
from __future__ import annotations

import statistics
from typing import Callable

import torch

from ..errors import pixel_size

PROBE_NAMES = ("black", "white", "gray", "1-px checker", "gradient", "smooth colours 1",
               "smooth colours 2", "noise")
# the median per-channel RMS of the features of PROBE_NAMES, normalised by a decoder's feature
# statistics: 0.13 to 3.1 for the shipped decoders (HOG, SIFT, LBP, SqueezeNet conv1 to conv10);
# a forged feature_mean of 1e3 gives about 1e4, a forged feature_std of 1e3 about 1e-3
STATS_RANGE = (0.01, 100.0)
# uniform pictures are probed larger too: a decoder trained at 32 px with a marginal --lr drew
# a black picture within range at 32 px and 12% beyond [-1, 2] at 64 and 128 px (its border
# and its interior differ); grid layouts are inverted at any size
PLAIN = 4  # the first PLAIN of PROBE_NAMES are uniform (or, the checker, uniform per cell)
SCALES, LARGEST = (2, 4), 256


def probe_images(height: int, width: int | None = None) -> torch.Tensor:
    """``(8, 3, H, W)`` pictures in [0, 1], in the order of ``PROBE_NAMES`` (fixed seed)."""
    width = width or height
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    checker = ((yy + xx) % 2).float().expand(3, height, width)
    gradient = (xx.float() / max(width - 1, 1)).expand(3, height, width)
    coarse = torch.rand(2, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                             align_corners=False)
    plain = [torch.full((3, height, width), v) for v in (0.0, 1.0, 0.5)]
    noise = torch.rand(3, height, width, generator=g)
    return torch.stack([*plain, checker, gradient, smooth[0], smooth[1], noise])


def larger_sides(height: int, width: int) -> list[tuple[int, int]]:
    """The sides the uniform probes are also run at for grid layouts: 2x and 4x the training
    size, at most ``LARGEST`` (or the training size)."""
    cap = max(LARGEST, height, width)
    sides = [(min(k * height, cap), min(k * width, cap)) for k in SCALES]
    return [s for s in dict.fromkeys(sides) if s != (height, width)]


def picture_fault(raw: torch.Tensor) -> str | None:
    """Why a decoder's raw outputs ``(N, 3, H, W)`` of the first N ``probe_images`` are no
    pictures (``output_checks.output_fault`` of each, as `invert` judges each image), or None."""
    from .output_checks import output_fault

    size = f" at {pixel_size(raw.shape[-1], raw.shape[-2])}" if raw.numel() else ""
    for name, out in zip(PROBE_NAMES, raw):
        fault = output_fault(out.float())
        if fault:
            return f"it reconstructs a {name} test image{size} with {fault}"
    return None


def statistics_fault(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
                     ) -> str | None:
    """Why ``mean`` and ``std`` (``(C,)``, a decoder's feature statistics) cannot be those of
    the representation whose features of ``probe_images`` are ``features`` ``(8, C, ...)``, or
    None: normalised by them, the median channel's RMS must lie in ``STATS_RANGE``. Statistics
    of 0 and 1 (a decoder built without them: features go in as they are) are not judged."""
    if not bool(mean.any()) and bool((std == 1).all()):
        return None
    view = (1, -1) + (1,) * (features.dim() - 2)
    z = (features.double() - mean.double().view(view)) / std.double().view(view)
    dims = [d for d in range(z.dim()) if d != 1]
    per_channel = z.pow(2).mean(dims).sqrt()
    # channels with no value on these pictures and a mean of 0 (after a ReLU) say nothing
    values = features.transpose(0, 1).reshape(features.shape[1], -1)  # (C, everything else)
    live = per_channel[values.ne(0).any(1) | mean.ne(0)]
    if not live.numel():
        return None
    rms = statistics.median(live.tolist())
    low, high = STATS_RANGE
    if low <= rms <= high:
        return None
    return (f"its feature statistics (feature_mean, feature_std) do not fit its representation: "
            f"features of test pictures normalised by them have an RMS of {rms:.3g} "
            f"(trained decoders give {low:g} to {high:g})")


def check_decoder(encode: Callable[[torch.Tensor], torch.Tensor],
                  decode: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor],
                  mean: torch.Tensor, std: torch.Tensor, sides: tuple[int, int],
                  larger: list[tuple[int, int]] = ()) -> str | None:
    """``statistics_fault`` or ``picture_fault`` of a decoder on ``probe_images`` at ``sides``,
    and of its uniform ones at each of ``larger``: ``encode`` maps images to features,
    ``decode`` features to raw pictures of the given sides."""
    with torch.no_grad():
        features = encode(probe_images(*sides))
        if not bool(torch.isfinite(features).all()):
            return None  # the representation's own fault, refused where images are encoded
        fault = statistics_fault(features.cpu(), mean.cpu(), std.cpu()) \
            or picture_fault(decode(features, sides))
        for more in larger:
            if fault:
                break
            fault = picture_fault(decode(encode(probe_images(*more)[:PLAIN]), more))
        return fault
