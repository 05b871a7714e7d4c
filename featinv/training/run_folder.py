"""A training run's folder: one run at a time, never replaced unasked, written safely.

``RunFolder.claim`` takes the folder for this process: a second ``featinv train`` on the same
folder is refused while the first lives (a lock file naming its process; a stale lock from a
killed run is taken over), a folder holding another run is refused unless ``overwrite`` (then the
old run's files, per-epoch pictures included, are removed first), and ``resume`` in a folder
with a decoder but no training state is refused instead of replacing that decoder. Writes go
through ``write``, which turns a full disk or a permission problem into one line that says the
previous checkpoint is intact.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Callable

from ..io.files import atomic_write
from ..errors import FeatinvError, printable

LOCK_FILE = ".featinv-train.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunFolder:
    """The output folder of a run. ``active=False`` (processes other than rank 0) makes every
    method a no-op, so only one process writes."""

    def __init__(self, path: Path, run_files: tuple[str, ...], active: bool = True):
        self.path, self.run_files, self.active = Path(path), run_files, active
        self._locked = False

    # -- taking the folder --------------------------------------------------------------------
    def claim(self, resume: bool, overwrite: bool, state_file: str) -> None:
        if not self.active:
            return
        if self.path.exists() and not self.path.is_dir():
            raise FeatinvError(f"--out {printable(self.path)} is a file, not a folder; choose a "
                               "folder for the run.")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeatinvError(f"Cannot create the run folder {printable(self.path)} "
                               f"({exc.strerror or exc}); choose another --out.") from None
        self._lock()
        try:
            self._check_contents(resume, overwrite, state_file)
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._lock_owner(lock)
                if other and other.get("host") == me["host"] and _alive(int(other["pid"])) \
                        and int(other["pid"]) != me["pid"]:
                    raise FeatinvError(f"Another featinv train (process {other['pid']}) is using "
                                       f"{printable(self.path)}; wait for it to finish, stop it, "
                                       "or choose another --out.") from None
                if other and other.get("host") != me["host"]:
                    raise FeatinvError(f"{printable(self.path)} is locked by a run on host "
                                       f"{printable(other.get('host'))} (process {other.get('pid')});"
                                       f" if that run is over, delete {printable(lock)}.") from None
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except OSError as exc:
                raise FeatinvError(f"Cannot write in the run folder {printable(self.path)} "
                                   f"({exc.strerror or exc}); choose another --out.") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._locked = True
            return
        raise FeatinvError(f"Cannot lock {printable(self.path)}; delete {printable(lock)} if no "
                           "run is using it.")

    @staticmethod
    def _lock_owner(lock: Path) -> dict | None:
        try:
            owner = json.loads(lock.read_text())
            return owner if isinstance(owner, dict) and str(owner.get("pid", "")).isdigit() else None
        except (OSError, ValueError):
            return None

    def _check_contents(self, resume: bool, overwrite: bool, state_file: str) -> None:
        previous = [name for name in self.run_files if (self.path / name).exists()]
        previous += sorted(p.name for p in self.path.glob("val_epoch*.png"))
        if resume and not overwrite:
            if (self.path / state_file).exists():
                return
            if (self.path / self.run_files[0]).exists():
                raise FeatinvError(f"{printable(self.path)} holds {self.run_files[0]} but no "
                                   f"{state_file} to resume from; --resume would replace it. "
                                   "Train into another --out, or pass --overwrite to start over.")
            # what is left of a run stopped before its first checkpoint: start it afresh
            previous = [name for name in previous if name != self.run_files[0]]
        if previous and not overwrite:
            raise FeatinvError(f"{printable(self.path)} already holds a run ({previous[0]}); "
                               "continue it with --resume, pass --overwrite to replace it, or "
                               "choose another --out.")
        for name in previous:
            (self.path / name).unlink(missing_ok=True)

    def release(self) -> None:
        if self._locked:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    # -- writing ------------------------------------------------------------------------------
    def kept_message(self) -> str:
        """What is left of the run after a failure, for error messages."""
        if self.active and any((self.path / n).exists() for n in self.run_files[:2]):
            return f"the last checkpoint in {printable(self.path)} is kept."
        return "no checkpoint had been written yet."

    def write(self, save: Callable[[], object], when: str) -> None:
        """Run ``save`` (atomic writes), turning OS errors into one line."""
        if not self.active:
            return
        try:
            save()
        except OSError as exc:
            raise FeatinvError(f"Could not write the checkpoint in {printable(self.path)} {when} "
                               f"({exc.strerror or exc}); "
                               + ("the previous checkpoint there is intact. "
                                  if "kept" in self.kept_message() else "")
                               + "Free some space and continue with --resume.") from None

    def write_text(self, name: str, text: str) -> None:
        if self.active:
            self.write(lambda: atomic_write(self.path / name,
                                            lambda tmp: Path(tmp).write_text(text)), f"({name})")

    def append_text(self, name: str, text: str) -> None:
        if self.active:
            def append() -> None:
                with open(self.path / name, "a") as f:
                    f.write(text)
            self.write(append, f"({name})")

    def save_png(self, image, name: str) -> None:
        if self.active:
            from ..io.images import save_png

            save_png(image, self.path / name)
