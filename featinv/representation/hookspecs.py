"""Hook specifications of featinv's plugin system (pluggy project name ``"featinv"``).

A plugin is a module (or object) with functions marked ``@featinv.hookimpl``; third-party
plugins are found through the ``featinv`` entry-point group, built-in representations are
registered the same way. Hook implementations may accept fewer arguments than the spec lists.
This module is a leaf: it imports nothing heavy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pluggy

from ..deprecation import module_aliases, renamed_fields
from ..errors import LINE_LIMIT, NAME_LIMIT, clipped

hookspec = pluggy.HookspecMarker("featinv")
hookimpl = pluggy.HookimplMarker("featinv")

DEFAULT_VARIANT = "default"
MAX_PATH = 4096  # the longest path a file system takes (PATH_MAX)
_VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
__getattr__ = module_aliases(__name__, {"DEFAULT_DECODER": "DEFAULT_VARIANT"})


@renamed_fields({"decoder": "variant"})
@dataclass(frozen=True)
class ShippedDecoder:
    """One decoder a plugin ships (an entry of ``featinv_shipped_decoders``).

    ``feature``: the representation it inverts; ``file``: its ``.safetensors`` file (written by
    ``featinv pack``); ``variant``: its name among the decoders of ``feature`` (``"default"``
    is the one ``invert -f NAME`` uses without ``--decoder``; others such as ``"realistic"`` are
    chosen with ``--decoder``: lower-case letters, digits, ``_`` and ``-``); ``description``:
    one line for ``featinv zoo``. ``plugin`` is filled in by featinv. ``decoder=`` is the
    deprecated spelling of ``variant=``.
    """

    feature: str
    file: Path
    variant: str = DEFAULT_VARIANT
    description: str = ""
    plugin: str | None = None

    def __post_init__(self) -> None:  # a name or path of 5 MB would fill every message
        if not isinstance(self.feature, str) or not 0 < len(self.feature) <= NAME_LIMIT:
            raise ValueError(f"ShippedDecoder.feature must be a representation name (at most "
                             f"{NAME_LIMIT} characters), got '{clipped(self.feature)}'")
        if not isinstance(self.variant, str) or len(self.variant) > NAME_LIMIT \
                or not _VARIANT_NAME.fullmatch(self.variant):
            raise ValueError(f"ShippedDecoder.variant must be lower-case letters, digits, '_' "
                             f"or '-' (at most {NAME_LIMIT}), got '{clipped(self.variant)}'")
        if not isinstance(self.description, str) or "\n" in self.description:
            raise ValueError("ShippedDecoder.description must be one line of text")
        object.__setattr__(self, "feature", self.feature.lower())
        object.__setattr__(self, "file", Path(self.file))
        if len(str(self.file)) > MAX_PATH:
            raise ValueError(f"ShippedDecoder.file is a path of {len(str(self.file))} "
                             f"characters (at most {MAX_PATH})")
        object.__setattr__(self, "description", clipped(self.description, LINE_LIMIT))

    @property
    def key(self) -> str:
        """``NAME`` for the default decoder, ``NAME.VARIANT`` for the others (as in
        ``--init-from`` and the file names of the built-in zoo)."""
        return self.feature if self.variant == DEFAULT_VARIANT else f"{self.feature}.{self.variant}"


@hookspec
def featinv_register_features(register):
    """Register representations: call ``register(FeatureSpec(...))`` once per representation."""


@hookspec(firstresult=True)
def featinv_build_decoder(spec, layout, image_size, preset, width):
    """Return an ``nn.Module`` decoding ``layout`` features to ``(B, 3, image_size, image_size)``
    images, or ``None`` to leave it to the next implementation.

    ``spec`` is the ``FeatureSpec`` being inverted, ``layout`` its ``Layout`` at the training
    image size, ``preset`` the decoder preset name and ``width`` the width multiplier. The
    built-in generic builder runs last (``trylast``), so any plugin can override it for the layouts
    or representations it knows better.
    """


@hookspec(firstresult=True)
def featinv_resolve_feature(name):
    """Return a ``FeatureSpec`` named ``name`` for a name no plugin registered, or ``None``.

    For families too large to list, e.g. ``timm.<model>.stage<i>`` for every timm model: the
    plugin registers a representative few with ``featinv_register_features`` and builds the rest
    on demand here. The spec's ``name`` must equal ``name``.
    """


@hookspec
def featinv_shipped_decoders():
    """Return a list of ``ShippedDecoder`` entries: the decoders this plugin ships.

    Every implementation is asked (not ``firstresult``); ``featinv zoo`` lists them all and
    ``invert -f NAME [--decoder VARIANT]`` finds them. The built-in zoo (``featinv/zoo``) is an
    implementation like any other. The same ``(feature, variant)`` shipped by two plugins is an
    error naming both. Called once per session, when plugins are listed or a shipped decoder is
    looked up: keep it cheap (list files, read no more than their headers, download nothing).
    """
