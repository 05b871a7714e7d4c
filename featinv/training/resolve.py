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
from ..errors import FeatinvError
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
    ``featinv.training.distributed``): precision, channels_last, threads; ``--workers`` is cut
    to the usable cores and ``--threads`` beyond them is refused."""
    import torch  # only when a run starts: this module imports nothing heavy

    precision = cfg.precision
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if _cpu_has_bf16() else "fp32"
    cores = usable_cores()
    threads = cfg.threads
    if threads is not None and threads > cores:  # torch.set_num_threads(10**6) crashes
        raise FeatinvError(f"--threads {threads} is more than the {cores} CPU core(s) this "
                           f"process may use; use at most {cores} (or leave --threads out).")
    if threads is None and device.type == "cpu":
        threads = max(1, cores // world.local_size)
    return replace(cfg, precision=precision, threads=threads, workers=min(cfg.workers, cores),
                   channels_last=True if cfg.channels_last is None else cfg.channels_last)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: ``taskset`` and cgroups' cpusets
    count, which ``os.cpu_count`` ignores); loader processes beyond them only compete, and
    PyTorch warns about them."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


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
