"""The two ways to invert a representation, behind one interface.

``decoder``: a trained (or shipped) decoder, one forward pass. ``optimize``: the optimisation
baseline of :mod:`featinv.inversion.optimize`, which needs no training but hundreds of gradient steps.
``invert`` and ``evaluate`` (CLI and Python) take either through :class:`Method`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..choices import METHODS
from ..errors import FeatinvError
from .device import as_device
from .optimize import OptimizeConfig, check_differentiable, invert_by_optimization
from .sources import ZOO, checkpoint_ref, describe_ref, has_scheme, shipped_ref, split_variant
from ..representation.registry import get_feature
from .pipeline import Inverter

DEFAULT_OPTIMIZE_SIZE = 128
# the user's mistakes in choosing a method, raised here once (the CLI prints them as they are)
NEED_SOURCE = "Pass --feature NAME (shipped decoder) or --checkpoint FILE."
FP32_ONLY = "--precision applies to decoders; the optimisation baseline runs in fp32."


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
    inverter: Inverter | None = None  # the pipeline behind a decoder method

    def warm(self, x: torch.Tensor) -> None:
        """Pay the one-off costs at ``x``'s shape, untimed (see ``warm_up``)."""
        (self.warm_up or self.run)(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @property
    def label(self) -> str:
        if self.name != "decoder":
            return f"{self.feature}.{self.name}"
        variant = self.info.get("decoder")  # a shipped decoder other than the default
        return self.feature if variant in (None, "default") else f"{self.feature}.{variant}"


def decoder_method(source: str | Path, feature: str | None = None,
                   device: str | torch.device | None = None, precision: str = "fp32",
                   decoder_name: str | None = None, weights: str | None = None) -> Method:
    """A decoder from a reference (``featinv.inversion.sources``: a path, ``zoo:NAME``,
    ``local-dir:``, ``hf-hub:``, or a bare name of a shipped decoder; ``decoder_name`` picks
    another of those shipped for it, e.g. ``"realistic"``, or is itself a reference with a
    scheme). ``make_method(s)`` pass ``-c`` values as paths and ``-f`` names as ``zoo:NAME``.

    ``precision="bf16"`` (or ``"fp16"`` on CUDA) runs the decoder under autocast with
    channels-last activations: 2-3x faster on CPUs with AVX-512 BF16, outputs within about 1/200.
    ``weights``: compute the features with these network weights instead of those the decoder
    was trained against (a ``WeightsMismatch`` warning when they differ).
    """
    if feature is not None and str(source).startswith(ZOO):  # -f hog.realistic
        feature, decoder_name = split_variant(feature, decoder_name)
        source = shipped_ref(feature)
    inverter = Inverter.load(source, feature=feature, decoder=decoder_name, device=device,
                             precision=precision, weights=weights)
    named = has_scheme(decoder_name)  # -d hf-hub:...: the decoder is that reference
    return Method("decoder", inverter.feature, inverter.image_size, inverter.reconstruct,
                  inverter.device, {"checkpoint": describe_ref(decoder_name if named else source),
                                    "decoder": None if named else decoder_name,
                                    "optimize": None, "precision": precision},
                  inverter.extractor, any_size=inverter.any_size, inverter=inverter)


def optimize_method(feature: str, params: dict[str, Any] | None = None,
                    cfg: OptimizeConfig | None = None, device: str | torch.device | None = None,
                    progress: Callable[[int, float], None] | None = None) -> Method:
    """The optimisation baseline for ``feature`` (refused for non-differentiable ones)."""
    dev = as_device(device)
    extractor = get_feature(feature, **(params or {})).to(dev)
    check_differentiable(extractor)
    cfg = cfg or OptimizeConfig()

    def run(x: torch.Tensor) -> torch.Tensor:
        return invert_by_optimization(extractor, x.to(dev), cfg, progress)[0]

    def warm_up(x: torch.Tensor) -> None:  # the same work at the same shape, for 2 steps
        invert_by_optimization(extractor, x.to(dev), replace(cfg, steps=min(cfg.steps, 2)))

    size = extractor.spec.image_size or DEFAULT_OPTIMIZE_SIZE
    return Method("optimize", feature, size, run, dev, {"checkpoint": None, "decoder": None,
                                                         "optimize": cfg.to_json(),
                                                         "precision": "fp32"}, extractor,
                  warm_up=warm_up)


def _check_optimize(checkpoint, precision: str, message: str) -> None:
    if checkpoint:
        raise FeatinvError(message)
    if precision != "fp32":
        raise FeatinvError(FP32_ONLY)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise FeatinvError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")


def make_method(method: str, feature: str | None = None, checkpoint: str | Path | None = None,
                device: str | torch.device | None = None, cfg: OptimizeConfig | None = None,
                progress: Callable[[int, float], None] | None = None,
                precision: str = "fp32", decoder_name: str | None = None,
                weights: str | None = None) -> Method:
    """``method`` ("decoder" or "optimize") for a representation name and/or checkpoint
    (``decoder_name``: which of the decoders shipped for the name, default ``"default"``;
    ``weights``: network weights of the representation other than the decoder's own).

    Refused with a ``FeatinvError``: neither a name nor a checkpoint for a decoder; a checkpoint,
    no name, or a precision other than fp32 for the optimisation baseline; an unknown method.
    """
    _check_method(method)
    if method == "decoder":
        if checkpoint is None and feature is None:
            raise FeatinvError(NEED_SOURCE)
        return decoder_method(_source(checkpoint, feature), feature, device, precision,
                              decoder_name, weights)
    _check_optimize(checkpoint or decoder_name is not None, precision,
                    "--method optimize reads no --checkpoint or --decoder; pass --feature NAME.")
    if feature is None:
        raise FeatinvError("--method optimize needs --feature NAME (it trains nothing and "
                           "reads no checkpoint).")
    return optimize_method(feature, _weights(weights), cfg, device, progress)


def make_methods(method: str = "decoder", features: Sequence[str] = (),
                 checkpoints: Sequence[str | Path] = (), device: str | torch.device | None = None,
                 cfg: OptimizeConfig | None = None,
                 progress_for: Callable[[str], Callable[[int, float], None] | None] | None = None,
                 precision: str = "fp32", decoder_name: str | None = None,
                 weights: str | None = None) -> list[Method]:
    """Several inverters to compare side by side (``featinv invert -f a,b`` or ``-c x -c y``),
    each computing its features with ``weights`` when given (see ``decoder_method``).

    ``"decoder"``: one per checkpoint (``features``, if given, names each checkpoint's
    representation, one per checkpoint) or, without checkpoints, each name's shipped decoder.
    ``"optimize"``: the baseline for each of ``features`` (no checkpoints), reporting through
    ``progress_for(name)``. Wrong combinations are a ``FeatinvError`` before anything loads.
    """
    _check_method(method)
    features, checkpoints = list(features), list(checkpoints)
    if method == "optimize":
        _check_optimize(checkpoints or not features or decoder_name is not None, precision,
                        "--method optimize takes --feature NAME and no --checkpoint or "
                        "--decoder (it inverts by gradient descent, with no decoder).")
        return [optimize_method(name, _weights(weights), cfg=cfg, device=device,
                                progress=progress_for(name) if progress_for else None)
                for name in features]
    if not features and not checkpoints:
        raise FeatinvError(NEED_SOURCE)
    if checkpoints and features and len(features) != len(checkpoints):
        raise FeatinvError(f"{len(features)} --feature names for {len(checkpoints)} "
                           "--checkpoint files: give one name per checkpoint, or none.")
    dev = as_device(device)  # chosen once for all of them
    sources = [_source(c, None) for c in checkpoints] or [_source(None, f) for f in features]
    return [decoder_method(src, features[i] if features else None, dev, precision, decoder_name,
                           weights) for i, src in enumerate(sources)]


def _weights(weights: str | None) -> dict[str, Any] | None:
    return None if weights is None else {"weights": weights}


def _source(checkpoint: str | Path | None, feature: str | None):
    """``-c`` values are paths (or references with a scheme); ``-f NAME`` alone is the decoder
    shipped for NAME, whatever the current folder holds."""
    return checkpoint_ref(checkpoint) if checkpoint is not None else shipped_ref(feature)
