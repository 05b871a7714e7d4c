"""The two ways to invert a representation, behind one interface.

``decoder``: a trained (or shipped) decoder, one forward pass. ``optimize``: the optimisation
baseline of :mod:`featinv.inversion.optimize`, which needs no training but hundreds of gradient steps.
``invert`` and ``evaluate`` (CLI and Python) take either through :class:`Method`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import FeatinvError
from ..representation.extract import check_finite
from .load import (decode, encode, extractor_for, fit_sides, load_decoder, pad_images,
                        pick_device)
from .optimize import OptimizeConfig, check_differentiable, invert_by_optimization
from ..precision import autocast, check_precision
from ..representation.registry import get_feature

METHODS = ("decoder", "optimize")
DEFAULT_OPTIMIZE_SIZE = 128


@dataclass
class Method:
    """An inversion method bound to one representation.

    ``run``: images ``(B, 3, H, W)`` in [0, 1] -> reconstructions of the same shape.
    ``warm_up``: an untimed call on images of the shape to be timed that pays the one-off costs
    (kernel selection, allocations, lazy initialisation) so that timings leave them out;
    ``None``: ``run`` itself.
    """

    name: str  # "decoder" or "optimize"
    feature: str
    image_size: int  # the scale it works at (the decoder's training size)
    run: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)
    extractor: torch.nn.Module | None = None  # the representation it inverts, on ``device``
    any_size: bool = False  # works at the image's own size (decoders of grid layouts)
    warm_up: Callable[[torch.Tensor], Any] | None = None

    def warm(self, x: torch.Tensor) -> None:
        """Pay the one-off costs at ``x``'s shape, untimed (see ``warm_up``)."""
        (self.warm_up or self.run)(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @property
    def label(self) -> str:
        return self.feature if self.name == "decoder" else f"{self.feature}.{self.name}"


def decoder_method(source: str | Path, feature: str | None = None,
                   device: str | torch.device | None = None, precision: str = "fp32") -> Method:
    """A decoder from a checkpoint path or a representation name (its shipped decoder).

    ``precision="bf16"`` (or ``"fp16"`` on CUDA) runs the decoder under autocast with
    channels-last activations: 2-3x faster on CPUs with AVX-512 BF16, outputs within about 1/200.
    """
    dev = pick_device(device)
    check_precision(precision, dev)
    decoder = load_decoder(source, device=dev, feature=feature)
    extractor = extractor_for(decoder).to(dev)
    if precision != "fp32":
        decoder.to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        sides = fit_sides(extractor, decoder, height, width)  # padded, then cropped back
        feats = encode(extractor, decoder, pad_images(x.to(dev), sides))  # fp32 features
        check_finite(extractor, feats, f"a batch of {len(x)} image(s)")  # a plugin's NaN
        with autocast(dev, precision):
            return decode(decoder, feats, sides)[..., :height, :width].float()

    return Method("decoder", decoder.meta["feature"]["name"], decoder.config["image_size"],
                  run, dev, {"checkpoint": str(source), "optimize": None,
                             "precision": precision}, extractor,
                  any_size=decoder.layout.kind == "grid")


def optimize_method(feature: str, params: dict[str, Any] | None = None,
                    cfg: OptimizeConfig | None = None, device: str | torch.device | None = None,
                    progress: Callable[[int, float], None] | None = None) -> Method:
    """The optimisation baseline for ``feature`` (refused for non-differentiable ones)."""
    dev = pick_device(device)
    extractor = get_feature(feature, **(params or {})).to(dev)
    check_differentiable(extractor)
    cfg = cfg or OptimizeConfig()

    def run(x: torch.Tensor) -> torch.Tensor:
        return invert_by_optimization(extractor, x.to(dev), cfg, progress)[0]

    def warm_up(x: torch.Tensor) -> None:  # the same work at the same shape, for 2 steps
        invert_by_optimization(extractor, x.to(dev), replace(cfg, steps=min(cfg.steps, 2)))

    size = extractor.spec.image_size or DEFAULT_OPTIMIZE_SIZE
    return Method("optimize", feature, size, run, dev, {"checkpoint": None,
                                                         "optimize": cfg.to_json(),
                                                         "precision": "fp32"}, extractor,
                  warm_up=warm_up)


def make_method(method: str, feature: str | None = None, checkpoint: str | Path | None = None,
                device: str | torch.device | None = None, cfg: OptimizeConfig | None = None,
                progress: Callable[[int, float], None] | None = None,
                precision: str = "fp32") -> Method:
    """``method`` ("decoder" or "optimize") for a representation name and/or checkpoint."""
    if method == "decoder":
        if checkpoint is None and feature is None:
            raise FeatinvError("Pass --feature NAME (shipped decoder) or --checkpoint FILE.")
        return decoder_method(checkpoint or feature, feature, device, precision)
    if precision != "fp32":
        raise FeatinvError("--precision applies to decoders; the optimisation baseline runs "
                           "in fp32.")
    if method == "optimize":
        if feature is None:
            raise FeatinvError("--method optimize needs --feature NAME (it trains nothing and "
                               "reads no checkpoint).")
        return optimize_method(feature, None, cfg, device, progress)
    raise FeatinvError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
