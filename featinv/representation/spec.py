"""What a representation declares (``FeatureSpec``) and the extractor module built from it.

A plugin registers a ``FeatureSpec``; ``featinv.get_feature(name, **params)`` turns it into an
``Extractor``: an ``nn.Module`` mapping an RGB batch ``(B, 3, H, W)`` in [0, 1] to features of
exactly the declared layout. The wrapper does the parts every representation shares (input
checks, grayscale conversion, output checks), so a plugin's own code stays small.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..choices import DECODER_FAMILIES as FAMILY_LAYOUTS
from ..deprecation import module_aliases, renamed_fields
from ..errors import (LINE_LIMIT, NAME_LIMIT, FeatinvError, PluginError, ShapeError, clipped, shown,
                      type_name)
from ..io.sizes import check_large_enough
from ..limits import allocation_failure, format_bound
from .guard import PluginAborted, exception_text, message_text, passes_as_is, plugin_code
from .layout import CellGrid, ComputedGrid, FixedVector, Layout, LayoutRule
from .memory import check as check_memory
from .memory import check_declaration as check_memory_declaration

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
INPUTS = ("gray", "rgb")
FAMILY_CHOICES = ("auto", *FAMILY_LAYOUTS)  # what FeatureSpec.decoder_family accepts
# deprecated spellings (featinv.choices.DECODER_FAMILIES is the family -> layout kind table)
__getattr__ = module_aliases(__name__, {"DECODER_CHOICES": "FAMILY_CHOICES",
                                        "DECODER_FAMILIES": "FAMILY_CHOICES"})

# ITU-R BT.601 luma, as VLFeat/MATLAB's rgb2gray and the paper use
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


# Bounds of a number parameter that declares none: a value beyond them is nonsense for any
# representation (and ``int(1e300)`` would be a 300-digit integer).
INT_BOUNDS = (-2**31, 2**31 - 1)
FLOAT_BOUNDS = (-1e12, 1e12)


class ParamRangeError(FeatinvError):
    """A number parameter outside its range (``FeatureSpec.resolve_params`` names the
    representation)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a representation: name, default, type and a one-line help.

    ``low``/``high``: the range of a number parameter (inclusive), e.g. ``low=1, high=4096`` for
    a cell side in pixels; featinv refuses values outside it before building anything (a cell of
    10^12 px would make the layout's arithmetic, and whatever allocates by it, absurd). Numbers
    without declared bounds stay within ``INT_BOUNDS`` / ``FLOAT_BOUNDS``.
    """

    name: str
    default: Any
    help: str = ""
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (e.g. a CLI string) to the default's type and check choices."""
        kind = type(self.default)
        bad = FeatinvError(f"Parameter '{self.name}' expects {kind.__name__}, "
                           f"got {shown(value)}.")
        if self.default is None or isinstance(value, kind) and not (
                isinstance(value, bool) and kind is not bool):
            pass
        elif kind is bool:
            lowered = str(value).lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise bad
            value = lowered in ("1", "true", "yes")
        elif isinstance(value, bool):
            raise bad
        else:
            try:
                converted = kind(value)
            except (TypeError, ValueError):
                raise bad from None
            # refuse lossy conversions such as int(15.7), and NaN or infinite numbers
            if kind is int and not isinstance(value, str) and converted != value:
                raise bad
            if kind is float and not math.isfinite(converted):  # inf, nan, 1e400
                raise FeatinvError(f"Parameter '{self.name}' expects float (a finite number), "
                                   f"got {shown(value)}.")
            value = converted
        if self.choices is not None and value not in self.choices:
            raise FeatinvError(f"Parameter '{self.name}' must be one of {list(self.choices)}, "
                               f"got {shown(value)}.")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.bounds()
            if not low <= value <= high:
                raise ParamRangeError(f"{self.name}={shown(value)} (it must be from "
                                      f"{format_bound(low)} to {format_bound(high)})")
        return value

    def bounds(self) -> tuple[float, float]:
        """The range a number value must lie in (declared, else the type's default bounds)."""
        low, high = INT_BOUNDS if isinstance(self.default, int) else FLOAT_BOUNDS
        return (low if self.low is None else self.low, high if self.high is None else self.high)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "default": self.default,
               "help": clipped(self.help, LINE_LIMIT),
               "choices": list(self.choices) if self.choices is not None else None}
        if self.low is not None or self.high is not None:
            out["range"] = list(self.bounds())
        return out


