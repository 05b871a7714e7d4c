"""Safe writes: every file featinv writes goes to a temporary file in the same folder, then is
renamed into place, so an interrupted or failing write leaves any previous file intact."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import FeatinvError, printable


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` through ``write(temporary_path)``, then rename it into place.

    An interrupted or failing write leaves any previous file intact. The file gets the usual
    permissions (``0666 & ~umask``), not ``mkstemp``'s 0600: results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)  # after writing: some writers (safetensors) recreate it
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
