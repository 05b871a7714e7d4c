"""Training and validation data: any folder of images, cropped to squares.

Training samples are random square crops (side a random fraction ``crop_scale`` of the shorter
side, at a random position) resized to the training size, flipped half the time. Validation
samples are the centred largest square, resized. Augmentation randomness is derived from
``(seed, epoch, index)``, so a run is reproducible, whatever the number of loader workers, and
resumable in the middle of an epoch.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .errors import DataError, ImageError
from .feature_cache import content_digest
from .images import (center_crop_resize, find_images, open_rgb, probe_image, read_bytes,
                     square_crop_box)


def scan_folder(root: str | Path, limit: int | None = None,
                on_error: Callable[[str], None] | None = None) -> list[Path]:
    """The first ``limit`` image files below ``root``; a missing or empty folder is a
    ``DataError``.

    With ``on_error``, each file's header is read (no decoding): files that are not readable
    images are reported through ``on_error`` and left out.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder '{root}' does not exist or is not a folder.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"Data folder '{root}' cannot be read (permission denied).")
    files = find_images(root)
    if not files:
        raise DataError(f"Data folder '{root}' holds no images (.jpg, .png, ...).")
    if on_error is None:
        return files[:limit] if limit else files
    good, bad = [], 0
    for path in files:
        if limit and len(good) == limit:
            break
        try:
            probe_image(path)
            good.append(path)
        except ImageError as exc:
            bad += 1
            on_error(str(exc))
    if not good:
        raise DataError(f"Data folder '{root}' holds no readable images ({bad} files failed).")
    return good


_REPORTED: set[Path] = set()  # files that failed to decode, reported once per process


class ImageFolder(Dataset):
    """Square crops of the images below a folder as uint8 tensors ``(3, size, size)``.

    ``train=True``: random crops and flips; ``train=False``: centre crops. Call ``set_epoch``
    before each epoch so the crops change from epoch to epoch. ``variants=K`` cycles through K
    fixed crops per image (epoch ``e`` uses crop ``e % K``), so that cached features are reused.
    ``with_names=True`` returns ``(image, name)``, the name identifying the file's bytes and the
    crop (see ``featinv.feature_cache``).
    """

    def __init__(self, files: list[Path], size: int, train: bool, seed: int = 0,
                 crop_scale: tuple[float, float] = (1.0, 1.0), variants: int = 0,
                 with_names: bool = False):
        self.files, self.size, self.train, self.seed = list(files), size, train, seed
        self.crop_scale, self.variants, self.with_names = crop_scale, variants, with_names
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _crop(self, img: Image.Image, index: int) -> tuple[Image.Image, str]:
        """The crop for this epoch, and a name for it."""
        if not self.train:
            return center_crop_resize(img, self.size), "center"
        draw = self.epoch % self.variants if self.variants else self.epoch
        rng = random.Random(hash((self.seed, draw, index)))
        short = min(img.size)
        side = max(1, round(short * rng.uniform(*self.crop_scale)))
        left = rng.randint(0, img.width - side)
        top = rng.randint(0, img.height - side)
        out = img.crop(square_crop_box(img.width, img.height, side, left, top))
        out = out.resize((self.size, self.size), Image.BICUBIC)
        flip = rng.random() < 0.5
        if flip:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return out, f"{left},{top},{side}{',flip' if flip else ''}"

    def __getitem__(self, index: int):
        # A file can pass the scan (its header) and still fail to decode (truncated data): it is
        # reported once and the next readable file takes its place, so training goes on.
        for step in range(len(self.files)):
            path = self.files[(index + step) % len(self.files)]
            try:
                data = read_bytes(path)
                img = open_rgb(path, data)
                break
            except ImageError as exc:
                if path not in _REPORTED:
                    _REPORTED.add(path)
                    print(f"warning: {exc} Training on another image in its place.",
                          file=sys.stderr, flush=True)
        else:
            raise DataError("None of the training images can be read any more.")
        crop, where = self._crop(img, index)
        image = torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.with_names:
            return image, f"{content_digest(data)}@{where}"
        return image


class EpochBatches(Sampler[list[int]]):
    """Index batches for one process: a seeded permutation per epoch, cut into global batches.

    Every process draws the same permutation; global batch ``b`` is
    ``perm[b * batch_size:(b + 1) * batch_size]`` and process ``rank`` takes every ``world``-th
    index of it. A step is therefore the same set of images whatever the number of processes,
    which lets a run resume mid-epoch (``set_epoch(epoch, start_batch)``) on another world size.
    When a last, short global batch does not split evenly it is padded with the epoch's first
    indices, so that no process is left without images.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise DataError(f"--batch-size {batch_size} does not split over {world} processes; "
                            f"use a multiple of {world}.")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def batches_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        for b in range(self.start, self.batches_per_epoch()):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size]
            short = -len(batch) % self.world
            padding = [order[i % self.n] for i in range(short)]
            yield (batch + padding)[self.rank::self.world]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start
