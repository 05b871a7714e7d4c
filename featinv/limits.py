"""Bounds on the work one input may cause, checked before anything is allocated (no PyTorch
import, so that the command line can use them in its option types)."""
from __future__ import annotations

import os

MAX_SIDE = 4096  # the largest --size / --image-size a command accepts
# invert's default cap on the longer side (--max-side): the work stays bounded for big photos
DEFAULT_MAX_SIDE = 1024
# an image may be enlarged to at most this many pixels (a 1 x 12000 px strip resized to a
# shorter side of 64 px would take 5 GB); shrinking is always allowed
MAX_RESIZED_PIXELS = MAX_SIDE * MAX_SIDE


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
