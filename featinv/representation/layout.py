"""Tensor layouts of feature representations, as checked data.

A representation's output for one image is either a grid ``(C, h, w)`` or a vector ``(C,)``.
How the layout follows from the image size is declared with a *layout rule*: a small frozen object
that computes the layout for ``(height, width)`` and can describe its formula in words
(``featinv describe`` prints it). ``CellGrid`` covers cell-based features (HOG, LBP, SIFT grids);
``FixedVector`` covers global vectors; ``ComputedGrid`` wraps any function, for layouts that
come from network arithmetic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from ..errors import ShapeError, clipped, pixel_size, type_name
from .guard import plugin_code


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"layout {name} must be a positive int, got {v!r}")


@dataclass(frozen=True)
class GridLayout:
    """A spatial feature map of shape ``(channels, height, width)`` per image.

    ``sparse`` marks grids whose cells are mostly empty (e.g. keypoints on a grid), which the
    decoder builder treats differently from dense maps.
    """

    channels: int
    height: int
    width: int
    sparse: bool = False

    def __post_init__(self) -> None:
        _check_positive(channels=self.channels, height=self.height, width=self.width)

    kind = "grid"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}" + (" (sparse)" if self.sparse else "")

    def to_json(self) -> dict[str, Any]:
        return {"kind": "grid", "channels": self.channels, "height": self.height,
                "width": self.width, "sparse": self.sparse}


@dataclass(frozen=True)
class VectorLayout:
    """A global feature vector of shape ``(channels,)`` per image."""

    channels: int

    def __post_init__(self) -> None:
        _check_positive(channels=self.channels)

    kind = "vector"

    @property
    def shape(self) -> tuple[int]:
        return (self.channels,)

    def __str__(self) -> str:
        return f"{self.channels}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "vector", "channels": self.channels}


Layout = Union[GridLayout, VectorLayout]


def layout_from_json(data: Mapping[str, Any]) -> Layout:
    """Inverse of ``Layout.to_json``; raises ``ValueError`` on anything malformed."""
    try:
        kind = data["kind"]
        if kind == "grid":
            return GridLayout(int(data["channels"]), int(data["height"]), int(data["width"]),
                              bool(data.get("sparse", False)))
        if kind == "vector":
            return VectorLayout(int(data["channels"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed layout {dict(data)!r}") from exc
    raise ValueError(f"unknown layout kind {kind!r}")


# the most of a ComputedGrid's formula that messages and 'describe' show
FORMULA_LIMIT = 200
_ROUNDING: dict[str, Callable[[int, int], int]] = {
    "floor": lambda n, cell: n // cell,
    "ceil": lambda n, cell: -(-n // cell),
    "half_up": lambda n, cell: (n + cell // 2) // cell,
}

_ROUNDING_TEXT = {
    "floor": "floor({n}/{c})",
    "ceil": "ceil({n}/{c})",
    "half_up": "floor(({n}+{h})/{c})",
}


@dataclass(frozen=True)
class CellGrid:
    """Grid of square cells: ``channels x round(H/cell) x round(W/cell)``.

    ``rounding`` is ``"floor"``, ``"ceil"`` or ``"half_up"`` (``floor((n + cell//2) / cell)``,
    VLFeat's HOG). ``min_size`` is the smallest image side accepted (default: one cell).
    """

    channels: int
    cell: int
    rounding: str = "floor"
    sparse: bool = False
    min_size: int = 0

    def __post_init__(self) -> None:
        _check_positive(channels=self.channels, cell=self.cell)
        if self.rounding not in _ROUNDING:
            raise ValueError(f"rounding must be one of {sorted(_ROUNDING)}, got {self.rounding!r}")

    @property
    def smallest_side(self) -> int:
        if self.min_size:
            return self.min_size
        # the smallest n with at least one cell under this rounding: a bisection over
        # [1, cell] (n = cell always gives one cell; a loop would take ~cell steps)
        low, high = 1, self.cell
        while low < high:
            mid = (low + high) // 2
            if _ROUNDING[self.rounding](mid, self.cell) >= 1:
                high = mid
            else:
                low = mid + 1
        return low

    def __call__(self, height: int, width: int) -> GridLayout:
        check_image_size(height, width, self.smallest_side, self.describe())
        r = _ROUNDING[self.rounding]
        return GridLayout(self.channels, r(height, self.cell), r(width, self.cell), self.sparse)

    def describe(self) -> str:
        text = _ROUNDING_TEXT[self.rounding]
        hh = text.format(n="H", c=self.cell, h=self.cell // 2)
        ww = text.format(n="W", c=self.cell, h=self.cell // 2)
        return f"{self.channels} x {hh} x {ww}" + (" (sparse)" if self.sparse else "")


@dataclass(frozen=True)
class FixedVector:
    """A vector of ``channels`` numbers whatever the image size."""

    channels: int
    min_size: int = 1

    def __call__(self, height: int, width: int) -> VectorLayout:
        check_image_size(height, width, self.min_size, self.describe())
        return VectorLayout(self.channels)

    @property
    def smallest_side(self) -> int:
        return self.min_size

    def describe(self) -> str:
        return f"{self.channels} (vector)"


@dataclass(frozen=True)
class ComputedGrid:
    """A layout computed by ``fn(height, width) -> Layout`` (e.g. conv arithmetic of a network).

    ``formula`` is the human description shown by ``featinv describe``. ``min_size`` is the
    smallest side accepted, or a function computing it on first use (e.g. a search over sizes).
    """

    fn: Callable[[int, int], Layout]
    formula: str
    min_size: int | Callable[[], int] = 1

    def __post_init__(self) -> None:  # messages and describe show it: printable and bounded
        object.__setattr__(self, "formula", clipped(self.formula, FORMULA_LIMIT))

    def __call__(self, height: int, width: int) -> Layout:
        if not callable(self.min_size):
            check_image_size(height, width, self.min_size, self.formula)
        try:
            with plugin_code(f"the layout function of {self.formula!r}"):
                out = self.fn(height, width)
        except (RuntimeError, ValueError, AssertionError):
            if not callable(self.min_size):
                raise
            # the smallest side is computed only now, when it is needed for the message
            check_image_size(height, width, self.smallest_side, self.formula)
            raise
        if not isinstance(out, (GridLayout, VectorLayout)):
            raise TypeError(f"layout function returned {type_name(out)}, not a Layout")
        return out

    @property
    def smallest_side(self) -> int:
        if callable(self.min_size):
            with plugin_code(f"the smallest-side search of {self.formula!r}"):
                found = int(self.min_size())
            object.__setattr__(self, "min_size", found)  # computed once
        return self.min_size

    def describe(self) -> str:
        return self.formula


LayoutRule = Union[CellGrid, FixedVector, ComputedGrid]


def check_image_size(height: int, width: int, min_side: int, what: str = "") -> None:
    """Raise ``ShapeError`` (a ``ValueError``) unless both sides are at least ``min_side`` px."""
    if height < min_side or width < min_side:
        raise ShapeError(
            f"image of {pixel_size(width, height)} is too small: this representation "
            f"needs at least {min_side}x{min_side} px" + (f" (layout {what})" if what else ""))


def upsampling_factor(layout: GridLayout, image_size: int) -> int:
    """Power-of-two factor closest to ``image_size / grid side`` (at least 1)."""
    side = max(layout.height, layout.width)
    return 2 ** max(0, round(math.log2(max(image_size / side, 1.0))))
