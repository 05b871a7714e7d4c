"""A training run's folder: one run at a time, never replaced unasked, nothing lost to a typo.

``RunFolder.claim`` takes the folder for this process: a second ``featinv train`` on the same
folder is refused while the first lives (a lock file naming its process and its start time; a
stale lock from a killed run, or one naming a process that is no ``featinv train``, is taken
over), a folder holding another run is refused unless ``overwrite``, and ``resume`` in a folder
with a decoder but no training state is refused instead of replacing that decoder. What a run
stopped before its first checkpoint left (metrics, previews) is no run: it is replaced, with a
message, by a plain rerun or by ``--resume``.

``claim`` deletes nothing. The files of the run being replaced stay where they are until the
new run has checked everything it can (data, representation, losses, ``--init-from``, which may
be this very folder); then ``replace_previous`` moves them into ``OUT/.featinv-replaced/``, and
the first checkpoint the new run writes deletes them. A run that fails or is interrupted before
its first checkpoint puts them back (``release``); one that was killed leaves them there, and the
next ``claim`` puts them back.

Writes go through ``write``, which turns a full disk or a permission problem into one line that
says the previous checkpoint is intact.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Callable

from ..io.checkpoint import DECODER_FILE, RUN_FILES, STATE_FILE
from ..io.files import atomic_write, read_limited
from ..io.hub import MODEL_FILE
from ..errors import FeatinvError, printable

LOCK_FILE = ".featinv-train.lock"
REPLACED = ".featinv-replaced"  # the replaced run's files, until the new run's first checkpoint
_PREVIEWS = re.compile(r"val_epoch\d+\.png")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (links resolved; neither need exist yet)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), None where unknown: with
    the pid it names one process, even after the pid is reused."""
    try:
        text = read_limited(f"/proc/{pid}/stat", 1 << 16, "process status").decode()
        return text.rsplit(")", 1)[1].split()[19]
    except (OSError, FeatinvError, IndexError, UnicodeDecodeError):
        return None


def _is_training(owner: dict) -> bool:
    """Whether the process a lock names is still the ``featinv train`` that wrote it: alive,
    not process 1 or this one, started when the lock says (a pid reused after a crash or a
    reboot is another process), or, for a lock without a start time, running featinv."""
    pid = int(owner["pid"])
    if pid <= 1 or pid == os.getpid() or not _alive(pid):
        return False
    started = _started(pid)
    if owner.get("started") is not None and started is not None:
        return str(owner["started"]) == started
    try:
        command = read_limited(f"/proc/{pid}/cmdline", 1 << 20, "process command line")
    except FileNotFoundError:
        return False
    except (OSError, FeatinvError):
        return True  # cannot tell (another OS): keep the lock
    return b"featinv" in command