@renamed_fields({"layout": "rule", "decoder": "decoder_family"})
@dataclass(frozen=True)
class FeatureSpec:
    """Everything featinv needs to know about one representation.

    ``build(**params)`` returns an ``nn.Module`` mapping ``(B, 1 or 3, H, W)`` (1 channel when
    ``input == "gray"``) to ``(B, *layout.shape)``. ``rule(**params)`` returns the layout rule
    for those parameters (what gives the layout at each image size). ``decoder_family`` names
    the decoder family that suits the layout (``"auto"``: chosen from the layout). ``plugin`` is
    filled in by the registry. ``layout=`` and ``decoder=`` are deprecated spellings of ``rule=``
    and ``decoder_family=``.

    Optional:
        image_size: the square input size the representation is meant for (e.g. 227 for
            AlexNet, as in the paper); training and evaluation use it unless told otherwise.
        visualize: ``visualize(image, features, **params) -> picture`` draws what the
            representation sees (``featinv show-features``); ``image`` is ``(H, W, 3)`` float in
            [0, 1], ``features`` the ``(C, h, w)`` or ``(C,)`` NumPy features of that image,
            ``picture`` an ``(H', W', 3)`` float array in [0, 1]. Without it featinv shows a
            generic view of the channels.
        backends: ``backends() -> {name: status}`` for a representation whose ``backend``
            parameter picks between implementations; ``featinv describe`` prints the statuses
            (e.g. whether a C library is installed).
        members: ``members() -> [name, ...]`` for a representation that stands for a family
            (``torchvision.<model>``: its nodes); ``featinv describe`` lists them.
        memory: what the forward pass allocates beyond its input, for featinv to refuse an
            image too large for the memory free before running (``featinv.representation.memory``):
            bytes per input pixel, or ``memory(height, width, **params) -> bytes`` for one image.

    A built module may also define ``forward_with_report(x) -> (features, report)``, where
    ``report`` maps names to one value per image (e.g. keypoints detected); ``featinv extract``
    stores them next to the features.
    """

    name: str
    description: str
    input: str
    differentiable: bool
    build: Callable[..., nn.Module]
    rule: Callable[..., LayoutRule]
    params: tuple[Param, ...] = ()
    decoder_family: str = "auto"
    plugin: str = ""
    image_size: int | None = None
    visualize: Callable[..., Any] | None = None
    backends: Callable[[], Mapping[str, str]] | None = None
    members: Callable[[], list[str]] | None = None
    memory: float | Callable[..., float] | None = None

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            problems.append(f"name '{clipped(self.name)}' must be lower-case words joined by '.' "
                            "or '_'")
        elif len(self.name) > NAME_LIMIT:  # every message about it names it
            problems.append(f"name '{clipped(self.name)}' has {len(self.name)} characters (at "
                            f"most {NAME_LIMIT})")
        if not isinstance(self.description, str) or not self.description.strip():
            problems.append("description must be a non-empty string")
        elif "\n" in self.description.strip():
            problems.append("description must be one line")
        if self.input not in INPUTS:
            problems.append(f"input must be one of {INPUTS}, got {self.input!r}")
        if not isinstance(self.differentiable, bool):
            problems.append("differentiable must be True or False")
        if not callable(self.build) or not callable(self.rule):
            problems.append("build and rule must be callables")
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or self.image_size < 1):
            problems.append("image_size must be a positive int or None")
        if any(f is not None and not callable(f) for f in (self.visualize, self.backends,
                                                     self.members)):
            problems.append("visualize, backends and members must be callables or None")
        if check_memory_declaration(self.memory):
            problems.append(check_memory_declaration(self.memory))
        if self.decoder_family not in FAMILY_CHOICES:
            problems.append(f"decoder_family must be one of {FAMILY_CHOICES}, got "
                            f"{self.decoder_family!r}")
        if not all(isinstance(p, Param) for p in self.params):
            problems.append("params must be Param objects")
        elif not all(isinstance(p.name, str) and p.name.isidentifier()
                     and len(p.name) <= NAME_LIMIT for p in self.params):
            problems.append(f"parameter names must be Python names of at most {NAME_LIMIT} "
                            "characters")
        if problems:
            raise ValueError(f"invalid representation '{clipped(self.name)}': "
                             + "; ".join(problems))

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``params``; unknown names are an error that lists valid ones."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise FeatinvError(f"Representation '{self.name}' has no parameter "
                               f"{', '.join(repr(u) for u in unknown)} (parameters: {valid}).")
        out = self.defaults
        try:
            out.update({k: known[k].coerce(v) for k, v in params.items()})
        except ParamRangeError as exc:
            raise FeatinvError(f"Representation '{self.name}' does not accept {exc}; "
                               f"'featinv describe {self.name}' lists its parameters.") from None
        return out

    def changed_params(self, params: Mapping[str, Any]) -> str:
        """``name=value, ...`` of the ``params`` that differ from the defaults (for messages)."""
        defaults = self.defaults
        return ", ".join(f"{k}={shown(v, 100)}" for k, v in params.items()  # a file's 5 MB too
                         if k not in defaults or v != defaults[k])

    def layout_rule(self, **params: Any) -> LayoutRule:
        """``rule`` for ``params`` over the defaults, checked: a bad value is a one-line error."""
        resolved = self.resolve_params(params)
        try:
            with plugin_code(f"{self.name} (plugin {self.plugin})"):
                rule = self.rule(**resolved)
        except FeatinvError as exc:
            if isinstance(exc, PluginAborted) or passes_as_is(exc):  # ours, or clear
                raise
            raise PluginError(f"{self.name} (plugin {self.plugin}) cannot declare its layout: "
                              f"{exception_text(exc)}") from exc
        except (ValueError, TypeError, ArithmeticError) as exc:  # e.g. cell_size=0
            given = self.changed_params(resolved)
            if not given:
                raise PluginError(f"{self.name} (plugin {self.plugin}) cannot declare its layout "
                                  f"with its default parameters: {message_text(exc)}") from exc
            raise FeatinvError(f"Representation '{self.name}' does not accept {given} "
                               f"({message_text(exc)}); 'featinv describe {self.name}' lists its "
                               "parameters.") from exc
        if not isinstance(rule, (CellGrid, FixedVector, ComputedGrid)):
            raise TypeError(f"{self.name}: rule() returned {type_name(rule)}, "
                            "expected CellGrid, FixedVector or ComputedGrid")
        return rule

    def to_json(self, image_size: int | None = None, min_size: bool = True,
                params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Everything ``describe`` shows, for ``params`` over the defaults (``values``);
        ``min_size=False`` skips the smallest image side, which a network representation may
        need a search over sizes to find."""
        rule = self.layout_rule(**(params or {}))
        # what a plugin wrote is shown printable and bounded (a 5 MB description, help, or
        # backend status was printed whole)
        out = {"name": self.name, "plugin": clipped(self.plugin),
               "description": clipped(self.description, LINE_LIMIT),
               "input": self.input, "differentiable": self.differentiable,
               "params": [p.to_json() for p in self.params],
               "values": self.resolve_params(params or {}), "layout_formula": rule.describe(),
               "decoder": self.decoder_family,  # the key describe --json has always had
               "image_size": self.image_size,
               "backends": None, "members": None}
        with plugin_code(f"{self.name} (plugin {self.plugin})"):
            out["backends"] = {clipped(k): clipped(v, LINE_LIMIT) for k, v in
                               dict(self.backends()).items()} if self.backends else None
            out["members"] = [clipped(m) for m in self.members()] if self.members else None
        if min_size:
            out["min_size"] = rule.smallest_side
        if image_size is not None:
            out["layout"] = rule(image_size, image_size).to_json()
        return out


def rgb_to_gray(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` with 0.299 R + 0.587 G + 0.114 B."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b


class Extractor(nn.Module):
    """A representation with its parameters bound: ``(B, 3, H, W)`` in [0, 1] -> features.

    Checks the input, converts to grayscale when the representation works on gray images, runs
    the plugin's module and checks that the output has the declared layout and is float32.

    Shape:
        - Input: ``(B, 3, H, W)``, float, values in [0, 1].
        - Output: ``(B, C, h, w)`` for grid layouts, ``(B, C)`` for vector layouts.
    """

    def __init__(self, spec: FeatureSpec, params: Mapping[str, Any], module: nn.Module):
        super().__init__()
        self.spec = spec
        self.params = dict(params)
        self.rule = spec.layout_rule(**self.params)
        self.module = module
        # The finite-input check costs a device sync; training turns it off (its images come
        # from uint8 and are finite by construction).
        self.check_finite_input = True

    @property
    def name(self) -> str:
        return self.spec.name

    def layout(self, height: int, width: int) -> Layout:
        """Layout of the features of one ``height x width`` image."""
        return self.rule(height, width)

    def check_large_enough(self, height: int, width: int, verb: str) -> None:
        """Refuse an image worked at ``height x width`` px below the smallest side of a grid
        layout, saying at what --size (and --max-side) to ``verb`` it instead."""
        if isinstance(self.rule, (CellGrid, ComputedGrid)):
            check_large_enough(width, height, self.rule.smallest_side,
                               f"{self.name} (layout {self.rule.describe()})", verb)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images, with_report=False)[0]

    def forward_with_report(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, list]]:
        """Features plus what the representation reports per image (``{}`` if nothing).

        Each report entry is a list with one value per image, e.g. ``{"keypoints": [57, 61]}``.
        """
        return self._run(images, with_report=True)

    def _run(self, images: torch.Tensor, with_report: bool) -> tuple[torch.Tensor, dict[str, list]]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"{self.name}: expected images of shape (B, 3, H, W), "
                             f"got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ShapeError(f"{self.name}: expected float images in [0, 1], got {images.dtype}")
        if images.shape[0] == 0:
            raise ShapeError(f"{self.name}: got an empty batch (B = 0)")
        expected = self.layout(images.shape[2], images.shape[3])
        if self.check_finite_input and not bool(torch.isfinite(images).all()):
            raise ShapeError(f"{self.name}: the images contain NaN or infinite values; features "
                             "of such pixels are undefined (check how the images were made)")
        if images.device.type == "cpu":  # refused before it runs out of memory halfway
            check_memory(self.name, self.spec.memory, self.params, *images.shape[:1],
                         *images.shape[2:])
        images = images.float()  # plugins may rely on float32 input
        x = rgb_to_gray(images) if self.spec.input == "gray" else images
        report: dict[str, list] = {}
        try:
            with plugin_code(f"{self.name} (plugin {self.spec.plugin})"):
                if with_report and hasattr(self.module, "forward_with_report"):
                    out, report = self.module.forward_with_report(x)
                    report = {k: list(v) for k, v in dict(report).items()}
                else:
                    out = self.module(x)
        except Exception as exc:  # a plugin's bug: name the plugin, keep the cause for --debug
            if isinstance(exc, FeatinvError) and not isinstance(exc, PluginAborted) \
                    and passes_as_is(exc):
                raise
            if allocation_failure(exc, message_text(exc)):  # the machine's limit, not a bug: callers say so per image
                raise MemoryError(f"{self.name}: out of memory on a batch of shape "
                                  f"{tuple(x.shape)}") from exc
            raise PluginError(f"{self.name} (plugin {self.spec.plugin}) failed on a batch of "
                              f"shape {tuple(x.shape)}: {exception_text(exc)}") from exc
        if any(len(v) != images.shape[0] for v in report.values()):
            raise ShapeError(f"{self.name} (plugin {self.spec.plugin}) reported statistics "
                             "that do not have one value per image")
        self._check_output(out, (images.shape[0], *expected.shape))
        return out, report

    def _check_output(self, out: torch.Tensor, want: tuple[int, ...]) -> None:
        if not isinstance(out, torch.Tensor):
            raise ShapeError(f"{self.name} (plugin {self.spec.plugin}) returned "
                             f"{type_name(out)}, not a tensor")
        if tuple(out.shape) != want:
            raise ShapeError(f"{self.name} (plugin {self.spec.plugin}) returned shape "
                             f"{tuple(out.shape)}, but its layout declares {want}")
        if out.dtype != torch.float32:
            raise ShapeError(f"{self.name} (plugin {self.spec.plugin}) returned {out.dtype}, "
                             "expected torch.float32")

    def extra_repr(self) -> str:
        return f"name={self.name!r}, params={self.params}"
