"""Files of several pictures (an animated GIF, PNG or WebP, a multi-page TIFF): featinv reads
the first, whatever the format, and says so once per process.

A many-page file is longer than its first picture needs, so the bound on a file's bytes (data
appended to an image is refused: ``featinv.io.sizes.max_file_bytes``) counts its pictures; they
are counted (Pillow's ``n_frames``: it reads the file's frame or page headers, decodes nothing)
only for a file beyond the bound of one.
"""
from __future__ import annotations

import warnings

from .. import limits
from ..errors import ImageError, pixel_size
from .sizes import max_file_bytes

# a JPEG's further pictures (MPO: a phone's gain map or depth image) belong to the first, which
# is the photo: nothing to say about them
QUIET_FORMATS = frozenset({"MPO"})
_SAID: list[bool] = [False]


class FirstFrameOnly(UserWarning):
    """A file of several frames or pages was read: only its first picture is used."""


def several(img) -> bool:
    """Whether the opened ``PIL.Image`` holds more than one picture (from its header)."""
    try:
        return bool(getattr(img, "is_animated", False))
    except Exception:  # a damaged frame table: read as one picture, or refused when decoded
        return False


def count(img) -> int:
    """How many pictures the opened ``PIL.Image`` holds (1 when they cannot be counted)."""
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except Exception:
        return 1


def note_first_only(name: str, img) -> None:
    """Say, once per process, that ``name`` holds several pictures and only the first is used."""
    if _SAID[0] or img.format in QUIET_FORMATS:
        return
    _SAID[0] = True
    warnings.warn(FirstFrameOnly(
        f"{name} holds several frames or pages; featinv uses the first alone (said once: other "
        "such files are read the same way)"), stacklevel=3)


def file_bound(img, size: int | None = None) -> int:
    """The most bytes the file of the opened ``PIL.Image`` may have: ``max_file_bytes`` of its
    first picture, or of each of its pictures when it holds several (counted only when ``size``
    is beyond the first's bound, or not given), and then no more than the memory budget lets be
    read whole (the training loaders read a file whole to decode its first page)."""
    one = max_file_bytes(img.width, img.height)
    if (size is not None and size <= one) or not several(img):
        return one
    return max(one, min(max_file_bytes(img.width, img.height, count(img)),
                        limits.memory_budget()))


def check_length(img, size: int | None, name: str) -> None:
    """Refuse (``ImageError``) a file of ``size`` bytes longer than ``file_bound``: data
    appended to the image, or pages more than the memory budget can hold."""
    if size is None or size <= file_bound(img, size):
        return
    picture = pixel_size(img.width, img.height)
    if several(img) and size <= max_file_bytes(img.width, img.height, count(img)):
        raise ImageError(f"{name}: {size} bytes of several frames or pages, more than "
                         f"featinv's memory budget ({limits.budget_words()}) lets it read "
                         f"whole; save the first picture ({picture}), the one featinv uses, "
                         "as a file of its own.")
    raise ImageError(f"{name}: {size} bytes for a picture of {picture}, far more than it needs "
                     "(data appended to the image?); re-save the image.")
