"""What a decoder is judged on when no images of its training data are at hand.

- ``probe_features``: features drawn around the decoder's own feature statistics, its training
  distribution as far as the file tells. A sound decoder draws them within reach of [0, 1];
  forged or diverged weights draw saturated noise (``own_features_fault``). ``pack`` refuses
  such a decoder, and ``invert`` then calls an image's far-out reconstruction the decoder's
  fault; with a sound decoder it is the image's (unlike the training photos: a black square
  for a decoder of document scans), clamped with a warning.
- ``probe_images``: fixed pictures whose features, normalised by the stored statistics, show
  whether those statistics can be the representation's (``statistics_fault``): forged ones
  made a decoder refuse every photo, or draw one flat picture for all.
"""
from __future__ import annotations

import statistics

import torch

# the median per-channel RMS of the features of probe_images, normalised by a decoder's feature
# statistics: 0.13 to 3.1 for the shipped decoders (HOG, SIFT, LBP, SqueezeNet conv1 to conv10);
# a forged feature_mean of 1e3 gives about 1e4, a forged feature_std of 1e3 about 1e-3
STATS_RANGE = (0.01, 100.0)


def probe_images(height: int, width: int | None = None) -> torch.Tensor:
    """``(8, 3, H, W)`` pictures in [0, 1] (fixed seed): black, white, gray, a 1-px checker, a
    horizontal gradient, two of smooth colours, noise."""
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


def probe_features(decoder) -> torch.Tensor:
    """Two feature arrays ``(2, *layout)`` drawn around ``decoder``'s feature statistics
    (fixed seed), on the CPU."""
    generator = torch.Generator().manual_seed(0)
    shape = (2, *decoder.layout.shape)
    view = (1, -1) + (1,) * (len(shape) - 2)
    noise = torch.randn(shape, generator=generator)
    mean, std = decoder.feature_mean.detach().cpu(), decoder.feature_std.detach().cpu()
    return mean.float().view(view) + std.float().view(view) * noise


@torch.no_grad()
def own_features_output(decoder) -> torch.Tensor:
    """``decoder``'s raw output (fp32) for ``probe_features``, on its device."""
    device = next(decoder.parameters()).device
    return decoder(probe_features(decoder).to(device)).float()


def own_features_fault(decoder) -> str | None:
    """``output_checks.output_fault`` of ``own_features_output``: why ``decoder`` draws no
    pictures even of features like its training data's, or None."""
    from .output_checks import output_fault

    return output_fault(own_features_output(decoder))


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


def decoder_statistics_fault(extractor, decoder, device: torch.device | None = None
                             ) -> str | None:
    """``statistics_fault`` of ``decoder`` with ``extractor``'s features (computed on
    ``device``) of ``probe_images``: square, at the training size for vector layouts, else at
    most 64 px (statistics are per channel, not per place). None as well when the
    representation gives NaN there (its own fault, refused on images)."""
    size = int(decoder.config["image_size"])
    side = size if decoder.layout.kind == "vector" \
        else max(min(size, 64), extractor.rule.smallest_side)
    with torch.no_grad():
        features = extractor(probe_images(side).to(device or "cpu")).float().cpu()
    if not bool(torch.isfinite(features).all()):
        return None
    return statistics_fault(features, decoder.feature_mean.detach().cpu(),
                            decoder.feature_std.detach().cpu())
