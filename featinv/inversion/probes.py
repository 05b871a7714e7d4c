"""What a decoder is judged on when no images of its training data are at hand.

- ``probe_features``: features drawn around the decoder's own feature statistics, its training
  distribution as far as the file tells. A sound decoder draws them within reach of [0, 1];
  forged or diverged weights draw saturated noise (``own_features_fault``). ``pack`` refuses
  such a decoder, and ``invert`` then calls an image's far-out reconstruction the decoder's
  fault; with a sound decoder it is the image's (unlike the training photos: a black square
  for a decoder of document scans), clamped with a warning.
- ``probe_images``: fixed pictures whose features, normalised by the stored statistics, show
  whether those statistics can be the representation's (``statistics_fault``): forged ones
  made a decoder refuse every photo, or draw one flat picture for all, or faint or garbled
  ones (a feature_std 20 times too large, a feature_mean 3 std off).
"""
from __future__ import annotations

import statistics

import torch

from .evidence import (SHRUNK_SEEN, as_initialised, shrunk_layer, trained_by,  # noqa: F401
                       untouched)

# the median per-channel RMS of the features of probe_images, normalised by a decoder's feature
# statistics. Measured (issue 24, round 12) on the shipped decoders and 50 trained ones (HOG,
# SIFT, LBP, DCT, SqueezeNet conv1 to pool10): 0.21 to 3.4. On statistics as training sets them
# (14 representations x 9 data sets x 16 to 224 px): 0.15 to 36 for photos, document scans, a
# night sky and noise, where the pictures give the representation values (SIFT, where they
# hardly do: down to 0.055); above 100 only for near-identical training pictures (LBP of
# synthetic document scans, SqueezeNet of flat ones), which also training on so little cannot
# tell apart from a feature_std made 20 times smaller (24 for the shipped HOG decoder). A
# feature_std 20 times too large gives 0.06 there (one of 1e3: 1e-3), a feature_mean of 1e3 1e4.
STATS_RANGE = (0.1, 100.0)
# the low bound applies where at least this share of the pictures' values is not 0 (SIFT: 0.003,
# keypoints are rare on them; the others 0.13 and more): else a low RMS only says that the
# pictures sit at the representation's 0, as sparse training data does too
DENSE = 0.05
# a mean of real features lies within the range of their values, and the pictures' range, from
# black to noise, holds it for nearly all channels: trained decoders have at most 10% of those
# where the pictures vary more than 1% of it below, and (a grid of features, many values per
# channel) at most 40% above (SqueezeNet conv1 of document scans; photos: 16%). A feature_mean
# lowered by 3 feature_std leaves 50% to 90% of a non-negative representation's channels below
# (HOG, LBP, SqueezeNet); one raised by 3 feature_std 64% to 87% of HOG's, LBP's, SqueezeNet
# fire9's and conv10's above. A vector's channel has one value per picture, 8 in all: pool10's
# mean lies above them in 74% of its channels, and one trained on a few test photos below them
# in 35%; vectors are not judged by this.
BELOW_SHARE, ABOVE_SHARE, SLACK = 0.3, 0.6, 0.01
STATS_WORDS = ("its feature statistics (feature_mean, feature_std) do not fit its "
               "representation")


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


