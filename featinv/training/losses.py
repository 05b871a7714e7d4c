"""Training objectives: the paper's pixel loss, and the feature-space and adversarial losses of
its Appendix A (developed as DeePSiM, Dosovitskiy & Brox, NeurIPS 2016).

- ``pixel``: mean squared error between image and reconstruction (the paper's eq. 1).
- ``feature``: ``||Φc(y) - Φc(x)||² / ||Φc(x)||²`` over the batch, for a differentiable
  *comparator* representation Φc (by default the inverted one): reconstructions must have the
  features of the image, not just its pixels.
- ``adversarial``: a small convolutional discriminator learns to tell photos from
  reconstructions (non-saturating GAN loss); the decoder is rewarded for fooling it, which
  pushes reconstructions towards sharp, natural images. With ``conditional`` the discriminator
  also sees the inverted features, so it judges whether an image fits its features.

Weights are given as ``"pixel,feature=0.05,adversarial=0.005"``; a name alone takes its default
(``featinv.training.config.parse_losses``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FeatinvError
from ..precision import autocast

# the pixel term's distance (``--pixel-distance``; choices.PIXEL_DISTANCES)
PIXEL_LOSSES = {"l2": F.mse_loss, "l1": F.l1_loss}


class Discriminator(nn.Module):
    """Photo or reconstruction? ``(B, 3 [+ C], H, W)`` -> logits ``(B,)``.

    Four stride-2 convolutions (leaky ReLU, no normalisation, as in DeePSiM), then the mean over
    space and a linear layer, so it works at any image size.
    """

    def __init__(self, in_channels: int = 3, width: float = 0.25):
        super().__init__()
        chans = [max(8, round(c * width)) for c in (64, 128, 256, 256)]
        layers, cin = [], in_channels
        for cout in chans:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images).mean(dim=(2, 3))).squeeze(1)


class Objective:
    """The weighted sum of the chosen losses, and the discriminator's own training step.

    ``comparator``: the Φc of the feature loss (frozen, eval mode). ``discriminator`` and
    ``disc_opt``: for the adversarial loss. ``conditional``: the discriminator sees the
    features too (grid layouts, resized to the image).
    """

    def __init__(self, weights: dict[str, float], comparator=None,
                 discriminator: nn.Module | None = None,
                 disc_opt: torch.optim.Optimizer | None = None, conditional: bool = False,
                 precision: str = "fp32", pixel_distance: str = "l2"):
        self.weights, self.comparator = weights, comparator
        self.pixel_distance = pixel_distance
        self.discriminator, self.disc_opt = discriminator, disc_opt
        self.conditional, self.precision = conditional, precision
        if "feature" in weights and comparator is None:
            raise FeatinvError("The feature loss needs a differentiable comparator "
                               "representation (--comparator NAME).")
        if "adversarial" in weights and (discriminator is None or disc_opt is None):
            raise FeatinvError("The adversarial loss needs a discriminator.")

    @property
    def names(self) -> list[str]:
        """What ``generator_loss`` and ``discriminator_step`` report, in order."""
        return [*self.weights, *(["disc"] if "adversarial" in self.weights else [])]

    def _judge(self, images: torch.Tensor, feats: torch.Tensor | None,
               training: bool = True) -> torch.Tensor:
        """The discriminator's logits; ``training=False`` bypasses a DistributedDataParallel
        wrapper (the decoder's step must not count as the discriminator's)."""
        judge = self.discriminator if training else getattr(self.discriminator, "module",
                                                             self.discriminator)
        if self.conditional:
            grid = F.interpolate(feats.float(), size=images.shape[-2:], mode="bilinear",
                                 align_corners=False)
            images = torch.cat([images, grid], dim=1)
        with autocast(images.device, self.precision):
            return judge(images).float()

    def generator_loss(self, x: torch.Tensor, y: torch.Tensor, feats: torch.Tensor | None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images ``x`` and reconstructions ``y`` ``(B, 3, H, W)`` -> (weighted total, each
        term unweighted). ``feats``: the inverted features (for a conditional discriminator)."""
        parts: dict[str, torch.Tensor] = {}
        if "pixel" in self.weights:
            parts["pixel"] = PIXEL_LOSSES[self.pixel_distance](y, x)
        if "feature" in self.weights:
            with torch.no_grad():
                target = self.comparator(x)
            got = self.comparator(y.clamp(0, 1))
            parts["feature"] = (got - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
        if "adversarial" in self.weights:
            for p in self.discriminator.parameters():
                p.requires_grad_(False)
            parts["adversarial"] = F.softplus(-self._judge(y, feats, training=False)).mean()
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, parts

    def discriminator_step(self, x: torch.Tensor, y: torch.Tensor,
                           feats: torch.Tensor | None) -> torch.Tensor:
        """One Adam step of the discriminator on photos ``x`` against reconstructions ``y``
        (detached); returns its loss (no sync)."""
        y = y.detach().clamp(0, 1)
        feats = feats.detach() if feats is not None else None
        loss = F.softplus(-self._judge(x, feats)).mean() + F.softplus(self._judge(y, feats)).mean()
        self.disc_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_opt.step()
        return loss.detach()


def build_objective(cfg, comparator=None, discriminator: nn.Module | None = None,
                    disc_opt: torch.optim.Optimizer | None = None) -> Objective | None:
    """The objective of a run's ``--loss`` (``cfg`` a ``TrainConfig``; None for the paper's
    plain pixel loss), over the parts a run builds first: the ``comparator`` of the feature loss
    (``build_comparator``) and the discriminator with its Adam (``build_discriminator``)."""
    from .config import parse_losses

    weights = parse_losses(cfg.loss)
    if weights == {"pixel": 1.0}:
        return None
    return Objective(weights, comparator, discriminator, disc_opt, cfg.disc_conditional,
                     cfg.precision, cfg.pixel_distance)


def build_discriminator(cfg, layout, device: torch.device, distributed: bool = False
                        ) -> tuple[nn.Module | None, torch.optim.Optimizer | None]:
    """The discriminator of the adversarial loss and its Adam, ``(None, None)`` without that
    loss; wrapped for DistributedDataParallel when ``distributed``. Its weights are drawn from
    the global random generator."""
    from .config import parse_losses

    if "adversarial" not in parse_losses(cfg.loss):
        return None, None
    if cfg.disc_conditional and layout.kind != "grid":
        raise FeatinvError("--disc-conditional needs a representation with a grid "
                           f"layout; '{cfg.feature}' gives a vector.")
    extra = layout.shape[0] if cfg.disc_conditional else 0
    discriminator = Discriminator(3 + extra, cfg.disc_width).to(device)
    disc_opt = torch.optim.Adam(discriminator.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.999))
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        discriminator = DistributedDataParallel(
            discriminator, device_ids=[device.index] if device.type == "cuda" else None)
    return discriminator, disc_opt


def build_comparator(cfg, device: torch.device):
    """The frozen representation the feature loss compares in: ``--comparator`` (with
    ``--comparator-weights``), else the inverted representation with its parameters; None
    without a feature loss."""
    from ..representation.registry import get_feature
    from .config import parse_losses

    if "feature" not in parse_losses(cfg.loss):
        return None
    if cfg.comparator is None or cfg.comparator == cfg.feature:
        comparator = get_feature(cfg.feature, **cfg.params)
    else:
        params = {"weights": cfg.comparator_weights} if cfg.comparator_weights else {}
        comparator = get_feature(cfg.comparator, **params)
    if not comparator.spec.differentiable:
        raise FeatinvError(f"The feature loss needs a differentiable comparator, and "
                           f"'{comparator.name}' is not; name one with --comparator, e.g. "
                           "--comparator squeezenet.fire5 --comparator-weights "
                           "squeezenet1_0_deepcompression_caffe.npz.")
    comparator.check_finite_input = False
    for param in comparator.parameters():
        param.requires_grad_(False)
    return comparator.to(device).eval()
