"""Safe writes and bounded reads.

Every file featinv writes goes to a temporary file in the same folder, then is renamed into
place, so an interrupted or failing write leaves any previous file intact. Small files featinv
reads back (caches, lock files, metadata) go through ``read_limited``, which refuses anything
that is not a regular file (a FIFO would block forever, ``/dev/zero`` never ends) and anything
longer than the caller expects.

An output checked to be new (``claim_new``, which ``io.outputs.check_targets`` calls without
``--overwrite``) is put in place only if it is still new when written: a file another program
wrote there meanwhile (two commands given the same ``-o``) is kept, and this result goes beside
it under a numbered name.

Outputs that belong together (a JSON and its report or chart, a packed model and its card) are
written in a hidden folder inside their destination and moved in together (``written_together``):
an interruption leaves the previous set whole instead of a new file beside old ones.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from ..errors import FeatinvError, printable


class FileRefused(FeatinvError):
    """A file featinv will not read: not a regular file, or larger than expected."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for messages)."""
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def check_regular(path: str | Path, what: str = "file") -> os.stat_result:
    """``os.stat(path)`` (links followed) if ``path`` is a regular file, else ``FileRefused``
    saying what it is instead; a missing file is ``FileNotFoundError``."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{printable(path)}: {file_kind(st.st_mode)}, not a regular {what}; "
                          "featinv reads only regular files.")
    return st


def read_limited(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path`` (links followed), which must not exceed
    ``limit`` bytes; otherwise ``FileRefused``. Never blocks on a FIFO or reads a device: the
    file is opened without blocking and checked with ``fstat`` on the open descriptor (no race
    between the check and the read). ``OSError`` as ``open`` raises it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"{printable(path)}: {file_kind(st.st_mode)}, not a regular "
                              f"{what}; featinv reads only regular files.")
        if st.st_size > limit:
            raise FileRefused(f"{printable(path)}: {st.st_size} bytes, more than the "
                              f"{limit} bytes a {what} can hold; it is not one featinv wrote.")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise FileRefused(f"{printable(path)}: more than the {limit} bytes a {what} can "
                              "hold; it is not one featinv wrote.")
        return b"".join(chunks)
    finally:
        os.close(fd)


_CLAIMED: set[str] = set()  # outputs checked to be new, not yet written


def claim_new(paths) -> None:
    """Record that ``paths`` were checked to be new: ``atomic_write`` will not replace what
    appears there before it writes them (the first write of each only)."""
    _CLAIMED.update(os.path.abspath(p) for p in paths)


def _place_new(tmp: str, path: Path) -> None:
    """Rename ``tmp`` to ``path`` if nothing is there yet; otherwise keep it as ``path`` with
    ``-2``, ``-3``, ... before the suffix and raise a ``FeatinvError`` saying where."""
    for n in range(1, 1000):
        target = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.link(tmp, target)  # fails where a file exists, unlike os.replace
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: check, then rename
            if os.path.lexists(target):
                continue
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
        if n == 1:
            return
        raise FeatinvError(f"{printable(path)} was created by another program while featinv "
                           f"worked (two commands writing one -o?); it is kept, and this result "
                           f"was written to {printable(target)} instead.")
    raise FeatinvError(f"{printable(path)} was created by another program while featinv worked; "
                       "it is kept. Choose another -o.")


def move_into_place(tmp: str | Path, path: str | Path) -> None:
    """Rename the finished file ``tmp`` to ``path``: replacing what is there, unless ``path``
    was claimed new (``claim_new``) and something appeared there meanwhile."""
    key = os.path.abspath(path)
    if key in _CLAIMED:
        _CLAIMED.discard(key)
        _place_new(str(tmp), Path(path))
    else:
        os.replace(tmp, path)


# the hidden names of featinv's unfinished writes: a process killed while writing leaves them,
# and the next run in that folder (training.run_folder) recognises them as its own to remove
TEMP_PREFIX = ".featinv-tmp."  # atomic_write's temporary files (``.featinv-tmp.NAME.XXXX.tmp``)
STAGE_PREFIX = ".featinv-stage."  # the folders written_together (and checkpoints) stage in


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` through ``write(temporary_path)``, then rename it into place.

    An interrupted or failing write leaves any previous file intact. The file gets the usual
    permissions (``0666 & ~umask``), not ``mkstemp``'s 0600: results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # after writing: some writers (safetensors) recreate it
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        move_into_place(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_output(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` atomically through ``write(temporary_path)`` (see
    ``atomic_write``); a failure to write is a one-line ``FeatinvError``."""
    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise FeatinvError(f"Cannot write {printable(path)} ({exc.strerror or exc}); check that "
                           "its folder is writable and has free space.") from None


# signals deferred while a set of finished files is renamed into place
_HELD_SIGNALS = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT, SIGTERM and SIGHUP to the end of the block: each is noted and raised again
    once the block is done. Python-level handlers rather than a signal mask, because a mask holds
    only the calling thread, and any other thread (torch's, a progress bar's) would take the
    signal and let Python run the handler at once. Outside the main thread, nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.getsignal(s) for s in _HELD_SIGNALS}
    for s in previous:
        signal.signal(s, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in caught:
            signal.raise_signal(s)


signals_held = _signals_held  # public: a run's checkpoint renames its two files under it


def name_final(exc: BaseException, stage: Path, folder: Path) -> None:
    """Make ``exc`` name ``folder/NAME`` where it names ``stage/NAME``: a file being written in a
    staging folder is, to the user, the file they asked for, and the hidden folder is gone by
    the time the message is read. Rewrites an ``OSError``'s file names, and the message of any
    other exception (``Cannot write ...``) in place."""
    if isinstance(exc, OSError):
        for attr in ("filename", "filename2"):
            value = getattr(exc, attr, None)
            if isinstance(value, (str, os.PathLike)):
                text = os.fspath(value)
                if text == str(stage) or text.startswith(str(stage) + os.sep):
                    setattr(exc, attr, str(folder) + text[len(str(stage)):])
    elif exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
        for old, new in ((str(stage), str(folder)), (printable(stage), printable(folder))):
            text = text.replace(old, new)
        exc.args = (text, *exc.args[1:])


@contextlib.contextmanager
def written_together(folder: str | Path) -> Iterator[Path]:
    """A hidden folder inside ``folder`` to write a set of outputs in; when the block ends
    without an exception, every file written there is moved into ``folder`` (``move_into_place``)
    with SIGINT/SIGTERM/SIGHUP deferred until all are in. A failure or signal before that leaves
    ``folder`` as it was. The hidden folder is removed on any exit."""
    folder = Path(folder)
    created = not folder.exists()  # removed again, empty, if nothing lands in it
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=folder))
    except OSError as exc:
        raise FeatinvError(f"Cannot write in {printable(folder)} ({exc.strerror or exc}); check "
                           "that it is a writable folder with free space.") from None
    try:
        yield stage
        with _signals_held():
            for done in sorted(stage.iterdir()):
                move_into_place(done, folder / done.name)
    except BaseException as exc:
        name_final(exc, stage, folder)
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
