"""A run's configuration, resolved for where it runs: the machine's defaults
(``resolve_defaults``: precision, threads, channels_last; before the run folder is taken) and
the representation's (``resolve_representation``: its parameters, training side and the
preset's width; once it is built). Each returns a new ``TrainConfig`` (frozen); what they fill
in is checked there, what the user gave was checked once by ``config.check_config``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..choices import PRESETS
from .config import DEFAULT_IMAGE_SIZE, TrainConfig, check_image_size, low_res_plan


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is
    emulated and measured 8-20x slower than fp32 (AVX2 only)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_defaults(cfg: TrainConfig, device, world) -> TrainConfig:
    """Fill in ``auto`` settings for this machine (a ``torch.device`` and the ``World`` of
    ``featinv.training.distributed``): precision, channels_last, threads."""
    import torch  # only when a run starts: this module imports nothing heavy

    precision = cfg.precision
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if _cpu_has_bf16() else "fp32"
    threads = cfg.threads
    if threads is None and device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // world.local_size)
    return replace(cfg, precision=precision, threads=threads,
                   channels_last=True if cfg.channels_last is None else cfg.channels_last)


def resolve_representation(cfg: TrainConfig, params: dict[str, Any],
                           image_size: int | None) -> TrainConfig:
    """``cfg`` with what the representation decides: its ``params`` with their defaults, its
    own training side ``image_size`` unless ``cfg`` names one (else ``DEFAULT_IMAGE_SIZE``), and
    the preset's width unless ``cfg`` names one. A side filled in here is checked here."""
    resolved = replace(cfg, params=dict(params),
                       image_size=cfg.image_size or image_size or DEFAULT_IMAGE_SIZE,
                       width=float(PRESETS[cfg.preset]["width"] if cfg.width is None
                                   else cfg.width))
    if cfg.image_size is None:
        check_image_size(resolved.image_size)
        low_res_plan(resolved)
    return resolved
