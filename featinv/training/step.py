"""One training step, as a module and a function: images (and their features) -> reconstructions
-> the losses -> Adam; the optimizer, the trainable encoder of an autoencoder, and validation."""
from __future__ import annotations

import torch
from torch import nn

from ..datasets.folders import ValImages
from ..decoders.networks import Decoder
from ..errors import FeatinvError
from ..datasets.feature_cache import FeatureCache
from .losses import PIXEL_LOSSES, Objective
from ..analysis.metrics import quality
from ..precision import autocast
from .config import TrainConfig, effective_lr


class EncoderDecoder(nn.Module):
    """The representation followed by the decoder: images (and, if cached, their features) ->
    reconstructions, as one module; ``optimizer_step`` takes the step.

    One module so that DistributedDataParallel averages the gradients of everything that trains:
    the decoder and, with ``finetune_encoder``, the representation (``encoder``).
    """

    def __init__(self, extractor, decoder: Decoder, encoder: nn.Module | None,
                 precision: str, memory_format: torch.memory_format):
        super().__init__()
        self.decoder, self.encoder = decoder, encoder
        self._extractor = [extractor]  # in a list: not a submodule, its weights are not trained
        self.precision, self.memory_format = precision, memory_format

    def forward(self, x: torch.Tensor, feats: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstructions ``(B, 3, H, W)`` and the features they were decoded from."""
        if feats is None:
            with torch.set_grad_enabled(self.encoder is not None and torch.is_grad_enabled()):
                feats = self._extractor[0](x)
        if feats.dim() == 4:
            feats = feats.contiguous(memory_format=self.memory_format)
        with autocast(x.device, self.precision):
            return self.decoder(feats, size=x.shape[-2:]), feats


TrainStep = EncoderDecoder  # deprecated alias: it never stepped


def optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                   feats: torch.Tensor | None = None,
                   scaler: torch.amp.GradScaler | None = None,
                   objective: Objective | None = None,
                   pixel_distance: str = "l2") -> dict[str, torch.Tensor]:
    """One step on images ``x`` ``(B, 3, H, W)``; ``model`` is an ``EncoderDecoder``. The loss is
    ``objective``'s (default: the paper's eq. 1, the mean squared error, or the mean absolute
    error with ``pixel_distance="l1"``); with an adversarial
    term the discriminator then takes its own step. Returns ``{"loss": weighted total, each
    term..., "disc": the discriminator's loss}`` as tensors, without syncing."""
    y, feats = model(x, feats)
    y = y.float()
    if objective is None:
        total, parts = PIXEL_LOSSES[pixel_distance](y, x), {}
    else:
        total, parts = objective.generator_loss(x, y, feats)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        total.backward()
        opt.step()
    else:
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
    terms = {"loss": total.detach(), **{k: v.detach() for k, v in parts.items()}}
    if objective is not None and objective.discriminator is not None:
        terms["disc"] = objective.discriminator_step(x, y, feats)
    return terms


def make_optimizer(params: list[nn.Parameter], cfg: TrainConfig,
                   device: torch.device) -> torch.optim.Optimizer:
    """Adam, fused into a few kernels where this torch supports it on ``device``."""
    try:
        return torch.optim.Adam(params, lr=effective_lr(cfg), betas=cfg.betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=effective_lr(cfg), betas=cfg.betas, foreach=True)


def _trainable_encoder(extractor) -> torch.nn.Module:
    """The representation's module, made trainable for ``--finetune-encoder``.

    It stays in eval mode (dropout off, batch-norm statistics fixed), as the features it is
    inverted from are computed in eval mode.
    """
    module = extractor.module
    if not extractor.spec.differentiable or not any(True for _ in module.parameters()):
        raise FeatinvError(f"--finetune-encoder needs a differentiable representation with "
                           f"parameters (a CNN layer); '{extractor.name}' has none to train.")
    for p in module.parameters():
        p.requires_grad_(True)
    return module


@torch.no_grad()
def validate(extractor, decoder: Decoder, val: ValImages, batch_size: int, device,
             cache: FeatureCache | None = None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Metrics over the validation images, and the images and reconstructions for previews."""
    decoder.eval()
    xs, ys = [], []
    for x, names in val.batches(batch_size, device):
        feats = cache.features(names, x, extractor) if cache is not None else extractor(x)
        ys.append(decoder(feats, size=x.shape[-2:]).float().clamp(0, 1).cpu())
        xs.append(x.cpu())
    decoder.train()
    x, y = torch.cat(xs), torch.cat(ys)
    return {**quality(x, y), "n_images": x.shape[0]}, x, y
