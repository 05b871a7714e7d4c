"""The lock file of a training run's folder: one ``featinv train`` per folder at a time.

The lock names the process holding it (pid, host, the process's start time, so that a pid
reused after a crash or a reboot is not mistaken for it) and the folder it locks (its resolved
path, device and inode): a lock that a copy of the folder (``cp -a`` while the run lives)
carried along names another folder and is stale there. A stale lock (its process gone, or one
featinv did not write) is taken over.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from ..errors import FeatinvError, printable
from ..io.files import read_limited

LOCK_FILE = ".featinv-train.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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


def folder_identity(folder: Path) -> dict:
    """What names ``folder`` itself, whatever path reaches it: its resolved path (for messages),
    device and inode (a copy of the folder has other ones)."""
    st = os.stat(folder)
    return {"folder": os.fsdecode(Path(folder).resolve()), "device": st.st_dev,
            "inode": st.st_ino}


def _locks_another_folder(owner: dict, here: dict) -> bool:
    """Whether the lock was written for another folder (it was copied here with the run's
    files); a lock without the folder's identity (an older featinv) is taken as this folder's."""
    if not (isinstance(owner.get("device"), int) and isinstance(owner.get("inode"), int)):
        return False
    return (owner["device"], owner["inode"]) != (here["device"], here["inode"])


def lock_owner(lock: Path) -> dict | None:
    """Who holds ``lock``; None for anything that is not a lock featinv wrote (a FIFO or a link
    to a device there is refused unread, and then replaced as a stale lock)."""
    try:
        owner = json.loads(read_limited(lock, 4096, "lock file"))
    except (OSError, ValueError, FeatinvError):
        return None
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**31:
        return None
    return owner


def take_lock(folder: Path) -> None:
    """Create ``folder``'s lock for this process, taking over a stale one; a ``FeatinvError``
    if a live run holds it, or it cannot be written."""
    lock = folder / LOCK_FILE
    here = folder_identity(folder)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid()),
          **here}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            other = lock_owner(lock)
            # (device and inode say nothing across hosts: a shared folder differs on each)
            if other and other.get("host") == me["host"] and \
                    not _locks_another_folder(other, here) and _is_training(other):
                raise FeatinvError(f"Another featinv train (process {other['pid']}) is using "
                                   f"{printable(folder)}; wait for it to finish, stop it, or "
                                   "choose another --out.") from None
            if other and other.get("host") != me["host"]:
                raise FeatinvError(f"{printable(folder)} is locked by a run on host "
                                   f"{printable(other.get('host'))} (process "
                                   f"{other.get('pid')}); if that run is over, delete "
                                   f"{printable(lock)}.") from None
            try:  # stale: its process is gone, it locks another folder, or featinv wrote none
                lock.unlink(missing_ok=True)
            except OSError:
                break
            continue
        except OSError as exc:
            raise FeatinvError(f"Cannot write in the run folder {printable(folder)} "
                               f"({exc.strerror or exc}); choose another --out.") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise FeatinvError(f"Cannot lock {printable(folder)}; delete {printable(lock)} if no run is "
                       "using it.")
