"""The paper's analyses of a representation through its decoder (sections 5.3-5.5, supp. Fig. 17).

Each works for any decoder, whatever its representation and layout:

- ``perturbation_errors``: reconstruction error under each feature perturbation (Figure 7).
- ``interpolate``: decode features on the line between two images' features (Figure 10).
- ``FeatureSampler``: random feature vectors from per-dimension histograms or one truncated
  Gaussian fitted to features of real images (Figure 11).
- ``topk_variants``: class scores kept whole, only the top k, or all but the top k (Figure 8).
- ``unit_features``: one active unit, all others zero (supplementary Figure 17).
"""
from __future__ import annotations

import math

import torch

from ..decoders.networks import Decoder
from ..errors import FeatinvError
from ..limits import MIN_CONTRAST, check_number
from ..inversion.pipeline import decode, encode
from .metrics import normalized_error
from .perturb import perturbations
from ..progress import Progress
from ..representation.spec import Extractor


@torch.no_grad()
def perturbation_errors(extractor: Extractor, decoder: Decoder, images: torch.Tensor,
                        names: list[str] | None = None, seed: int = 0,
                        batch_size: int = 32) -> dict[str, float]:
    """Normalized error of reconstructions from perturbed features, per perturbation.

    ``images``: ``(N, 3, H, W)`` in [0, 1], N >= 2. Returns ``{perturbation: error}``.
    """
    table = perturbations(seed)
    names = names or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise FeatinvError(f"Unknown perturbation(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(table)}.")
    feats = torch.cat([encode(extractor, decoder, images[i:i + batch_size]).cpu()
                       for i in range(0, len(images), batch_size)])
    size = tuple(images.shape[-2:])
    errors = {}
    with Progress(len(names), f"perturbing {extractor.name}", "perturbations",
                  leave=False) as bar:
        for name in names:
            recon = torch.cat([decode(decoder, table[name](feats[i:i + batch_size]), size).cpu()
                               for i in range(0, len(feats), batch_size)])
            errors[name] = normalized_error(images, recon)
            bar.update(1, last=name)
    return errors


@torch.no_grad()
def interpolate(extractor: Extractor, decoder: Decoder, a: torch.Tensor, b: torch.Tensor,
                steps: int = 8) -> torch.Tensor:
    """Decoded features ``(1 - t) phi(a) + t phi(b)`` for ``steps`` values of t from 0 to 1.

    ``a``, ``b``: ``(3, H, W)`` images of one size. Returns ``(steps, 3, H, W)``.
    """
    if steps < 2:
        raise FeatinvError(f"interpolation needs at least 2 steps, got {steps}.")
    if a.shape != b.shape:
        raise FeatinvError(f"the two images differ in size ({tuple(a.shape)} vs "
                           f"{tuple(b.shape)}); resize them to one size first.")
    fa, fb = encode(extractor, decoder, torch.stack([a, b]))
    t = torch.linspace(0, 1, steps, device=fa.device).view(-1, *([1] * fa.ndim))
    return decode(decoder, (1 - t) * fa + t * fb, tuple(a.shape[-2:]))


