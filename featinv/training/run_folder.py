"""A training run's folder: one run at a time, never replaced unasked, nothing lost to a typo
or a kill.

``RunFolder.claim`` takes the folder for this process: a second ``featinv train`` on the same
folder is refused while the first lives (the lock file of ``run_lock``; a stale one, or one
copied from another folder, is taken over), a folder holding another run is refused unless
``overwrite``, and ``resume`` in a folder with a decoder but no training state is refused
instead of replacing that decoder. What a run stopped before its first checkpoint left
(metrics, previews) is no run: it is replaced, with a message, by a plain rerun or by
``--resume``. The claim also removes what featinv's own unfinished writes left there (temporary
files and staging folders of a killed process: the lock says no other process writes there).

A **checkpoint** is a decoder and a training state written together (``save_checkpoint``):
both are written in full in a staging folder inside OUT, then the state and, last, the decoder
are renamed into place with SIGINT/SIGTERM/SIGHUP held. Both carry one checkpoint id, so a pair
from two checkpoints (only a SIGKILL or a power cut between the two renames makes one) is
recognised: the state is then the newer, and ``--resume`` continues from it. A failed write
(a full disk) leaves the previous checkpoint, or none, never one file of a new one.

``claim`` deletes nothing. The files of the run being replaced stay where they are until the
new run has checked everything it can (data, representation, losses, ``--init-from``, which may
be this very folder); then ``replace_previous`` moves them into ``OUT/.featinv-replaced/`` (with a
list of what it moves), and they are deleted once the new run has written a complete, usable
checkpoint. A run that fails or is interrupted before then puts them back (``release``; an
interrupted run that replaces another saves nothing of its own); one that was killed leaves them
there, and the next ``claim`` puts them back unless the folder holds a complete checkpoint: a
lone decoder or state (a kill during the first checkpoint) is discarded for the old run.

Writes go through ``write``, which turns a full disk or a permission problem into one line that
says what is kept.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

from ..io.checkpoint import DECODER_FILE, REPLACED_DIR, RUN_FILES, STATE_FILE
from ..io.files import atomic_write
from ..io.hub import MODEL_FILE
from ..io.outputs import inside
from ..errors import FeatinvError, printable
from . import run_checkpoint
from .run_lock import LOCK_FILE, take_lock

__all__ = ["LOCK_FILE", "REPLACED", "RunFolder", "write_failure"]

REPLACED = REPLACED_DIR  # the replaced run's files, until the new run's first checkpoint
MOVING = ".featinv-moving.json"  # in REPLACED: the names replace_previous moves there
_PREVIEWS = re.compile(r"val_epoch\d+\.png")


def _loops(link: Path) -> bool:
    try:
        os.stat(link)
    except FileNotFoundError:
        return False
    except OSError:  # ELOOP
        return True
    return False


def _broken_link(path: Path) -> Path | None:
    """The first of ``path`` and its parents that is a symbolic link to nothing (its target
    missing, or a loop of links), else None."""
    for p in (path, *path.parents):
        if p.is_symlink() and not p.exists():
            return p
    return None


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
            if folder and inside(self.path, Path(folder)):
                raise FeatinvError(f"--out {printable(self.path)} is inside {option} "
                                   f"{printable(folder)}: the run's preview images would be read "
                                   f"as {option[2:]} images. Choose an --out outside it.")
        link = _broken_link(self.path)
        if link is not None:
            what = "in a loop of links" if _loops(link) else "whose target is missing"
            raise FeatinvError(f"--out {printable(self.path)}: "
                               + ("it is" if link == self.path else f"{printable(link)} is")
                               + f" a link {what} ({printable(os.readlink(link))}); choose "
                               "another --out or fix the link.")
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
        take_lock(self.path)
        self._locked = True
        try:
            self._remove_temporaries()
            self._restore_replaced()
            self._check_contents(resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _remove_temporaries(self) -> None:
        count = run_checkpoint.remove_temporaries(self.path)
        if count:
            self.log(f"removed {count} unfinished temporary file(s) that a killed run left in "
                     f"{printable(self.path)}.")

    def _previous(self) -> list[str]:
        """The files of a run in the folder: its run files, then its previews."""
        names = [name for name in RUN_FILES if (self.path / name).exists()]
        return names + sorted(p.name for p in self.path.iterdir() if _PREVIEWS.fullmatch(p.name))

    def _check_contents(self, resume: bool, overwrite: bool) -> None:
        """Refuse to replace a run unasked; note which files the new run will replace."""
        previous = self._previous()
        checkpointed = [name for name in previous if name in (DECODER_FILE, STATE_FILE)]
        if resume and (self.path / STATE_FILE).exists():
            run_checkpoint.check_pair_for_resume(self.path, self.log)
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

    # -- checkpoints --------------------------------------------------------------------------
    def complete(self) -> bool:
        """Whether the folder holds a complete checkpoint (``run_checkpoint.complete``)."""
        return run_checkpoint.complete(self.path)

    def save_checkpoint(self, write_state: Callable[[Path], object],
                        write_decoder: Callable[[Path], object], when: str) -> None:
        """Write a checkpoint (``run_checkpoint.commit``); the run this one replaces is
        deleted once it is in place."""
        if self.active:
            self.write(lambda: run_checkpoint.commit(self.path, write_state, write_decoder), when)
            self._drop_replaced()

    # -- the run this one replaces ------------------------------------------------------------
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
            (backup / MOVING).write_text(json.dumps(self._replace))
            for name in self._replace:
                os.replace(self.path / name, backup / name)
                self._moved.append(name)
        except OSError as exc:
            self._put_back(own_files=False)
            raise FeatinvError(f"Cannot move the previous run in {printable(self.path)} aside "
                               f"({exc.strerror or exc}); nothing was changed. Choose another "
                               "--out.") from None
        self._replace = []
        if self.replacing:
            self.log(f"the previous run in {printable(self.path)} is moved to "
                     f"{printable(backup)} and deleted when this run writes its first "
                     "checkpoint (it is put back if this run stops before).")

    @property
    def replacing(self) -> bool:
        """Whether this run moved another run's checkpoint aside and has written none of its
        own yet (else: nothing, or only leftovers of a killed run, was moved)."""
        return any(name in self._moved for name in (DECODER_FILE, STATE_FILE))

    def _put_back(self, own_files: bool | list[str] = True) -> None:
        """Undo ``replace_previous``: this run's own files (``own_files``: True for every run
        file in the folder, or their names) go, the previous run's come back."""
        backup = self.path / REPLACED
        own = self._previous() if own_files is True else own_files or []
        for name in own:
            (self.path / name).unlink(missing_ok=True)
        for name in list(self._moved):
            if (backup / name).exists():
                os.replace(backup / name, self.path / name)
        self._moved = []
        shutil.rmtree(backup, ignore_errors=True)

    def _restore_replaced(self) -> None:
        """A run killed while it replaced another (its backup is still there): put the other
        run back, discarding what the killed run wrote (a lone decoder or state of a checkpoint
        it was killed in), unless the folder holds a complete checkpoint (the backup is then
        stale) or the kill came while the run was being moved aside (nothing of the new run
        exists yet: only the move is undone)."""
        backup = self.path / REPLACED
        if not backup.is_dir() or backup.is_symlink():
            return
        moved = sorted(p.name for p in backup.iterdir() if p.name != MOVING)
        try:
            planned = json.loads((backup / MOVING).read_text())
            planned = [str(n) for n in planned] if isinstance(planned, list) else None
        except (OSError, ValueError):
            planned = None  # an older featinv's backup, or a kill before the list was written
        if planned is not None and set(planned) - set(moved):
            own: list[str] = []  # killed while moving it aside (or back): finish moving back
        elif self.complete():
            shutil.rmtree(backup, ignore_errors=True)
            self.log(f"deleted the previous run in {printable(self.path)} (it waited in "
                     f"{printable(backup)}): the run that replaced it had written a complete "
                     "checkpoint before it was stopped.")
            return
        else:  # without the list, only files the backup also has are surely the new run's
            own = [n for n in self._previous() if planned is not None or n in moved]
        discarded = [n for n in own if n in (DECODER_FILE, STATE_FILE)]
        self._moved = moved
        self._put_back(own_files=own)
        self.log(f"put back the run in {printable(self.path)} that a run killed before its "
                 f"first complete checkpoint had moved to {printable(backup)}"
                 + (f" (the killed run's unfinished {' and '.join(discarded)} discarded)"
                    if discarded else "") + ".")

    def _drop_replaced(self) -> None:
        """This run wrote its first checkpoint: the run it replaces is deleted."""
        if self._moved and self.complete():
            replaced, self._moved = self.replacing, []
            if replaced:
                self.log(f"deleted the previous run in {printable(self.path)}: this run has "
                         "written its first checkpoint.")
            (self.path / REPLACED / MOVING).unlink(missing_ok=True)  # first: see _restore_
            shutil.rmtree(self.path / REPLACED, ignore_errors=True)

    def release(self) -> None:
        if self._moved:
            if self.replacing:
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
        if self.replacing:
            return ("no checkpoint had been written yet; the previous run in "
                    f"{printable(self.path)} is put back.")
        return "no checkpoint had been written yet."

    def killed_message(self) -> str:
        """What is left if the process ends now, without cleaning up (a second Ctrl-C)."""
        if not self.active:
            return ""
        if self.replacing and self.complete():  # stopped between the checkpoint and the cleanup
            return (f"this run's checkpoint in {printable(self.path)} is complete and replaces "
                    f"the previous run, which waits in {printable(self.path / REPLACED)} until "
                    f"the next featinv train on {printable(self.path)} deletes it; move it "
                    "elsewhere now to keep it.")
        if self.replacing:
            return (f"the previous run in {printable(self.path)} waits in "
                    f"{printable(self.path / REPLACED)}; the next featinv train on "
                    f"{printable(self.path)} puts it back.")
        if any((self.path / n).exists() for n in (DECODER_FILE, STATE_FILE)):
            return (f"the last checkpoint in {printable(self.path)} is kept; --resume "
                    "continues from it.")
        return "no checkpoint had been written yet."

    def write(self, save: Callable[[], object], when: str) -> None:
        """Run ``save`` (atomic writes), turning write errors (a full disk, a quota, a
        permission; from the OS or from safetensors' writer) into one line."""
        if not self.active:
            return
        kept = self.kept_message()
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
                                  "run the command again." if self.replacing else
                                  "Free some space and start again.")) from None

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
    """Why a write failed, in words, for an ``OSError`` (``io.checkpoint.atomic_save`` raises
    one for safetensors' ``I/O error``); None for any other exception."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return None
