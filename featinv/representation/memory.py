"""What a representation's own computation takes in memory, checked before it runs.

A ``FeatureSpec`` may declare ``memory``: a number of bytes per input pixel, or
``memory(height, width, **params) -> bytes`` for one image. The bytes are what the forward pass
allocates beyond its input (intermediate arrays, the features), measured by the representation's
author at a few sizes with a margin. The ``Extractor`` then refuses, in one line, a batch whose
estimate is more than the memory featinv may fill now (``room``) and names the largest
``--max-side`` that fits, instead of an out-of-memory error halfway (SIFT at 4096 x 4096 px takes
about 4 GB). Undeclared: not checked.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .. import limits
from ..errors import FeatinvError, pixel_size
from ..wording import opt
from .guard import plugin_code

SMALL = 64 * 2**20  # bytes not worth a look at the free memory


def check_declaration(memory: Any) -> str | None:
    """What is wrong with a spec's ``memory`` (None: nothing)."""
    if memory is None or callable(memory):
        return None
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) \
            or not math.isfinite(memory) or memory < 0:
        return "memory must be bytes per input pixel (a number >= 0), a callable or None"
    return None


def estimate(memory: float | Callable[..., float] | None, height: int, width: int,
             params: Mapping[str, Any]) -> float | None:
    """Bytes one ``height x width`` image takes (``memory`` as declared; None: undeclared)."""
    if memory is None:
        return None
    if callable(memory):
        with plugin_code("a representation's memory estimate"):
            return float(memory(height, width, **params))
    return float(memory) * height * width


def room() -> tuple[int, str]:
    """``(bytes, words)``: the memory a computation may fill now, the lesser of the memory
    budget and the memory free (``featinv.limits``), and how to say which it is."""
    budget, free = limits.memory_budget(), limits.memory_available()
    if free is not None and free < budget:
        return free, f"the {free / 1e9:.1f} GB of memory free now"
    return budget, f"featinv's memory budget of {budget / 1e9:.1f} GB ({limits.budget_words()})"


def check(name: str, memory, params: Mapping[str, Any], batch: int, height: int,
          width: int) -> None:
    """Refuse (``FeatinvError``) ``batch`` images of ``height x width`` px whose estimate is
    more than ``room()``, naming the largest longer side that fits."""
    one = estimate(memory, height, width, params)
    if one is None or one * batch <= SMALL:
        return
    have, words = room()
    if one * batch <= have:
        return
    longer = max(height, width)

    def fits(side: int) -> bool:
        scale = side / longer
        return batch * estimate(memory, max(1, round(height * scale)),
                                max(1, round(width * scale)), params) <= have

    low, high = 0, longer  # the largest longer side that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    images = f"{batch} images" if batch > 1 else "an image"
    if low < 16:
        hint = "use much smaller images" if batch > 1 else "use a much smaller image"
    elif batch > 1:
        hint = f"use fewer images at a time ({opt('batch_size')}) or sides of at most {low} px"
    else:
        hint = f"use {opt('max_side', low)} or less"
    raise FeatinvError(f"{name}: the features of {images} of {pixel_size(width, height)} would "
                       f"need about {one * batch / 1e9:.1f} GB, more than {words}; {hint}.")
