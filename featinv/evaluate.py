"""Evaluate a decoder on a folder of images with the paper's metrics."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from .data import scan_folder
from .errors import DataError, FeatinvError, ImageError
from .images import center_crop_resize, open_rgb, pil_to_tensor
from .inversion import extractor_for, load_decoder, pick_device, reconstruct
from .metrics import normalized_error, psnr, ssim


def evaluate(data: str | Path, feature: str | None = None, checkpoint: str | Path | None = None,
             image_size: int | None = None, limit: int | None = None, batch_size: int = 32,
             device: str | None = None,
             on_error: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Normalized error, PSNR and SSIM of reconstructions of the images below ``data``.

    Each image is centre-cropped to a square and resized to ``image_size`` (default: the
    decoder's training size). Unreadable files are reported through ``on_error`` and skipped
    (listed under ``"failed"``). ``seconds_per_image`` times features plus decoding.
    """
    if checkpoint is None and feature is None:
        raise FeatinvError("evaluate needs --feature or --checkpoint.")
    dev = pick_device(device)
    decoder = load_decoder(checkpoint or feature, device=dev, feature=feature)
    extractor = extractor_for(decoder).to(dev)
    size = image_size or decoder.config["image_size"]
    files = scan_folder(data, None)[:limit] if limit else scan_folder(data, None)

    images, failed = [], []
    for path in files:
        try:
            images.append(pil_to_tensor(center_crop_resize(open_rgb(path), size)))
        except ImageError as exc:
            failed.append(str(exc))
            if on_error:
                on_error(str(exc))
    if len(images) < 2:
        raise DataError(f"Need at least 2 readable images in '{data}' to evaluate, found "
                        f"{len(images)}.")
    x = torch.stack(images)
    recon, seconds = [], 0.0
    reconstruct(extractor, decoder, x[:1])  # warm-up, not timed
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = reconstruct(extractor, decoder, batch)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        recon.append(out.cpu())
    y = torch.cat(recon)
    return {"feature": decoder.meta["feature"]["name"], "checkpoint": str(checkpoint or feature),
            "image_size": size, "normalized_error": normalized_error(x, y),
            "psnr": float(psnr(x, y).mean()), "ssim": float(ssim(x, y).mean()),
            "n_images": len(x), "seconds_per_image": seconds / len(x), "device": str(dev),
            "failed": failed}
