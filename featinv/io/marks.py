"""The mark on every PNG featinv writes, so that no command reads its outputs as photos.

``featinv invert -o .`` run in a folder of photos writes ``photo.hog.png`` beside them (on
purpose); the next ``train``, ``evaluate``, ``audit`` or ``invert`` of that folder would take the
reconstruction for a photo. So ``save_png`` writes a text chunk ``featinv`` (what the picture is:
featinv's version, the representation and decoder of a reconstruction), and the folder listings
of the commands (``without_outputs``) leave such files out, saying how many once. A file named
on the command line is read whatever it holds: inverting a reconstruction on purpose works.

The mark is read from the PNG's chunks before the pixels, by hand: a few small reads per file,
nothing decoded.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

from ..errors import printable

MARK_KEY = "featinv"  # the tEXt keyword
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNKS = 64  # chunks looked at before the pixels; featinv's mark is the second
MAX_TEXT = 4096  # bytes of a tEXt chunk read to look for the keyword
INCLUDE_ENV = "FEATINV_INCLUDE_OUTPUTS"  # set to 1: marked PNGs are read as photos too
# the values that turn it on; any other (0, false, no, off, "00") leaves the outputs skipped, with
# the warning that names the variable
INCLUDE_ON = ("1", "true", "yes", "on")


_SAID: set[tuple[str, int]] = set()  # (folder, how many) said so far in this process


class OutputsSkipped(UserWarning):
    """A folder listing left out PNGs that featinv wrote (its outputs are not photos)."""


def png_info(about: str | None = None):
    """The ``PngInfo`` of a PNG featinv writes: the ``featinv`` text chunk, holding featinv's
    version and ``about`` (what the picture is)."""
    from PIL.PngImagePlugin import PngInfo

    from ..version import __version__

    info = PngInfo()
    text = f"written by featinv {__version__}" + (f": {about}" if about else "")
    info.add_text(MARK_KEY, printable(text)[:MAX_TEXT - len(MARK_KEY) - 1])
    return info


def featinv_output(path: str | Path) -> bool:
    """Whether ``path`` is a PNG with featinv's mark; anything unreadable or not a PNG is not
    (whoever reads it reports it)."""
    if os.path.splitext(str(path))[1].lower() != ".png":
        return False
    try:
        if not os.path.isfile(path):  # a FIFO would block the open, /dev/zero never end
            return False
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return False
            for _ in range(MAX_CHUNKS):
                head = f.read(8)
                if len(head) < 8:
                    return False
                length, kind = int.from_bytes(head[:4], "big"), head[4:]
                if kind in (b"IDAT", b"IEND"):
                    return False
                if kind == b"tEXt" and length <= MAX_TEXT:
                    if f.read(length).split(b"\0", 1)[0] == MARK_KEY.encode():
                        return True
                    f.seek(4, os.SEEK_CUR)
                else:
                    f.seek(length + 4, os.SEEK_CUR)
    except (OSError, ValueError):
        return False
    return False


def without_outputs(files: Iterable[Path], folder: str | Path) -> list[Path]:
    """``files`` (listed below ``folder``) without the PNGs featinv wrote; an ``OutputsSkipped``
    warning says how many were left out."""
    if os.environ.get(INCLUDE_ENV, "").strip().lower() in INCLUDE_ON:
        return list(files)
    kept, skipped = [], []
    for path in files:
        (skipped if featinv_output(path) else kept).append(path)
    said = (os.path.abspath(folder), len(skipped))
    if skipped and said not in _SAID:  # once: commands list a folder more than once
        _SAID.add(said)
        first = Path(skipped[0])
        example = printable(first.relative_to(folder) if first.is_relative_to(folder)
                            else first.name)
        warnings.warn(OutputsSkipped(
            f"{printable(folder)}: skipped {len(skipped)} featinv output"
            f"{'s' if len(skipped) > 1 else ''} ({example}{', ...' if len(skipped) > 1 else ''}"
            "): pictures featinv wrote, not photos; keep outputs in a folder of their own (to read "
            f"them as photos, set {INCLUDE_ENV}=1)"),
            stacklevel=2)
    return kept