class RunFolder:
    """The output folder of a run. ``active=False`` (processes other than rank 0) makes every
    method a no-op, so only one process writes."""

    def __init__(self, path: Path, active: bool = True, log: Callable[[str], None] = print):
        self.path, self.active = Path(path), active
        self.log = log
        self._locked = False
        self._replace: list[str] = []  # the previous run's files, replaced once checks pass
        self._moved: list[str] = []  # ... moved into REPLACED, until the first checkpoint

    # -- taking the folder --------------------------------------------------------------------
    def claim(self, resume: bool, overwrite: bool,
              inputs: dict[str, str | None] | None = None) -> None:
        """Take the folder (see the module's description). ``inputs``: option -> folder of
        images the run reads (``--data``, ``--val``), which must not hold the run folder: its
        previews would be read as images by the next run."""
        if not self.active:
            return
        for option, folder in (inputs or {}).items():
            if folder and _inside(self.path, Path(folder)):
                raise FeatinvError(f"--out {printable(self.path)} is inside {option} "
                                   f"{printable(folder)}: the run's preview images would be read "
                                   f"as {option[2:]} images. Choose an --out outside it.")
        if self.path.exists() and not self.path.is_dir():
            raise FeatinvError(f"--out {printable(self.path)} is a file, not a folder; choose a "
                               "folder for the run.")
        if (self.path / MODEL_FILE).exists():  # -c OUT would then have two decoders
            raise FeatinvError(f"--out {printable(self.path)} holds a packed decoder "
                               f"({MODEL_FILE}); choose another folder for the run.")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeatinvError(f"Cannot create the run folder {printable(self.path)} "
                               f"({exc.strerror or exc}); choose another --out.") from None
        self._lock()
        try:
            self._restore_replaced()
            self._check_contents(resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        lock = self.path / LOCK_FILE
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid())}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self._lock_owner(lock)
                if other and other.get("host") == me["host"] and _is_training(other):
                    raise FeatinvError(f"Another featinv train (process {other['pid']}) is using "
                                       f"{printable(self.path)}; wait for it to finish, stop it, "
                                       "or choose another --out.") from None
                if other and other.get("host") != me["host"]:
                    raise FeatinvError(f"{printable(self.path)} is locked by a run on host "
                                       f"{printable(other.get('host'))} (process {other.get('pid')});"
                                       f" if that run is over, delete {printable(lock)}.") from None
                try:  # stale: its process is gone (or it is no lock featinv wrote)
                    lock.unlink(missing_ok=True)
                except OSError:
                    break
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
        """Who holds ``lock``; None for anything that is not a lock featinv wrote (a FIFO or a
        link to a device there is refused unread, and then replaced as a stale lock)."""
        try:
            owner = json.loads(read_limited(lock, 4096, "lock file"))
        except (OSError, ValueError, FeatinvError):
            return None
        pid = owner.get("pid") if isinstance(owner, dict) else None
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
            return None
        return owner

    def _previous(self) -> list[str]:
        """The files of a run in the folder: its run files, then its previews."""
        names = [name for name in RUN_FILES if (self.path / name).exists()]
        return names + sorted(p.name for p in self.path.iterdir() if _PREVIEWS.fullmatch(p.name))

    def _check_contents(self, resume: bool, overwrite: bool) -> None:
        """Refuse to replace a run unasked; note which files the new run will replace."""
        previous = self._previous()
        checkpointed = [name for name in previous if name in (DECODER_FILE, STATE_FILE)]
        if resume and (self.path / STATE_FILE).exists():
            return  # continued, not replaced (with --overwrite too: it only starts over)
        if resume and not overwrite:
            if (self.path / DECODER_FILE).exists():
                raise FeatinvError(f"{printable(self.path)} holds {DECODER_FILE} but no "
                                   f"{STATE_FILE} to resume from; --resume would replace it. "
                                   "Train into another --out, or pass --overwrite to start over.")
        if checkpointed and not overwrite:
            raise FeatinvError(f"{printable(self.path)} already holds a run ({previous[0]}); "
                               "continue it with --resume, pass --overwrite to replace it, or "
                               "choose another --out.")
        if previous and not checkpointed:  # a run stopped before its first checkpoint
            self.log(f"{printable(self.path)} holds no checkpoint, only what a run stopped "
                     f"before its first one left ({', '.join(previous[:3])}"
                     + (", ..." if len(previous) > 3 else "") + "); starting over.")
        self._replace = previous

    def replace_previous(self) -> None:
        """Move the files of the run this one replaces into ``OUT/.featinv-replaced`` (call it
        once everything that can be checked has been): they are deleted when this run writes its
        first checkpoint, and put back if it fails before."""
        if not (self.active and self._replace):
            return
        backup = self.path / REPLACED
        try:
            shutil.rmtree(backup, ignore_errors=True)
            backup.mkdir()
            for name in self._replace:
                os.replace(self.path / name, backup / name)
                self._moved.append(name)
        except OSError as exc:
            self._put_back(own_files=False)
            raise FeatinvError(f"Cannot move the previous run in {printable(self.path)} aside "
                               f"({exc.strerror or exc}); nothing was changed. Choose another "
                               "--out.") from None
        self._replace = []
        if DECODER_FILE in self._moved:
            self.log(f"the previous run in {printable(self.path)} is moved to "
                     f"{printable(backup)} and deleted when this run writes its first "
                     "checkpoint (it is put back if this run stops before).")

    def _put_back(self, own_files: bool = True) -> None:
        """Undo ``replace_previous``: this run's own files (``own_files``: it wrote some) go,
        the previous run's come back."""
        backup = self.path / REPLACED
        for name in self._previous() if own_files else []:
            (self.path / name).unlink(missing_ok=True)
        for name in list(self._moved):
            if (backup / name).exists():
                os.replace(backup / name, self.path / name)
        self._moved = []
        shutil.rmtree(backup, ignore_errors=True)

    def _restore_replaced(self) -> None:
        """A run killed while it replaced another (``replace_previous`` done, no checkpoint
        written): put the other run back. With a checkpoint written, the backup is stale."""
        backup = self.path / REPLACED
        if not backup.is_dir():
            return
        if (self.path / DECODER_FILE).exists():
            shutil.rmtree(backup, ignore_errors=True)
            return
        self._moved = [p.name for p in backup.iterdir()]
        self._put_back()
        self.log(f"put back the run in {printable(self.path)} that a run killed before its "
                 f"first checkpoint had moved to {printable(backup)}.")

    def _moved_a_run(self) -> bool:
        """Whether what was moved aside holds a checkpoint (else: leftovers of a killed run)."""
        return any(name in self._moved for name in (DECODER_FILE, STATE_FILE))

    def _drop_replaced(self) -> None:
        """This run wrote its first checkpoint: the run it replaces is deleted."""
        if self._moved and (self.path / DECODER_FILE).exists():
            if self._moved_a_run():
                self.log(f"deleted the previous run in {printable(self.path)}: this run has "
                         "written its first checkpoint.")
            shutil.rmtree(self.path / REPLACED, ignore_errors=True)
            self._moved = []

    def release(self) -> None:
        if self._moved:
            if self._moved_a_run():
                self.log(f"this run wrote no checkpoint: the previous run in "
                         f"{printable(self.path)} is put back.")
            self._put_back()
        if self._locked:
            (self.path / LOCK_FILE).unlink(missing_ok=True)
            self._locked = False

    # -- writing ------------------------------------------------------------------------------
    def kept_message(self) -> str:
        """What is left of the run after a failure, for error messages."""
        if self.active and any((self.path / n).exists() for n in (DECODER_FILE, STATE_FILE)):
            return f"the last checkpoint in {printable(self.path)} is kept."
        if self._moved:
            return ("no checkpoint had been written yet; the previous run in "
                    f"{printable(self.path)} is put back.")
        return "no checkpoint had been written yet."

    def write(self, save: Callable[[], object], when: str) -> None:
        """Run ``save`` (atomic writes), turning write errors (a full disk, a quota, a
        permission; from the OS or from safetensors' writer) into one line."""
        if not self.active:
            return
        kept = self.kept_message()  # before: a failed save may have written one of two files
        try:
            save()
        except Exception as exc:
            reason = write_failure(exc)
            if reason is None:
                raise
            raise FeatinvError(f"Could not write the checkpoint in {printable(self.path)} {when} "
                               f"({reason}); "
                               + ("the previous checkpoint there is intact. Free some space "
                                  "and continue with --resume." if "kept" in kept else
                                  "the run it replaces is put back there. Free some space and "
                                  "run the command again." if self._moved else
                                  "Free some space and start again.")) from None
        self._drop_replaced()

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


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, in words, for an ``OSError`` or the ``SafetensorError`` safetensors
    raises for one (``Error while serializing: I/O error: ... (os error 28)``); None for any
    other exception."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    if type(exc).__name__ == "SafetensorError" and "I/O error" in text:
        found = re.search(r"(?:os error|code:) (\d+)", text)
        return os.strerror(int(found.group(1))) if found else printable(text)[:200]
    return None
