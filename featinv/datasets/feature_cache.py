"""An on-disk cache of features, so that an expensive representation runs once per image crop.

Worth it for representations that run on the CPU and cost more than reading a file (SIFT, LBP,
a user's): training with ``--feature-cache DIR`` computes the features of each crop once and
reads them back, memory-mapped, in later epochs and runs.

Layout of ``DIR``: one folder per representation setting, named after a hash of everything the
features depend on (representation, parameters, plugin, layout, image size, storage dtype), so
changing any of them starts a fresh folder and never reads stale features. In that folder:

- ``meta.json``: what the hash stands for, for people looking at the folder;
- ``writer<r>.bin``: fixed-size records, one image's features each (process ``r`` appends);
- ``writer<r>.json``: entry name -> record number in ``writer<r>.bin``.

Entries are named by the digest of the image file's bytes and the crop (box and flip), so a
renamed file still hits and an edited one misses. Each training process appends to its own
files (the first writer number from its rank whose ``writer<r>.lock`` no live process holds, so
that two runs sharing the folder never append to one file); a process killed mid-write leaves
at most some unindexed bytes, cut off on the next open.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..io.files import atomic_write, check_regular, read_limited
from ..errors import FeatinvError

CACHE_VERSION = 2  # 2: crops made by featinv.datasets.folders.augment (uint8 bilinear, antialiased)
DTYPES = {"float16": np.float16, "float32": np.float32}  # featinv.choices.CACHE_DTYPES
MAX_INDEX_BYTES = 2**31  # ~20 M entries: far beyond any training set's crops


def content_digest(data: bytes) -> str:
    """A short name for a file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class FeatureCache:
    """Features of named image crops, on disk.

    Shape:
        - ``features(names, images, compute)``: ``images`` ``(B, 3, H, W)`` -> ``(B, *shape)``
          float32 on the images' device, where ``shape`` is the layout's per-image shape.
    """

    def __init__(self, root: str | Path, extractor, image_size: int, dtype: str = "float16",
                 writer: int = 0):
        if dtype not in DTYPES:
            raise FeatinvError(f"Unknown cache dtype '{dtype}' ({', '.join(DTYPES)}).")
        layout = extractor.layout(image_size, image_size)
        self.shape = tuple(layout.shape)
        self.dtype = np.dtype(DTYPES[dtype])
        self.describes = {"cache_version": CACHE_VERSION, "feature": extractor.name,
                          "params": extractor.params, "plugin": extractor.spec.plugin,
                          "layout": layout.to_json(), "image_size": image_size, "dtype": dtype}
        digest = hashlib.sha256(json.dumps(self.describes, sort_keys=True,
                                           default=str).encode()).hexdigest()[:16]
        self.dir = Path(root) / f"{extractor.name}-{digest}"
        self.writer = writer
        self.record_bytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self.hits = self.misses = 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.dir / "meta.json"
            if not meta.exists():
                atomic_write(meta, lambda tmp: Path(tmp).write_text(
                    json.dumps(self.describes, indent=2, default=str)))
        except OSError as exc:
            raise FeatinvError(f"Cannot use feature cache folder {self.dir}: {exc}.") from None
        self.writer = self._take_writer(writer)
        self._own: dict[str, int] = self._read_index(self.writer)
        self._cut_unindexed()
        self.refresh()

    def _take_writer(self, first: int) -> int:
        """The first writer number from ``first`` whose ``writer<r>.lock`` no live process
        holds, locked for this cache's life. Two runs sharing a cache folder both appended to
        writer0.bin, each indexing the other's records as its own (features of other crops)."""
        try:
            import fcntl
        except ImportError:  # Windows: one run per cache folder at a time
            return first
        for w in range(first, first + 1000):
            path = self.dir / f"writer{w}.lock"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o666)
            except OSError as exc:
                raise FeatinvError(f"Cannot use feature cache folder {self.dir}: {exc}.") from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise FeatinvError(f"Feature cache lock {path} is not a regular file; "
                                       f"delete {self.dir} to rebuild the cache.")
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            self._lock_fd = fd
            return w
        raise FeatinvError(f"Feature cache {self.dir} is being written by 1000 processes; "
                           "give this run another --feature-cache.")

    def close(self) -> None:
        """Release this process's writer number (also when the cache is garbage-collected)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()

    # -- files ------------------------------------------------------------------------------
    def _bin(self, writer: int) -> Path:
        return self.dir / f"writer{writer}.bin"

    def _json(self, writer: int) -> Path:
        return self.dir / f"writer{writer}.json"

    def _read_index(self, writer: int) -> dict[str, int]:
        """Entry name -> record number; anything but a regular file of such a JSON object
        (a FIFO, a link to a device, numbers past the records) is unreadable."""
        path = self._json(writer)
        if not path.exists() and not path.is_symlink():
            return {}
        try:
            index = json.loads(read_limited(path, MAX_INDEX_BYTES, "feature cache index"))
            if not isinstance(index, dict):
                raise ValueError("not a JSON object")
            index = {str(k): v for k, v in index.items()}
            records = self._records(writer)
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < records
                       for v in index.values()):
                raise ValueError(f"record numbers outside the {records} records of "
                                 f"{self._bin(writer).name}")
        except (OSError, ValueError, RecursionError, FeatinvError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise FeatinvError(f"Feature cache index {path} is unreadable ({reason}); delete "
                               f"{self.dir} to rebuild it.") from None
        return index

    def _records(self, writer: int) -> int:
        """Complete records in ``writer<r>.bin`` (0 if there is none); a FIFO or device in its
        place is refused."""
        path = self._bin(writer)
        if not path.exists() and not path.is_symlink():
            return 0
        try:
            return check_regular(path, "feature cache file").st_size // self.record_bytes
        except OSError as exc:
            raise FeatinvError(f"Feature cache {path} is unreadable ({exc.strerror or exc}); "
                               f"delete {self.dir} to rebuild it.") from None
        except FeatinvError as exc:
            raise FeatinvError(f"{exc} Delete {self.dir} to rebuild the cache.") from None

    def _cut_unindexed(self) -> None:
        """Drop records a killed process appended but never indexed."""
        path = self._bin(self.writer)
        self._records(self.writer)  # a regular file, or none
        self._count = max(self._own.values()) + 1 if self._own else 0
        keep = self._count * self.record_bytes
        if path.exists() and path.stat().st_size != keep:
            if path.stat().st_size < keep:
                raise FeatinvError(f"Feature cache {path} is shorter than its index; delete "
                                   f"{self.dir} to rebuild it.")
            os.truncate(path, keep)

    def refresh(self) -> None:
        """Re-read every writer's index (after other processes flushed theirs)."""
        self._where: dict[str, tuple[int, int]] = {}
        self._maps: dict[int, np.memmap] = {}
        writers = sorted(int(p.stem[len("writer"):]) for p in self.dir.glob("writer*.json")
                         if p.stem[len("writer"):].isdigit())
        for w in writers:
            index = self._own if w == self.writer else self._read_index(w)
            self._where.update({name: (w, slot) for name, slot in index.items()})
        self._where.update({name: (self.writer, slot) for name, slot in self._own.items()})

    def flush(self) -> None:
        """Write this process's index, making its new records visible to others."""
        atomic_write(self._json(self.writer),
                     lambda tmp: Path(tmp).write_text(json.dumps(self._own)))

    def _map(self, writer: int, slot: int) -> np.memmap:
        mm = self._maps.get(writer)
        if mm is None or slot >= mm.shape[0]:
            n = self._records(writer)
            if slot >= n:
                raise FeatinvError(f"Feature cache {self._bin(writer)} is shorter than its "
                                   f"index; delete {self.dir} to rebuild it.")
            mm = np.memmap(self._bin(writer), dtype=self.dtype, mode="r", shape=(n, *self.shape))
            self._maps[writer] = mm
        return mm

    # -- use --------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._where

    def __len__(self) -> int:
        return len(self._where)

    def features(self, names: list[str], images: torch.Tensor,
                 compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Features of each named crop: read where cached, else ``compute``d and stored."""
        if len(names) != images.shape[0]:
            raise ValueError(f"{len(names)} names for {images.shape[0]} images")
        out = torch.empty((len(names), *self.shape), dtype=torch.float32, device=images.device)
        missing = [i for i, n in enumerate(names) if n not in self._where]
        found = [i for i, n in enumerate(names) if n in self._where]
        if missing:
            feats = compute(images[missing]).detach()
            if tuple(feats.shape[1:]) != self.shape:
                raise FeatinvError(f"Features of shape {tuple(feats.shape[1:])} do not match the "
                                   f"cache's {self.shape}.")
            out[missing] = feats.float()
            self._append([names[i] for i in missing], feats)
        if found:
            rows = np.stack([self._map(w, s)[s] for w, s in (self._where[names[i]] for i in found)])
            out[found] = torch.from_numpy(rows.astype(np.float32)).to(images.device)
        self.hits += len(found)
        self.misses += len(missing)
        return out

    def _append(self, names: list[str], feats: torch.Tensor) -> None:
        arr = feats.float().cpu().numpy()
        if self.dtype == np.float16 and np.abs(arr).max(initial=0) > np.finfo(np.float16).max:
            raise FeatinvError(f"{self.describes['feature']} features exceed the float16 range; "
                               "use --cache-dtype float32.")
        first = self._count
        with open(self._bin(self.writer), "ab") as f:
            f.write(np.ascontiguousarray(arr.astype(self.dtype)).tobytes())
        self._count += len(names)
        for i, name in enumerate(names):
            self._own[name] = first + i
            self._where[name] = (self.writer, first + i)
