"""Evaluate an inversion method on a folder of images with the paper's metrics."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..datasets.folders import scan_folder
from ..errors import DataError, FeatinvError, ImageError, printable
from ..io.images import check_side, load_square, probe_image
from ..limits import budget_words, memory_budget, memory_bytes
from ..inversion.methods import Method, make_method
from .metrics import metrics_bytes, quality
from ..inversion.optimize import OptimizeConfig
from .perceptual import probe_for, realism_metrics, resolve_comparator
from ..progress import Progress


def load_square_images(data: str | Path, size: int, limit: int | None = None,
                       on_error: Callable[[str], None] | None = None
                       ) -> tuple[torch.Tensor, list[str]]:
    """The images below ``data``, centre-cropped and resized to ``size``: ``(N, 3, size, size)``
    in [0, 1] (N >= 2, not all identical), and the messages of the files that could not be read.

    Refused before reading: ``limit`` < 1, a ``size`` outside 1 to ``MAX_SIDE``, and more images
    than fit in half of this machine's memory (with their reconstructions).
    """
    check_count(limit, "--limit")
    check_side(size, "--image-size")
    found = scan_folder(data, None)
    files = found[:limit] if limit else found
    need = metrics_bytes(len(files), size)  # the images, their reconstructions, the metrics
    memory = memory_bytes()
    if need > memory_budget(memory):
        raise DataError(f"{len(files)} images at {size} px take about {need / 1e9:.1f} GB with "
                        f"their reconstructions and metrics, over {budget_words(memory)}; use "
                        "--limit or a smaller --image-size.")
    x = torch.empty(len(files), 3, size, size)  # filled in place: no second copy
    n, failed = 0, []
    for path in files:
        try:
            x[n] = load_square(path, size)
            n += 1
        except ImageError as exc:
            failed.append(str(exc))
            if on_error:
                on_error(str(exc))
    if n < 2:
        cut = f" among the first {limit} (--limit {limit})" if len(found) > len(files) else ""
        raise DataError(f"Need at least 2 readable images in '{printable(data)}', found {n}"
                        f"{cut}.")
    x = x[:n]
    if not bool((x != x[:1]).any()):  # the normalized error divides by their mean distance
        raise DataError(f"All {len(x)} images in '{printable(data)}' are identical (at {size} "
                        "px); the normalized error compares distinct images. Add others.")
    return x, failed


NATIVE = "native"  # image_size: each photo's own shorter side, not resized


def native_side(data: str | Path, limit: int | None = None) -> int:
    """The shorter side shared by the images below ``data`` (their first ``limit``), read from
    the headers; a ``DataError`` naming two images whose shorter sides differ. Unreadable files
    are left to ``load_square_images`` to report."""
    sides: dict[int, Path] = {}
    for path in scan_folder(data, None)[:limit] if limit else scan_folder(data, None):
        try:
            sides.setdefault(min(probe_image(path)), path)
        except ImageError:
            continue
        if len(sides) > 1:
            (a, path_a), (b, path_b) = sorted(sides.items())
            raise DataError(f"--image-size native needs photos of one shorter side, but "
                            f"'{printable(path_a)}' has {a} px and '{printable(path_b)}' {b} px; "
                            "pass --image-size N to resize them all.")
    if not sides:
        raise DataError(f"Need at least 2 readable images in '{printable(data)}', found 0.")
    return check_side(next(iter(sides)), "--image-size native")


def check_count(value: int | None, what: str) -> None:
    """Refuse a count (``--limit``, ``--batch-size``) below 1; None means "all"/default."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise FeatinvError(f"{what} {printable(value)}: give a whole number of at least 1.")


def run_timed(inverter: Method, x: torch.Tensor, batch_size: int, warm_up: bool = True
              ) -> tuple[torch.Tensor, float]:
    """Reconstructions of ``x`` ``(N, 3, H, W)`` on the CPU and the seconds per image that
    ``inverter`` took, batch by batch (features included). The time never includes warm-up:
    ``warm_up`` first makes one untimed call on a batch of the first batch's shape
    (``Method.warm``: for the optimisation baseline, a 2-step run), so that one-off costs
    (kernel selection, allocations, lazy set-up) do not inflate a small evaluation."""
    sync = torch.cuda.synchronize if inverter.device.type == "cuda" else (lambda: None)
    if warm_up:
        inverter.warm(x[:batch_size])
    out, seconds = [], 0.0
    with Progress(len(x), f"evaluating {inverter.label}", "images") as bar:
        for i in range(0, len(x), batch_size):
            sync()
            t0 = time.perf_counter()
            y = inverter.run(x[i:i + batch_size])
            sync()
            seconds += time.perf_counter() - t0
            out.append(y.cpu())
            bar.update(len(y))
    return torch.cat(out), seconds / len(x)


def evaluate(data: str | Path, feature: str | None = None, checkpoint: str | Path | None = None,
             image_size: int | None = None, limit: int | None = None, batch_size: int = 32,
             device: str | None = None, on_error: Callable[[str], None] | None = None,
             method: str = "decoder", optimize: OptimizeConfig | None = None,
             progress: Callable[[int, float], None] | None = None,
             precision: str = "fp32", comparator: str | None = "auto",
             comparator_params: dict[str, Any] | None = None,
             perceptual_weights: str | Path | None = None,
             decoder: str | None = None) -> dict[str, Any]:
    """Normalized error, PSNR and SSIM of reconstructions of the images below ``data``.

    ``method``: ``"decoder"`` (``checkpoint``, or ``feature``'s shipped decoder: the default
    one, or the one named ``decoder``, e.g. ``"realistic"``) or
    ``"optimize"`` (the optimisation baseline for ``feature``, configured by ``optimize``).
    Each image is centre-cropped to a square and resized to ``image_size`` (default: the
    decoder's training size; 128 for the baseline; ``"native"``: the photos' own shorter side,
    which they must share, not resized). Unreadable files are reported through
    ``on_error`` and skipped (listed under ``"failed"``). ``seconds_per_image`` times features
    plus inversion, after an untimed warm-up batch. ``precision``: the decoder's (``"bf16"``: faster on recent CPUs).

    Realism metrics (:mod:`featinv.analysis.perceptual`; None where off): ``feature_error`` under
    ``comparator`` (``"auto"``: the inverted representation when differentiable; ``"none"``; or
    a name, with ``comparator_params``), and with ``perceptual_weights`` (a SqueezeNet file or
    ``"auto"``) ``perceptual_distance``, ``perceptual_layers`` and ``class_agreement``.
    """
    check_count(limit, "--limit")
    check_count(batch_size, "--batch-size")
    if image_size is not None and image_size != NATIVE:
        check_side(image_size, "--image-size")
    inverter = make_method(method, feature, checkpoint, device, optimize, progress, precision,
                           decoder)
    dev = inverter.device
    judge = resolve_comparator(comparator, comparator_params, inverter.extractor, dev)
    probe = probe_for(perceptual_weights, dev)
    size = native_side(data, limit) if image_size == NATIVE else image_size or inverter.image_size
    x, failed = load_square_images(data, size, limit, on_error)
    y, seconds_per_image = run_timed(inverter, x, batch_size)
    realism = realism_metrics(x, y, judge, probe, batch_size, dev)
    return {"feature": inverter.feature, "method": inverter.name, **inverter.info,
            "image_size": size, **quality(x, y), **realism,
            "n_images": len(x), "seconds_per_image": seconds_per_image, "device": str(dev),
            "batch_size": batch_size, "failed": failed}
