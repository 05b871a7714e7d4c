"""What decoding libraries print: held while a file decodes, so the user sees featinv's line.

libtiff writes its errors (and, under older Pillows, its warnings) to file descriptor 2 itself,
before Pillow raises or goes on; ``stderr_held`` takes them, for the one ``Error:`` line to
name. ``is_tiff`` tells a TIFF from its first bytes.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image


PIL_DIR = os.path.dirname(Image.__file__)  # where Pillow's own warnings come from
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def stderr_held(said: list[str], active: bool = True):
    """While the block runs, what C libraries write to file descriptor 2 goes into ``said``
    (its lines) instead of the terminal. libtiff prints its errors there itself ("ZIPDecode:
    Decoding error at scanline 0, ..."; older Pillows also let its warnings through:
    "TIFFReadDirectory: Warning, Unknown field with tag ..."), before Pillow raises or goes
    on: the user is to see featinv's one line, which names what libtiff said. Nothing is held
    when ``active`` is false, or without a descriptor 2 or a place to hold the text."""
    if not active:
        yield
        return
    with _STDERR_LOCK:  # one redirection at a time: a second would save the first's file
        saved = hold = None
        try:
            sys.stderr.flush()  # what Python wrote before goes where it was meant to
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
            hold = tempfile.TemporaryFile()
            os.dup2(hold.fileno(), 2)
        except OSError:
            if saved is not None:
                os.close(saved)
                saved = None
            if hold is not None:
                hold.close()
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                hold.seek(0)
                text = hold.read(8192).decode("utf-8", "replace")
                hold.close()
                said.extend(line.strip() for line in text.splitlines() if line.strip())


def is_tiff(path: Path, data: bytes | None) -> bool:
    """Whether the file starts as a TIFF (or BigTIFF) does."""
    try:
        if data is None:
            with open(path, "rb") as f:
                data = f.read(4)
    except OSError:
        return False
    return data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
