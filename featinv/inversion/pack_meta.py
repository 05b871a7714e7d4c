"""What ``pack`` writes of a decoder's ``feature`` metadata (issue 24, round 13 N8).

A decoder's ``feature.params`` are the representation's parameters it was trained with; loading
builds the representation from them (``encoder_weights.encoder_for``). A value there that names
a file or folder of the machine that trained it (``weights=/home/me/sq.safetensors``), or
something to fetch (``https://...``, ``hf-hub:ORG/NAME``), was copied as it was into every file,
``config.json`` and model card that ``pack`` wrote: the trainer's paths were shipped, and a
forged URL was advertised and handed to the representation on every load. ``pack`` stores the
parameter's default instead (the weights fingerprint, ``feature.weights_sha256``, still names
the weights the decoder was trained against: ``invert`` warns when the default's differ) and
says so; a decoder whose layout would then change is not packed. ``feature.plugin`` becomes the
plugin that provides the representation here (a forged ``os`` was copied too).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, printable, shown

# a value that names a file or folder: a separator, a leading '~', a scheme ('https:',
# 'hf-hub:'), a drive ('C:x', relative to that drive's folder) or a weights file's suffix
# ('sq.safetensors', a bare name in the trainer's folder)
LOCATION = re.compile(r"[\\/]|^~|^[A-Za-z][A-Za-z0-9+.-]*:|\.(safetensors|npz|npy|pt|pth|bin|"
                      r"ckpt|pkl|h5|onnx)$", re.IGNORECASE)


class PackedMetadata(UserWarning):
    """``pack`` stored another value than the decoder's for a field of its metadata."""


def portable_feature(feature: dict[str, Any], spec, image_size: int,
                     source: str | Path) -> dict[str, Any]:
    """``feature`` (a loaded decoder's ``feature`` metadata, checked on load) as a packed file
    carries it, for representation ``spec``: each parameter whose value is a path or URL set to
    its default, ``plugin`` set to ``spec.plugin``; a ``PackedMetadata`` warning names each
    change. A ``CheckpointError`` when the defaults give another layout at ``image_size``."""
    out = dict(feature)
    params = dict(out.get("params") or {})
    defaults = spec.defaults
    changes, located = [], []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, str) and LOCATION.search(value) and key in defaults:
            params[key] = defaults[key]
            located.append(f"its feature.params.{key} {shown(value, 60)} is a path or URL")
            kept = (" (its feature.weights_sha256 still names the weights it was trained "
                    "against)" if key == "weights" and out.get("weights_sha256") else "")
            changes.append(f"its feature.params.{key} {shown(value, 60)} is a path or URL, which "
                           f"a packed decoder does not carry: the packed file stores the default "
                           f"{shown(defaults[key], 60)} instead{kept}")
    if params != out.get("params"):
        if spec.layout_rule(**params)(image_size, image_size) != \
                spec.layout_rule(**out["params"])(image_size, image_size):
            raise CheckpointError(f"{printable(source)}: not packed: {', '.join(located)}, "
                                  f"and with the default, '{spec.name}' gives another layout; a "
                                  "decoder whose features depend on a file of this machine "
                                  "cannot be packed.")
        out["params"] = params
    if out.get("plugin") is not None and out["plugin"] != spec.plugin:
        changes.append(f"its feature.plugin {shown(out['plugin'], 60)} is not the plugin that "
                       f"provides '{spec.name}' here: the packed file names '{spec.plugin}'")
    if "plugin" in out:
        out["plugin"] = spec.plugin
    for change in changes:
        warnings.warn(PackedMetadata(f"{printable(source)}: {change}."), stacklevel=3)
    return out