def statistics_fault(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     trained: bool | str = False) -> str | None:
    """Why ``mean`` and ``std`` (``(C,)``, a decoder's feature statistics) cannot be those of
    the representation whose features of ``probe_images`` are ``features`` ``(8, C, ...)``, or
    None. Normalised by them, the median channel's RMS must lie in ``STATS_RANGE`` (the low
    bound only where the pictures give values: ``DENSE``), and the means must lie within the
    pictures' range in most channels (``_outside_fault``). Statistics of exactly 0 and 1 are those
    of a decoder built without them (features go in as they are): not judged, unless the
    decoder was ``trained`` (training always sets them; ``trained_by``), when a ``std`` of
    exactly 1 is refused (``trained``: the words of ``trained_by``)."""
    if bool((std == 1).all()):
        if trained:
            said = trained if isinstance(trained, str) else "its metadata says it was trained"
            return (f"{STATS_WORDS}: every feature_std is exactly 1"
                    + (" and every feature_mean 0" if not bool(mean.any()) else "")
                    + f", the values of a decoder built without statistics, but {said}, which "
                    "sets them from the training images")
        if not bool(mean.any()):
            return None
    view = (1, -1) + (1,) * (features.dim() - 2)
    z = (features.double() - mean.double().view(view)) / std.double().view(view)
    dims = [d for d in range(z.dim()) if d != 1]
    per_channel = z.pow(2).mean(dims).sqrt()
    # channels with no value on these pictures and a mean of 0 (after a ReLU) say nothing
    values = features.double().transpose(0, 1).reshape(features.shape[1], -1)  # (C, the rest)
    valued = values.ne(0).any(1)
    live = per_channel[valued | mean.ne(0)]
    if not live.numel():
        return None
    rms = statistics.median(live.tolist())
    low, high = STATS_RANGE
    dense = bool(valued.any()) and float(values[valued].ne(0).double().mean()) >= DENSE
    if rms > high or (rms < low and dense):
        return (f"{STATS_WORDS}: features of test pictures normalised by them have an RMS of "
                f"{rms:.3g} (trained decoders give {low:g} to {high:g})")
    return _outside_fault(values, mean.double(), grid=features.dim() > 2)


def _outside_fault(values: torch.Tensor, mean: torch.Tensor, grid: bool) -> str | None:
    """Why ``mean`` cannot be the mean of real features whose values on the test pictures are
    ``values`` ``(C, the rest)``, a ``grid`` of them: below (``BELOW_SHARE``) or above
    (``ABOVE_SHARE``) their range in too many channels; or None (always for a vector)."""
    if not grid:
        return None
    smallest, largest = values.min(1).values, values.max(1).values
    varied = largest > smallest
    slack = SLACK * (largest - smallest)
    n = int(varied.sum())
    for side, outside, share, trained in (
            ("below", mean < smallest - slack, BELOW_SHARE, "a tenth"),
            ("above", mean > largest + slack, ABOVE_SHARE, "40%")):
        k = int((outside & varied).sum())
        if n and k >= share * n:
            return (f"{STATS_WORDS}: its feature_mean lies {side} every value of the features "
                    f"of test pictures (from black to noise) in {k} of {n} channels, where a "
                    "mean of real features lies within the range of their values (trained "
                    f"decoders: {side} it in at most {trained} of them)")
    return None


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
                            decoder.feature_std.detach().cpu(),
                            trained=trained_by(decoder) or False)


# ---- does the decoder draw the features at all (issue 24, rounds 13 and 14: N1, N7, A1, A2) -----
# the pictures of the two probe_features arrays differ by at most SAME: one picture (every weight
# or the last layer zeroed: 0). Untrained networks still differ by 3.6e-6 (the compact preset of
# SIFT; their weights are near-independent of the input), the shipped decoders by 0.25 to 0.66.
SAME = 1e-7
# Pictures close together are no sign by themselves (issue 24, round 15: D1): untrained decoders
# of the compact preset give down to 2e-5 of their range apart, and so do unaltered ones that
# `featinv train` wrote after 110 to 250 steps of SIFT's compact preset at --lr 1e-4 to 3e-4
# (3.2e-6 apart, 1.1e-5 of their range), weights no longer as initialised; the steps a decoder
# trained say nothing of how far its pictures must lie apart.
# A decoder's pictures of the two arrays at most APART apart in [0, 1] hardly depend on the
# features where either its metadata records a validation error below ONE_PICTURE or one of its
# layers holds weights far smaller than initialisation draws them (evidence.shrunk_layer). Weights
# scaled down (the last layer by 1e-3 or 1e-2, the first by 1e-2, all by 0.3 or 0.5) give 0.0003
# to 0.009 (judged against their range of values, the last layer's bias pattern, they passed
# round 13's relative rule, dropped in round 15). The shipped
# decoders give 0.25 to 0.66 (validation errors 0.16 to 0.6). Not judged on that gap alone: HOG,
# SIFT, LBP and SqueezeNet decoders trained at 32 and 64 px on 6 photos give 0.0003 to 0.2 after
# 100 to 5000 steps (SIFT's compact preset at most 0.005; errors 0.71: they learnt the mean
# picture), with weights far beyond their initial range after 2000 steps.
APART = 0.02
# one picture for every image, the best a decoder that ignores the features can do, has a
# validation error (the paper's, normalised by the mean distance between the images) of 0.5 or
# more: by the triangle inequality that distance is at most twice the mean distance to any picture
ONE_PICTURE = 0.5
# training never leaves every gain of a batch-norm layer (built at 1) near 0 (the shipped
# decoders' largest gain per layer: 0.36 and more); there that layer's output is a constant
DEAD_GAIN = 1e-4
DEPENDENCE_ADVICE = "its weights were zeroed or damaged"


