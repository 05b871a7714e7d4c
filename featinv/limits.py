"""Bounds on the work one input may cause, checked before anything is allocated (no PyTorch
import, so that the command line can use them in its option types)."""
from __future__ import annotations

import math
import os

MAX_SIDE = 4096  # the largest --size / --image-size a command accepts
# invert's default cap on the longer side (--max-side): the work stays bounded for big photos
DEFAULT_MAX_SIDE = 1024
# an image may be enlarged to at most this many pixels (a 1 x 12000 px strip resized to a
# shorter side of 64 px would take 5 GB); shrinking is always allowed
MAX_RESIZED_PIXELS = MAX_SIDE * MAX_SIDE
# the largest .safetensors header (tensor names, shapes, metadata JSON) featinv parses: its own
# files need about 20 KB, a CNN's weights some 100 KB; safetensors itself takes up to 100 MB,
# and parsing that much costs about twice as much memory
MAX_SAFETENSORS_HEADER = 8 * 2**20
# analysis settings beyond which the result is no longer what was asked: a --contrast below
# MIN_CONTRAST decodes zero features (1e-320 passed as "above 0"), and --bootstrap 10**11 asked
# for terabytes after the whole audit had run (1e5 samples already give stable intervals)
MIN_CONTRAST, MAX_BOOTSTRAP = 0.01, 100_000


MEMORY_ENV = "FEATINV_MEMORY_BUDGET"  # GB; default: half of this machine's memory


def _budget_env() -> float | None:
    """``$FEATINV_MEMORY_BUDGET`` in GB, None when unset; a value that is no such number is
    refused (ignoring it would leave the user's limit silently unapplied)."""
    value = os.environ.get(MEMORY_ENV, "").strip()
    if not value:
        return None
    try:
        gb = float(value)
    except ValueError:
        gb = math.nan
    if not 1e-3 <= gb < 1e6:  # NaN too; below 1 MB (1e-300 is 0 bytes) nothing could run
        from .errors import FeatinvError, quoted

        raise FeatinvError(f"${MEMORY_ENV}={quoted(value)}: give a number of GB at least "
                           "0.001 and below 1e6 (e.g. 4), or unset it.")
    return gb


def memory_budget(total: int | None = None) -> int:
    """Bytes one command may fill with the data it holds (decoded images, their tensors, the
    arrays of a weights file): ``$FEATINV_MEMORY_BUDGET`` GB, else half of this machine's
    memory (``total``: that memory, default ``memory_bytes()``; 8 GiB where the OS does not
    say). Checked from headers, before anything is decoded or allocated."""
    gb = _budget_env()
    if gb is not None:
        return int(gb * 1e9)
    total = memory_bytes() if total is None else total
    return total // 2 if total else 8 * 2**30


def budget_words(total: int | None = None) -> str:
    """The memory budget in words, for messages."""
    gb = _budget_env()
    if gb is not None:
        return f"the ${MEMORY_ENV} of {gb:g} GB"
    total = memory_bytes() if total is None else total
    return (f"half of this machine's {total / 1e9:.0f} GB" if total else
            f"{memory_budget(total) / 1e9:.0f} GB")


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def memory_available() -> int | None:
    """Bytes this machine can still give a process now: the kernel's ``MemAvailable``, or what
    this process's cgroup (a container's memory limit) has left, whichever is less; None where
    neither says (outside Linux)."""
    found = []
    try:
        with open("/proc/meminfo") as meminfo:
            found += [int(line.split()[1]) * 1024 for line in meminfo
                      if line.startswith("MemAvailable:")]
        with open("/proc/self/cgroup") as cgroup:  # cgroup v2: one line "0::/PATH"
            folder = "/sys/fs/cgroup" + next(line[3:].strip() for line in cgroup
                                             if line.startswith("0::"))
        with open(f"{folder}/memory.max") as limit, open(f"{folder}/memory.current") as used:
            text = limit.read().strip()
            if text != "max":
                found.append(max(0, int(text) - int(used.read())))
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return min(found) if found else None


# how PyTorch words a failed allocation: a RuntimeError on the CPU ("DefaultCPUAllocator: can't
# allocate memory"), torch.OutOfMemoryError (a RuntimeError too) on a GPU
_ALLOCATION_WORDS = ("can't allocate memory", "cannot allocate memory", "out of memory",
                     "insufficient memory")  # the last: OpenCV's error -4 (cv::OutOfMemoryError)


def allocation_failure(exc: BaseException, text: str | None = None) -> bool:
    """Whether ``exc`` says that memory could not be allocated: a ``MemoryError``, or
    PyTorch's ``RuntimeError`` or OpenCV's ``cv2.error`` for it (no import of either: told by
    its type and words). ``text``: its message, where the caller has it already (a plugin's
    exception is read through ``representation.guard.message_text``, never by ``str`` here)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    opencv = type(exc).__module__ == "cv2" and type(exc).__name__ == "error"
    if not (isinstance(exc, RuntimeError) or opencv):
        return False
    if text is None:
        try:
            text = str(exc)
        except Exception:  # a message that cannot be read says nothing about memory
            return False
    return any(w in text.lower() for w in _ALLOCATION_WORDS)


def format_bound(number: float) -> str:
    """A range's end for messages: an integer in full (4294967295, not ``:g``'s 4.29497e+09),
    any other number as ``:g`` writes it."""
    if isinstance(number, int) and not isinstance(number, bool):
        return str(number)
    return f"{number:g}"


def check_number(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``[low, high]`` (``(low, high]`` with
    ``low_open``), else a ``FeatinvError`` naming ``name`` (NaN and infinities included: they
    would give black pictures with exit 0)."""
    from .errors import FeatinvError

    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    inside = math.isfinite(number) and (number > low if low_open else number >= low) \
        and number <= high
    if isinstance(value, bool) or not inside:
        raise FeatinvError(f"{name} {value!r}: give a finite number "
                           f"{'above' if low_open else 'from'} {format_bound(low)} "
                           f"{'and at most' if low_open else 'to'} {format_bound(high)}.")
    return number
