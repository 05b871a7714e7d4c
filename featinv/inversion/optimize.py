"""Inversion by optimisation: the baseline the paper compares against (Mahendran & Vedaldi 2015).

For target features ``phi0`` find the image ``x`` minimising

    ||Phi(x) - phi0||^2 / ||phi0||^2  +  lambda_alpha * R_alpha(x)  +  lambda_tv * R_TV(x)

by gradient descent with momentum, as [20] does: its published code (``deep-goggle``) runs HOG
inversions for 800 iterations in four stages whose step size falls 10x each, resetting the
momentum at each change; so do the defaults here. The image is optimised in a normalised domain
``u = (x - mean) / B`` with ``B = 80/255`` (the typical pixel range [20] normalises by), so

    R_alpha = mean(|u|^alpha)                            (alpha = 6: keeps pixels in range)
    R_TV    = mean(((du/di)^2 + (du/dj)^2)^(beta/2))     (beta = 2: a smoothness prior)

and both weights mean the same thing at any image size. Representations computed on grayscale
images get a grayscale reconstruction (the colour is not in the features). Needs gradients of the
features with respect to the image: LBP and SIFT are refused.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import FeatinvError

if TYPE_CHECKING:  # PyTorch is imported by the functions that run, so that the CLI can read
    import torch   # OptimizeConfig's defaults without it

    from ..representation.spec import Extractor

# ImageNet mean colour; the prior's centre
MEAN_RGB = (0.485, 0.456, 0.406)
PIXEL_RANGE = 80.0 / 255.0
MIN_STEP = 1e-10  # the smallest --step-size (as training's smallest --lr)
MAX_WEIGHT = 1e30  # the largest step size or prior weight (as training's loss weights)
MAX_STEPS = 1_000_000  # gradient steps (as train's --epochs): hours of work already


@dataclass
class OptimizeConfig:
    """Weights and schedule of the optimisation. Schedule, alpha and beta follow [20]; the step
    size and the two weights were tuned for HOG at 128 px on 8 training photos (docs/paper.md)."""

    steps: int = 800
    stages: int = 4  # the step size falls 10x at each of ``stages`` equal parts
    lr: float = 0.06
    momentum: float = 0.9
    alpha: float = 6.0
    lambda_alpha: float = 1e-3
    beta: float = 2.0
    lambda_tv: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse settings that cannot run (``steps=0`` would return the random start)."""
        def bad(option: str, value, need: str) -> FeatinvError:
            return FeatinvError(f"{option} {value!r}: {need}.")

        for option, value in (("--steps", self.steps), ("stages", self.stages)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(option, value, "give a whole number of at least 1")
        if self.steps > MAX_STEPS:  # 10**11 ran for years without a word
            raise bad("--steps", self.steps, f"give a whole number from 1 to {MAX_STEPS:,}")
        for option, value, low, positive in (
                ("--step-size", self.lr, 0.0, True), ("--lambda-tv", self.lambda_tv, 0.0, False),
                ("--lambda-alpha", self.lambda_alpha, 0.0, False),
                ("alpha", self.alpha, 0.0, True), ("beta", self.beta, 0.0, True)):
            if not math.isfinite(value) or value < low or (positive and value == low):
                raise bad(option, value, "must be a finite number above 0" if positive else
                          "must be a finite number, 0 or more")
            if value > MAX_WEIGHT:  # --step-size 1e300 overflowed float32 (a RuntimeError)
                raise bad(option, value, f"must be at most {MAX_WEIGHT:g}")
        if self.lr < MIN_STEP:  # 1e-320 is 0 in float32: the random start would come back
            raise bad("--step-size", self.lr, f"too small to change a float32 image; use "
                      f"{MIN_STEP:g} or more")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", self.momentum, "must lie in [0, 1)")

    def to_json(self) -> dict:
        return asdict(self)


def check_differentiable(extractor: Extractor) -> None:
    spec = extractor.spec
    if not spec.differentiable:
        raise FeatinvError(
            f"'{spec.name}' is not differentiable, so it cannot be inverted by optimisation "
            "(the baseline follows the gradient of the features with respect to the image). "
            "Use --method decoder, which needs no gradients.")


def alpha_norm(u: torch.Tensor, alpha: float) -> torch.Tensor:
    """``mean |u|^alpha`` per image. ``(B, C, H, W)`` -> ``(B,)``."""
    return u.abs().pow(alpha).flatten(1).mean(1)


def total_variation(u: torch.Tensor, beta: float) -> torch.Tensor:
    """``mean ((du/di)^2 + (du/dj)^2)^(beta/2)`` per image (forward differences, the last row
    and column dropped). ``(B, C, H, W)`` -> ``(B,)``."""
    di = u[..., 1:, :-1] - u[..., :-1, :-1]
    dj = u[..., :-1, 1:] - u[..., :-1, :-1]
    sq = di.pow(2) + dj.pow(2)
    # beta < 2 has an infinite gradient at 0; a tiny offset keeps it finite
    return (sq + 1e-8).pow(beta / 2).flatten(1).mean(1)


def optimize_inversion(extractor: Extractor, target: torch.Tensor, size: tuple[int, int],
                       cfg: OptimizeConfig | None = None,
                       progress: Callable[[int, float], None] | None = None) -> torch.Tensor:
    """Images whose features match ``target`` ``(B, *layout)``; returns ``(B, 3, H, W)`` in [0, 1].

    ``size``: ``(H, W)`` of the images the features came from. ``progress(step, loss)`` is called
    every 10 steps and at the end with the mean objective over the batch.
    """
    import torch

    cfg = cfg or OptimizeConfig()
    check_differentiable(extractor)
    device = target.device
    batch = target.shape[0]
    channels = 1 if extractor.spec.input == "gray" else 3
    mean = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1)
    if channels == 1:
        mean = mean.mean(1, keepdim=True)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    u = (0.1 * torch.randn(batch, channels, *size, generator=gen)).to(device).requires_grad_()
    opt = torch.optim.SGD([u], lr=cfg.lr, momentum=cfg.momentum)
    target = target.detach()
    norm = target.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    pixels = size[0] * size[1]
    frozen = [p.requires_grad for p in extractor.parameters()]
    for p in extractor.parameters():
        p.requires_grad_(False)
    try:
        stage = 0
        for step in range(cfg.steps):
            if step * cfg.stages // cfg.steps != stage:
                stage = step * cfg.stages // cfg.steps
                opt.state.clear()  # momentum from a larger step would overshoot
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.1 ** stage
            x = (mean + PIXEL_RANGE * u).expand(-1, 3, -1, -1)
            fit = (extractor(x) - target).flatten(1).pow(2).sum(1) / norm
            objective = (fit + cfg.lambda_alpha * alpha_norm(u, cfg.alpha)
                         + cfg.lambda_tv * total_variation(u, cfg.beta))
            if not torch.isfinite(objective).all():
                raise FeatinvError(f"the optimisation diverged at step {step + 1}; lower the "
                                   f"step size (--step-size {cfg.lr:g}) or --lambda-tv "
                                   f"({cfg.lambda_tv:g}).")
            opt.zero_grad(set_to_none=True)
            # images are independent (each sees its own gradient); scaled by the pixel count so
            # that the step size means the same at every image size
            (objective.sum() * pixels).backward()
            opt.step()
            if progress and ((step + 1) % 10 == 0 or step + 1 == cfg.steps):
                progress(step + 1, float(objective.detach().mean()))
    finally:
        for p, flag in zip(extractor.parameters(), frozen):
            p.requires_grad_(flag)
    with torch.no_grad():
        return (mean + PIXEL_RANGE * u).expand(-1, 3, -1, -1).clamp(0, 1).contiguous()


def invert_by_optimization(extractor: Extractor, images: torch.Tensor,
                           cfg: OptimizeConfig | None = None,
                           progress: Callable[[int, float], None] | None = None
                           ) -> tuple[torch.Tensor, float]:
    """Features of ``images`` ``(B, 3, H, W)``, inverted by optimisation; also the seconds taken
    (features included, as for the decoder)."""
    import torch

    check_differentiable(extractor)
    t0 = time.perf_counter()
    with torch.no_grad():
        target = extractor(images)
    from ..representation.extract import check_finite

    check_finite(extractor, target, f"a batch of {len(images)} image(s)")
    out = optimize_inversion(extractor, target, tuple(images.shape[-2:]), cfg, progress)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0