def dependence_fault(decoder, out: torch.Tensor | None = None) -> str | None:
    """Why ``decoder``'s pictures do not depend on the features, or None: its pictures of the
    two ``probe_features`` arrays (``out``: ``own_features_output``, computed when not given)
    are one (``SAME``); a batch-norm layer of a network featinv builds has every gain below
    ``DEAD_GAIN``; or they lie less than ``APART`` apart in [0, 1] where its metadata's
    validation error or its weights say they must lie further (``_scaled_fault``). Pictures
    that are no pictures (``output_checks.output_fault``) are judged there."""
    from ..representation.plugins import GENERIC_BUILDER
    from .output_checks import output_fault

    out = own_features_output(decoder) if out is None else out
    if output_fault(out):
        return None
    gap = float((out[0] - out[1]).abs().max())
    if gap <= SAME:
        return ("its pictures do not depend on the features (two different feature arrays give "
                f"the same picture); {DEPENDENCE_ADVICE}")
    if decoder.config.get("builder", GENERIC_BUILDER) == GENERIC_BUILDER:
        for name, module in decoder.named_modules():
            weight = getattr(module, "weight", None)
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and weight is not None \
                    and weight.numel() and float(weight.detach().abs().max()) < DEAD_GAIN:
                return (f"its batch-norm layer {name} has every gain below {DEAD_GAIN:g} (up to "
                        f"{float(weight.detach().abs().max()):.3g}), which training never leaves: "
                        f"that layer's output is the same for any features; {DEPENDENCE_ADVICE}")
    if gap < APART and not untouched(decoder):
        return _scaled_fault(decoder, gap)
    return None


def _scaled_fault(decoder, gap: float) -> str | None:
    """Why pictures ``gap`` apart (less than ``APART``) hardly depend on the features of
    ``decoder`` (not a network as featinv built it): its metadata's validation error says they
    did (``ONE_PICTURE``), or a layer's weights were scaled down (``evidence.shrunk_layer``) in a
    decoder that featinv trained (``trained_by``)."""
    told = f"its pictures hardly depend on the features (two different feature arrays give " \
        f"pictures at most {gap:.2g} apart in [0, 1])"
    metrics = (getattr(decoder, "meta", None) or {}).get("metrics")
    error = metrics.get("val_normalized_error") if isinstance(metrics, dict) else None
    if isinstance(error, (int, float)) and not isinstance(error, bool) and error < ONE_PICTURE:
        return (f"{told}, yet its metadata records a validation error of {error:.3g}, below the "
                f"{ONE_PICTURE:g} that one picture for every image cannot beat (trained decoders "
                f"below it: 0.25 apart and more); {DEPENDENCE_ADVICE}")
    # featinv's trainer uses no weight decay; one's own loop may, and may shrink a layer as far
    # (issue 24, round 16: N2), so only featinv's training record makes a shrunk layer a sign
    shrunk = shrunk_layer(decoder) if trained_by(decoder) else None
    if shrunk:
        name, ratio = shrunk
        return (f"{told}, and its layer {name} holds weights {ratio:.2g} times as large as "
                f"initialisation draws them (root mean square), which training does not leave "
                f"(trained decoders: {SHRUNK_SEEN:g} and more); {DEPENDENCE_ADVICE}")
    return None
