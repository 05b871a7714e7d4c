"""Training and validation data: any folder of images, cropped to squares on the device.

Each training image is decoded once per use into a uint8 tensor ``(3, H, W)`` (photos whose
shorter side exceeds ``store_side`` are first shrunk to it: no crop needs more pixels). Where the
pixels come from is a *source*:

- ``MemoryImages``: every image decoded once into memory (RAM, or the GPU's when training there);
- ``FolderImages``: decoded by persistent loader processes, batch by batch.

Both hand whole images to ``augment``, which makes the batch on the training device: per image a
random square (side a random fraction ``crop_scale`` of the shorter side, at a random position),
resized to the training size, flipped half the time. The randomness is derived from ``(seed,
epoch, index)`` (``crop_plan``), so both sources give identical batches, whatever the number of
processes or loader workers, and a run resumes in the middle of an epoch.

Validation images (``ValImages``) are the centred largest square, resized, decoded once.
"""
from __future__ import annotations

import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError, ImageError, printable
from .feature_cache import content_digest
from .loader import LOADER_TIMEOUT, collate, ignore_sigint, loader_batches
from ..io.images import (check_square, find_images, fitted_image, open_fitted, probe_image,
                         read_image_bytes, resize_shorter_side, shorter_side_size)
from ..io.marks import without_outputs


