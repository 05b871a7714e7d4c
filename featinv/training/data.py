"""A training run's images: where they are kept (memory or loader processes, within a memory
budget), the validation images, and the checks made on them before any training."""
from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..datasets.folders import (Crop, EpochBatches, FolderImages, MemoryImages, TrainImages,
                               ValImages, augment, decoded_bytes, scan_folder, store_side)
from .distributed import World
from .. import limits
from ..errors import DataError
from ..limits import budget_words
from ..wording import opt
from ..progress import Progress
from .config import TrainConfig


@dataclass
class Data:
    """The run's images: a training source, its batch sampler and the validation images."""

    source: MemoryImages | FolderImages
    sampler: EpochBatches
    n_train: int
    sizes: list[tuple[int, int]] | None  # (width, height) per stored image, memory source only
    val: ValImages | None
    where: str  # how the training images are held, for the log

    def centres(self, n: int, size: int, device: torch.device) -> torch.Tensor:
        """The first ``n`` training images (file order), as training holds them, cut to their
        centred largest square and resized like a training crop: ``(n, 3, size, size)`` in
        [0, 1] on ``device``. A file that no longer decodes is reported and replaced."""
        if isinstance(self.source, MemoryImages):
            images = self.source.images[:n]
        else:  # decoded here on the CPU, whatever the loader processes do
            files, raw = self.source.images, self.source.images.raw_jpeg
            files.raw_jpeg = False
            try:
                images = [files[i][1] for i in range(n)]
            finally:
                files.raw_jpeg = raw
        crops = []
        for image in images:
            height, width = image.shape[1:]
            side = min(height, width)
            crops.append(Crop((width - side) // 2, (height - side) // 2, side, False))
        return augment(images, crops, size, device)


def memory_budget(cfg: TrainConfig, device: torch.device, world: World) -> int:
    """Bytes of decoded training images ``auto`` keeps in memory (per process)."""
    if cfg.memory_budget is not None:
        return int(cfg.memory_budget * 1e9)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * 0.4)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(ram * 0.25) // world.local_size


def load_data(cfg: TrainConfig, device: torch.device, world: World, log,
              stop: Callable[[], None] | None = None) -> Data:
    """The training (and validation) images, in memory or read by loader processes. ``stop``
    is called after each batch decoded into memory (it raises to end the decoding: Ctrl-C and
    SIGTERM waited for minutes of decoding before)."""
    skipped: list[str] = []
    sizes: dict = {}
    train_files = scan_folder(cfg.data, cfg.limit, on_error=skipped.append, sizes=sizes,
                              image_size=cfg.image_size)
    val, val_files = None, []
    if cfg.val and world.is_main:
        val_files = scan_folder(cfg.val, cfg.val_limit, on_error=skipped.append,
                                image_size=cfg.image_size)
    room = memory_room(cfg, len(val_files), world)  # before any image is decoded
    if val_files:
        val = ValImages(val_files, cfg.image_size, on_error=skipped.append,
                        with_names=bool(cfg.feature_cache))
        check_validation(val, cfg.val)
    for message in skipped:
        log(f"skipping {message}")

    max_short = store_side(cfg.image_size, cfg.crop_scale)
    images = TrainImages(train_files, max_short, with_names=bool(cfg.feature_cache))
    batch = cfg.batch_size
    if batch > len(images) >= world.size:  # a step cannot hold more images than there are
        batch = len(images) // world.size * world.size
        log(f"--batch-size {cfg.batch_size} is more than the {len(images)} training images: "
            f"batches of {batch}")
    sampler = EpochBatches(len(images), batch, cfg.seed, rank=world.rank, world=world.size,
                           min_last=2)
    need = decoded_bytes(sizes.values(), max_short)
    if cfg.data_store == "memory" and need > room:
        raise DataError(f"{opt('data_store', 'memory')}: the {len(images)} training images take "
                        f"about {_bytes(need)} decoded, more than {budget_words()} leaves "
                        f"beside a step's batch and the validation images; use "
                        f"{opt('data_store', 'files')} (decoded from disk as needed), "
                        f"{opt('limit')} or a smaller {opt('image_size')}.")
    budget = min(memory_budget(cfg, device, world), room)
    in_memory = cfg.data_store == "memory" or (cfg.data_store == "auto" and need <= budget)
    if not in_memory:
        source = FolderImages(images, sampler, cfg.workers, pin_memory=device.type == "cuda",
                              decode_on=device if device.type == "cuda" else None)
        where = f"read by {cfg.workers} loader processes" if cfg.workers else "read as needed"
        if device.type == "cuda":
            where += ", JPEGs decoded on the GPU"
        if cfg.data_store == "auto":
            where += f" ({_bytes(need)} decoded, over the {_bytes(budget)} budget)"
        return Data(source, sampler, len(images), None, val, where)
    t0 = time.perf_counter()
    with Progress(len(images), "decoding training images", "img", report_to(world)) as bar:
        def progress(count: int) -> None:
            bar.update(count)
            if stop is not None:
                stop()

        source = MemoryImages(images, device, cfg.workers, progress=progress)
    sizes = [(img.shape[2], img.shape[1]) for img in source.images]
    where = (f"in {'GPU memory' if device.type == 'cuda' else 'memory (RAM)'} "
             f"({need / 2**20:.0f} MiB, decoded in {time.perf_counter() - t0:.0f} s)")
    return Data(source, sampler, len(images), sizes, val, where)


def _bytes(count: int) -> str:
    """A number of bytes for messages: MB, or kB below 0.1 MB (never '0 MB')."""
    return f"{count / 1e6:,.1f} MB" if count >= 1e5 else f"{count / 1e3:,.1f} kB"


# float32 copies of a step's batch that training holds at least: the images, the
# reconstructions and their gradients, the gradients of the loss
BATCH_COPIES = 4


def memory_room(cfg: TrainConfig, n_val: int, world: World) -> int:
    """Bytes of featinv's memory budget (``featinv.limits``, shared by the processes on this
    machine) left for decoded training images once a step's batch and the ``n_val``
    validation images are held; a ``DataError`` when those alone pass it (checked before any
    image is decoded: ``$FEATINV_MEMORY_BUDGET`` bounds training too)."""
    budget = limits.memory_budget() // world.local_size
    pixels = 3 * cfg.image_size ** 2
    batch = max(1, cfg.batch_size // world.size) * pixels * 4 * BATCH_COPIES
    held = batch + n_val * pixels  # validation images: uint8 squares
    if held > budget:
        val = f" and {n_val} validation images" if n_val else ""
        smaller = (opt("batch_size"), opt("image_size"), *([opt("val_limit")] if n_val else []))
        raise DataError(f"Training at {cfg.image_size} px holds at least {_bytes(held)} "
                        f"for a batch of {cfg.batch_size // world.size or 1} images{val}, more "
                        f"than {budget_words()}; use a smaller {', '.join(smaller[:-1])} or "
                        f"{smaller[-1]}.")
    return budget - held


def check_validation(val: ValImages, folder: str) -> None:
    """The normalized error divides by the mean distance between images: it needs two
    different ones. Checked before training, so no trained epoch is ever lost to it."""
    distinct = torch.unique(val.images.flatten(1), dim=0).shape[0] if len(val) else 0
    if distinct < 2:
        raise DataError(f"Validation folder '{folder}' holds {distinct} distinct readable "
                        "image(s); the normalized error needs at least 2 different ones. Add "
                        "images or raise --val-limit.")


def report_to(world: World):
    """Where progress goes: stderr for the main process, nowhere for the others."""
    return sys.stderr if world.is_main else io.StringIO()


def check_batch_norm(decoder: torch.nn.Module, batch_size: int, world: World, n_train: int) -> None:
    """Refuse steps of one image per process for a decoder with batch norm, which cannot
    normalise a single image (``DataError``)."""
    per_process = batch_size // world.size
    if per_process < 2 and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                               for m in decoder.modules()):
        raise DataError(f"This decoder has batch norm, which needs at least 2 images per step"
                        f"{' and process' if world.distributed else ''}; this run has "
                        f"{per_process} ({n_train} training image(s), --batch-size "
                        f"{batch_size}). Use --batch-size 2 or more and at least 2 training "
                        "images.")