class FeatureSampler:
    """Random feature vectors that imitate the statistics of real ones, each dimension drawn
    independently (the paper's "very strong and wrong assumption").

    ``histogram``: each dimension's non-zero values are binned (``bins`` bins); a sample has
    exactly as many non-zero entries as the real vectors have on average, placed on dimensions
    drawn in proportion to how often each is non-zero, with values drawn from their histograms.
    ``gaussian``: one Gaussian for all dimensions, truncated at zero (the mass below zero becomes
    exact zeros) so that its sparsity and mean non-zero value match the real features; features
    with negative values get an untruncated Gaussian with their mean and std.
    Samples are multiplied by ``contrast`` (the paper's alpha = 2).
    """

    def __init__(self, features: torch.Tensor, bins: int = 64):
        """``features``: ``(N, ...)`` from N real images (N >= 2)."""
        if features.ndim < 2 or features.shape[0] < 2:
            raise FeatinvError("fitting the sampler needs features of at least 2 images.")
        rows = features.detach().flatten(1).double().cpu()
        self.shape = tuple(features.shape[1:])
        nonzero = rows != 0
        self.p_nonzero = nonzero.double().mean(0)  # (D,)
        self.n_nonzero = float(nonzero.sum(1).double().mean())
        self.bins = bins
        lo, hi = rows.min(0).values, rows.max(0).values
        self.edges_lo, self.width = lo, ((hi - lo) / bins).clamp_min(1e-12)
        idx = ((rows - lo) / self.width).floor().clamp(0, bins - 1).long()
        counts = torch.zeros(rows.shape[1], bins, dtype=torch.float64)
        counts.scatter_add_(1, idx.t(), nonzero.t().double())
        self.counts = counts  # (D, bins): histogram of each dimension's non-zero values
        values = rows[nonzero]
        self.signed = bool((rows < 0).any())
        if self.signed:
            self.mu, self.sigma = float(rows.mean()), float(rows.std())
        else:
            self.mu, self.sigma = _truncated_gaussian_fit(float(nonzero.double().mean()),
                                                          float(values.mean()) if len(values) else 0.0)

    def histogram(self, n: int, contrast: float = 2.0, seed: int = 0) -> torch.Tensor:
        """``(n, ...)`` samples from the per-dimension histograms."""
        contrast = check_number("--contrast", contrast, MIN_CONTRAST, 100)
        gen = torch.Generator().manual_seed(seed)
        k = int(round(self.n_nonzero))
        out = torch.zeros(n, self.counts.shape[0], dtype=torch.float64)
        weights = self.p_nonzero
        if k == 0 or float(weights.sum()) == 0:
            return out.float().view(n, *self.shape)
        k = min(k, int((weights > 0).sum()))
        for i in range(n):
            dims = torch.multinomial(weights, k, replacement=False, generator=gen)
            bin_idx = torch.multinomial(self.counts[dims], 1, generator=gen).squeeze(1)
            jitter = torch.rand(k, generator=gen, dtype=torch.float64)
            out[i, dims] = self.edges_lo[dims] + (bin_idx + jitter) * self.width[dims]
        return (contrast * out).float().view(n, *self.shape)

    def gaussian(self, n: int, contrast: float = 2.0, seed: int = 0) -> torch.Tensor:
        """``(n, ...)`` samples from the single (truncated) Gaussian."""
        contrast = check_number("--contrast", contrast, MIN_CONTRAST, 100)
        gen = torch.Generator().manual_seed(seed)
        z = self.mu + self.sigma * torch.randn(n, self.counts.shape[0], generator=gen,
                                               dtype=torch.float64)
        if not self.signed:
            z = z.clamp_min(0)
        return (contrast * z).float().view(n, *self.shape)


def _truncated_gaussian_fit(p_nonzero: float, mean_nonzero: float) -> tuple[float, float]:
    """``(mu, sigma)`` of N(mu, sigma^2) clipped at 0 with ``P(>0) = p_nonzero`` and
    ``E[x | x > 0] = mean_nonzero``."""
    p = min(max(p_nonzero, 1e-6), 1 - 1e-6)
    a = math.sqrt(2) * torch.erfinv(torch.tensor(2 * p - 1, dtype=torch.float64)).item()
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    sigma = mean_nonzero / (a + pdf / p)  # E[x | x > 0] = mu + sigma * pdf(a) / Phi(a)
    return a * sigma, sigma


TOPK_VARIANTS = ("all", "top", "all-but-top")


def topk_variants(features: torch.Tensor, k: int = 5) -> dict[str, torch.Tensor]:
    """Class scores ``(B, C)`` whole, with only the ``k`` largest kept, and with the ``k``
    largest zeroed (the paper's Figure 8)."""
    if features.ndim != 2:
        raise FeatinvError(f"top-k needs a vector of class scores per image (B, C), got "
                           f"{tuple(features.shape)}: pick a class-score layer such as "
                           "squeezenet.pool10 or alexnet.fc8.")
    if not 0 < k < features.shape[1]:
        raise FeatinvError(f"k must lie between 1 and {features.shape[1] - 1}, got {k}.")
    top = features.topk(k, dim=1).indices
    mask = torch.zeros_like(features, dtype=torch.bool).scatter_(1, top, True)
    return {"all": features, "top": features * mask, "all-but-top": features * ~mask}


def unit_features(decoder: Decoder, unit: int, value: float | None = None,
                  position: tuple[int, int] | None = None) -> torch.Tensor:
    """Features ``(1, *layout)`` with one active unit and all others zero.

    ``unit``: the channel (for vectors, the entry). Grid layouts activate it at ``position``
    (row, column; default the centre cell). ``value``: default four standard deviations above
    the unit's training mean (from the decoder's stored feature statistics).
    """
    layout = decoder.layout
    if not 0 <= unit < layout.channels:
        raise FeatinvError(f"unit {unit} is out of range: this layout has {layout.channels} "
                           f"channels ({layout}).")
    if value is None:
        value = float(decoder.feature_mean[unit] + 4 * decoder.feature_std[unit])
    value = check_number("--value", value, -1e6, 1e6)
    feats = torch.zeros(1, *layout.shape, device=decoder.feature_mean.device)
    if layout.kind == "vector":
        feats[0, unit] = value
        return feats
    row, col = position or (layout.height // 2, layout.width // 2)
    if not (0 <= row < layout.height and 0 <= col < layout.width):
        raise FeatinvError(f"position ({row}, {col}) lies outside the {layout.height} x "
                           f"{layout.width} grid.")
    feats[0, unit, row, col] = value
    return feats