def scan_folder(root: str | Path, limit: int | None = None,
                on_error: Callable[[str], None] | None = None,
                sizes: dict[Path, tuple[int, int]] | None = None,
                image_size: int | None = None, photos: bool = True) -> list[Path]:
    """The first ``limit`` image files below ``root``; a missing or empty folder is a
    ``DataError``. With ``photos`` (not for a folder of reconstructions), the PNGs featinv
    wrote are left out, with a warning (``featinv.io.marks``).

    With ``on_error``, each file's header is read (no decoding): files that are not readable
    images (or, with ``image_size``, whose squares cannot stand for them at that size, see
    ``featinv.io.images.check_square``: a 1 px strip is no photo) are reported through
    ``on_error`` and left out, and ``sizes`` (if given) receives each kept file's
    ``(width, height)``.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder '{root}' does not exist or is not a folder.")
    if not os.access(root, os.R_OK | os.X_OK):
        raise DataError(f"Data folder '{root}' cannot be read (permission denied).")
    files = find_images(root)
    if files and photos:
        files = without_outputs(files, root)
        if not files:
            raise DataError(f"Data folder '{root}' holds only pictures featinv wrote "
                            "(reconstructions), no photos.")
    if not files:
        raise DataError(f"Data folder '{root}' holds no images (.jpg, .png, ...).")
    if on_error is None:
        return files[:limit] if limit else files
    good, bad, first = [], 0, ""
    for path in files:
        if limit and len(good) == limit:
            break
        try:
            size = probe_image(path)
            if image_size is not None:
                check_square(*size, image_size, printable(path))
            good.append(path)
            if sizes is not None:
                sizes[path] = size
        except ImageError as exc:
            bad += 1
            first = first or str(exc)
            on_error(str(exc))
    if not good:  # the reason too: the caller may not show on_error's messages after this
        raise DataError(f"Data folder '{root}' holds no readable images ({bad} files failed; "
                        f"the first: {first})")
    return good


# -- decoding ---------------------------------------------------------------------------------

def store_side(image_size: int, crop_scale: tuple[float, float]) -> int:
    """The shorter side an image is kept at: the smallest crop then still maps 1:1 (or is
    enlarged) to ``image_size``, so shrinking to it loses nothing the crops could use."""
    return math.ceil(image_size / crop_scale[0])


def decode(path: Path, max_short: int | None, data: bytes | None = None) -> torch.Tensor:
    """An image file as uint8 ``(3, H, W)``, the shorter side shrunk to ``max_short`` if longer
    (a huge JPEG is decoded at a reduced scale, see ``open_fitted``)."""
    def fit(width: int, height: int) -> tuple[int, int]:
        if max_short is None or min(width, height) <= max_short:
            return width, height
        return shorter_side_size(width, height, max_short)

    img = open_fitted(path, fit, data)
    if max_short is not None and min(img.size) > max_short:
        img = resize_shorter_side(img, max_short)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


_REPORTED: set[Path] = set()  # files that failed to decode, reported once per process


JPEG_START = b"\xff\xd8\xff"


class TrainImages(Dataset):
    """Whole training images: item ``i`` is ``(i, uint8 (3, H, W), name)``.

    ``name`` is the digest of the file's bytes when ``with_names`` (for the feature cache), else
    ``""``. A file can pass the scan (its header) and still fail to decode (truncated data): it
    is reported once and the next readable file takes its place, so training goes on. With
    ``raw_jpeg``, JPEG files come as their bytes (uint8 ``(N,)``), for ``FolderImages`` to
    decode on the GPU.
    """

    def __init__(self, files: list[Path], max_short: int | None, with_names: bool = False,
                 raw_jpeg: bool = False):
        self.files, self.max_short, self.with_names = list(files), max_short, with_names
        self.raw_jpeg = raw_jpeg

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, str]:
        for step in range(len(self.files)):
            path = self.files[(index + step) % len(self.files)]
            try:
                data = read_image_bytes(path)
                name = content_digest(data) if self.with_names else ""
                if self.raw_jpeg and data.startswith(JPEG_START):
                    return index, torch.frombuffer(bytearray(data), dtype=torch.uint8), name
                return index, decode(path, self.max_short, data), name
            except ImageError as exc:
                if path not in _REPORTED:
                    _REPORTED.add(path)
                    print(f"warning: {exc} Training on another image in its place.",
                          file=sys.stderr, flush=True)
        raise DataError("None of the training images can be read any more.")


class EpochBatches(Sampler[list[int]]):
    """Index batches for one process: a seeded permutation per epoch, cut into global batches.

    Every process draws the same permutation; global batch ``b`` is
    ``perm[b * batch_size:(b + 1) * batch_size]`` and process ``rank`` takes every ``world``-th
    index of it. A step is therefore the same set of images whatever the number of processes,
    which lets a run resume mid-epoch (``set_epoch(epoch, start_batch)``) on another world size.
    When a last, short global batch does not split evenly it is padded with the epoch's first
    indices, so that no process is left without images. A last batch that would give a process
    fewer than ``min_last`` images is left out (batch norm cannot train on one image; the next
    epoch's permutation covers those images).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 min_last: int = 1):
        if batch_size % world:
            raise DataError(f"--batch-size {batch_size} does not split over {world} processes; "
                            f"use a multiple of {world}.")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.min_last = rank, world, min_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and -(-rest // self.world) >= self.min_last else 0)

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


class MemoryImages:
    """Every training image decoded once and kept on ``device`` (uint8, ragged sizes)."""

    def __init__(self, images: TrainImages, device: torch.device, workers: int = 0,
                 progress: Callable[[int], None] | None = None):
        loader = DataLoader(images, batch_size=64, num_workers=workers, collate_fn=collate,
                            worker_init_fn=ignore_sigint if workers else None,
                            timeout=LOADER_TIMEOUT if workers else 0)
        self.images: list[torch.Tensor] = []
        self.names: list[str] = []
        for _, batch, names in loader_batches(loader):
            self.images.extend(img.to(device) for img in batch)
            self.names.extend(names)
            if progress:
                progress(len(batch))

    def batches(self, sampler: EpochBatches) -> Iterator[tuple[list[int], list, list[str]]]:
        for indices in sampler:
            yield indices, [self.images[i] for i in indices], [self.names[i] for i in indices]


class FolderImages:
    """Training images read by ``workers`` persistent loader processes, batch by batch.

    With ``decode_on`` (a CUDA device) the processes only read JPEG files and the GPU decodes
    each batch (nvJPEG, EXIF orientation applied) and shrinks it to the store side; files it
    cannot decode, and other formats, are decoded on the CPU as usual. GPU-decoded pixels can
    differ from the CPU decoder's by rounding.
    """

    def __init__(self, images: TrainImages, sampler: EpochBatches, workers: int,
                 pin_memory: bool, decode_on: torch.device | None = None):
        self.images, self.decode_on = images, decode_on
        images.raw_jpeg = decode_on is not None
        self.loader = DataLoader(images, batch_sampler=sampler, num_workers=workers,
                                 collate_fn=collate, pin_memory=pin_memory,
                                 persistent_workers=workers > 0,
                                 prefetch_factor=4 if workers else None,
                                 worker_init_fn=ignore_sigint if workers else None,
                                 timeout=LOADER_TIMEOUT if workers else 0)

    def batches(self, sampler: EpochBatches) -> Iterator[tuple[list[int], list, list[str]]]:
        # the loader iterates ``sampler`` itself
        for indices, items, names in loader_batches(self.loader):
            if self.decode_on is not None:
                items = self._decode(indices, items)
            yield indices, items, names

    def _decode(self, indices: list[int], items: list[torch.Tensor]) -> list[torch.Tensor]:
        from torchvision.io import ImageReadMode, decode_jpeg

        raw = [k for k, item in enumerate(items) if item.dim() == 1]
        if not raw:
            return items
        try:
            decoded = decode_jpeg([items[k] for k in raw], mode=ImageReadMode.RGB,
                                  device=self.decode_on, apply_exif_orientation=True)
        except RuntimeError:  # one bad file fails the batch: decode each on the CPU instead
            decoded = [None] * len(raw)
        items = list(items)
        for k, image in zip(raw, decoded):
            if image is None:
                self.images.raw_jpeg = False
                items[k] = self.images[indices[k]][1]
                self.images.raw_jpeg = True
            else:
                items[k] = shrink(image, self.images.max_short)
        return items


def shrink(image: torch.Tensor, max_short: int | None) -> torch.Tensor:
    """uint8 ``(3, H, W)`` with the shorter side shrunk to ``max_short`` if longer
    (antialiased bilinear, on the image's device)."""
    height, width = image.shape[1:]
    if max_short is None or min(height, width) <= max_short:
        return image
    scale = max_short / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def decoded_bytes(sizes: Iterable[tuple[int, int]], max_short: int) -> int:
    """The memory images of ``(width, height)`` ``sizes`` take decoded as uint8, shorter sides
    shrunk to ``max_short``."""
    total = 0
    for w, h in sizes:
        scale = min(1.0, max_short / min(w, h))
        total += 3 * max(1, round(w * scale)) * max(1, round(h * scale))
    return total


# -- augmentation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Crop:
    """A square ``side`` px at ``(left, top)`` of an image, mirrored if ``flip``."""

    left: int
    top: int
    side: int
    flip: bool

    def name(self) -> str:
        return f"{self.left},{self.top},{self.side}{',flip' if self.flip else ''}"


def crop_plan(seed: int, draw: int, index: int, width: int, height: int,
              crop_scale: tuple[float, float]) -> Crop:
    """The random crop of image ``index`` in draw ``draw`` (the epoch, or the epoch modulo the
    number of cached variants) of a ``width x height`` image."""
    rng = random.Random(hash((seed, draw, index)))
    side = max(1, round(min(width, height) * rng.uniform(*crop_scale)))
    left = rng.randint(0, width - side)
    top = rng.randint(0, height - side)
    return Crop(left, top, side, rng.random() < 0.5)


def augment(images: list[torch.Tensor], crops: list[Crop], size: int,
            device: torch.device) -> torch.Tensor:
    """Crop, resize and flip uint8 images ``(3, H, W)`` into a float batch ``(B, 3, size,
    size)`` in [0, 1] on ``device``.

    On the CPU each crop is resized with antialiased bilinear interpolation on uint8 (fast and
    exact for crops already ``size`` px). On a GPU the whole batch is one ``roi_align`` call
    (bins averaging bilinear samples, which antialiases when shrinking).
    """
    if device.type == "cpu":
        out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
        for i, (img, c) in enumerate(zip(images, crops)):
            patch = img[:, c.top:c.top + c.side, c.left:c.left + c.side].cpu()
            if c.side != size:
                patch = F.interpolate(patch[None], size=(size, size), mode="bilinear",
                                      antialias=True, align_corners=False)[0]
            out[i] = patch.flip(-1) if c.flip else patch
        return out.float().div_(255.0)
    return _augment_on_gpu(images, crops, size, device)


def _augment_on_gpu(images: list[torch.Tensor], crops: list[Crop], size: int,
                    device: torch.device) -> torch.Tensor:
    from torchvision.ops import roi_align

    height = max(img.shape[1] for img in images) + 1
    width = max(img.shape[2] for img in images) + 1
    batch = torch.empty((len(images), 3, height, width), dtype=torch.uint8, device=device)
    for i, img in enumerate(images):
        h, w = img.shape[1:]
        batch[i, :, :h, :w].copy_(img, non_blocking=True)
        # replicate the last row and column: roi_align samples up to half a pixel past a crop
        batch[i, :, :h, w:] = batch[i, :, :h, w - 1:w]
        batch[i, :, h:, :] = batch[i, :, h - 1:h, :]
    boxes = torch.tensor([[i, c.left, c.top, c.left + c.side, c.top + c.side]
                          for i, c in enumerate(crops)], dtype=torch.float32)
    flips = torch.tensor([c.flip for c in crops])
    x = roi_align(batch.float(), boxes.to(device, non_blocking=True), (size, size),
                  spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    x = torch.where(flips.to(device, non_blocking=True)[:, None, None, None], x.flip(-1), x)
    return x.div_(255.0)


# -- validation -------------------------------------------------------------------------------

class ValImages:
    """Validation images decoded once: centre squares, uint8 ``(N, 3, size, size)``, and their
    names (``digest@center``, for the feature cache). Unreadable files are reported and left out.
    """

    def __init__(self, files: list[Path], size: int, on_error: Callable[[str], None],
                 with_names: bool = False):
        images, self.names = [], []
        for path in files:
            try:
                data = read_image_bytes(path)
                crop = fitted_image(path, size, crop=True, data=data)
            except ImageError as exc:
                on_error(f"{exc} Left out of validation.")
                continue
            images.append(torch.from_numpy(np.asarray(crop, dtype=np.uint8).copy())
                          .permute(2, 0, 1))
            self.names.append(f"{content_digest(data)}@center" if with_names else "")
        self.images = torch.stack(images) if images else torch.empty((0, 3, size, size),
                                                                     dtype=torch.uint8)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int, device: torch.device
                ) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """``(B, 3, size, size)`` float batches in [0, 1] on ``device``, in order, with names."""
        for i in range(0, len(self), batch_size):
            x = self.images[i:i + batch_size].to(device, non_blocking=True).float().div_(255.0)
            yield x, self.names[i:i + batch_size]
