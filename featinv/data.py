"""Training and validation data: any folder of images, cropped to squares.

Training samples are random square crops (side a random fraction ``crop_scale`` of the shorter
side, at a random position) resized to the training size, flipped half the time. Validation
samples are the centred largest square, resized. Augmentation randomness is derived from
``(seed, epoch, index)``, so a run is reproducible, whatever the number of loader workers, and
resumable in the middle of an epoch.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .errors import DataError, ImageError
from .images import center_crop_resize, find_images, open_rgb, square_crop_box


def scan_folder(root: str | Path, limit: int | None = None) -> list[Path]:
    """Image files below ``root``; a missing or empty folder is a ``DataError``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Data folder '{root}' does not exist or is not a folder.")
    files = find_images(root)
    if not files:
        raise DataError(f"Data folder '{root}' holds no images (.jpg, .png, ...).")
    return files[:limit] if limit else files


class ImageFolder(Dataset):
    """Square crops of the images below a folder as uint8 tensors ``(3, size, size)``.

    ``train=True``: random crops and flips; ``train=False``: centre crops. Call ``set_epoch``
    before each epoch so the crops change from epoch to epoch.
    """

    def __init__(self, files: list[Path], size: int, train: bool, seed: int = 0,
                 crop_scale: tuple[float, float] = (1.0, 1.0)):
        self.files, self.size, self.train, self.seed = list(files), size, train, seed
        self.crop_scale = crop_scale
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def _crop(self, img: Image.Image, index: int) -> Image.Image:
        if not self.train:
            return center_crop_resize(img, self.size)
        rng = random.Random(hash((self.seed, self.epoch, index)))
        short = min(img.size)
        side = max(1, round(short * rng.uniform(*self.crop_scale)))
        left = rng.randint(0, img.width - side)
        top = rng.randint(0, img.height - side)
        out = img.crop(square_crop_box(img.width, img.height, side, left, top))
        out = out.resize((self.size, self.size), Image.BICUBIC)
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return out

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            img = open_rgb(self.files[index])
        except ImageError as exc:
            # a file that broke after the scan: fail loudly rather than train on something else
            raise DataError(str(exc)) from None
        arr = np.asarray(self._crop(img, index), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally starting part-way (to resume mid-epoch)."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.start, self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start
