"""The metadata a decoder file carries beside what it is built from (issue 24, round 9): each
field is what featinv writes, or the file is refused in one line naming the field.

``inversion.load`` checks the fields a decoder is built from (feature, layout, decoder,
image_size); these are the others, which ``invert`` shows, ``zoo`` lists and ``pack`` copies
into every file it ships: a representation's input and plugin, the decoder family, the
training progress, the validation metrics and a packed file's history. A NaN there became a
bare ``NaN`` in a shipped file's JSON header; a family no builder knows, or ``progress.step``
of -5, was copied as it was.

Entries featinv does not write (``KNOWN``) may come from a newer version and pass, when they
are small (``MAX_UNKNOWN``): 3 MB of text under ``training`` was copied into every file and
``config.json`` that ``pack`` wrote (round 12, D10).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, printable
from ..io.state_checks import MAX_COUNT, check_history, shown
from .recipe_checks import RULES, check_training

ADVICE = "Use an intact copy, or train it again."
PLUGIN_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,200}\Z")  # a Python distribution or module name
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
VERSION = re.compile(r"[0-9][0-9A-Za-z.+!_-]{0,39}\Z")  # PEP 440, local labels included
PACKED_DTYPES = ("float16", "float32")
# the settings of the recipe a decoder file shows that are plain numbers (others take several forms)
TRAINING_NUMBERS = ("lr", "width", "batch_size", "image_size", "epochs", "budget")
# the entries featinv writes in each section of a decoder file's metadata ("": the top level;
# ``checkpoint.decoder_metadata``, train's sections, pack's ``packed``)
KNOWN: dict[str, frozenset[str]] = {
    "": frozenset({"format", "format_version", "featinv_version", "feature", "layout",
                   "image_size", "decoder", "training", "metrics", "progress", "encoder",
                   "packed"}),
    "feature": frozenset({"name", "params", "plugin", "input", "weights_sha256"}),
    "decoder": frozenset({"preset", "width", "image_size", "family", "builder", "layout"}),
    "training": frozenset(RULES),
    "progress": frozenset({"step", "total_steps", "world_size", "checkpoint"}),
    "packed": frozenset({"dtype", "float32_tensors", "recipe", "notes", "history",
                         "parameters"}),
}
# Characters of JSON that the entries featinv does not know may take in all, and that a metrics
# record may take: a newer version's settings are short (the longest featinv writes, paths, at
# most 4096 characters), and a record of metrics takes some 300.
MAX_UNKNOWN = 16384
# characters of the recipe and notes pack stores (a command line, with a remark), copied into
# every file packed from it, its config.json and model card
MAX_NOTE = 65536


def check_info(path: str | Path, meta: dict[str, Any], spec, family: str | None) -> dict[str, Any]:
    """``meta`` with its informative fields checked against representation ``spec`` and the
    ``family`` of the network its description builds now; a metrics record's or packed
    history's infinite PSNR (earlier versions, identical images) becomes null, and no other
    number may be NaN or infinite, so that what ``pack`` copies is strict JSON. Absent fields
    pass (files of earlier versions)."""
    def refuse(field: str, value: Any, wanted: str) -> CheckpointError:
        return CheckpointError(f"{printable(path)}: its metadata '{field}' is "
                               f"{shown(value, 60)}, not {wanted}; featinv never "
                               f"writes that, so the file was altered or damaged. {ADVICE}")

    check_sizes(meta, refuse)
    feature = meta["feature"]
    if "input" in feature and feature["input"] != spec.input:
        raise refuse("feature.input", feature["input"], f"'{spec.input}' (the images "
                     f"'{spec.name}' takes)")
    plugin = feature.get("plugin")
    if plugin is not None and not (isinstance(plugin, str) and PLUGIN_NAME.match(plugin)):
        raise refuse("feature.plugin", plugin, "a plugin's name")
    digest = feature.get("weights_sha256")
    if digest is not None and not (isinstance(digest, str) and SHA256.match(digest)):
        raise refuse("feature.weights_sha256", digest, "a SHA-256 in hexadecimal")
    if "family" in meta["decoder"] and meta["decoder"]["family"] != family:
        raise refuse("decoder.family", meta["decoder"]["family"],
                     f"{family!r} (the network its settings build)")
    version = meta.get("featinv_version")
    if version is not None and not (isinstance(version, str) and VERSION.match(version)):
        raise refuse("featinv_version", version, "a version number")
    if "image_size" in meta["decoder"] and meta["decoder"]["image_size"] != meta["image_size"]:
        raise refuse("image_size", meta["image_size"], f"{meta['decoder']['image_size']!r:.20} "
                     "(the size its decoder description makes)")
    if "layout" in meta["decoder"] and meta["decoder"]["layout"] != meta["layout"]:
        raise refuse("decoder.layout", meta["decoder"]["layout"], f"{meta['layout']!r} (the "
                     "file's layout)")
    encoder = meta.get("encoder")
    if encoder is not None and encoder != {"finetuned": True}:
        raise refuse("encoder", encoder, "{'finetuned': True}")
    progress = meta.get("progress")
    if progress is not None:
        if not isinstance(progress, dict):
            raise refuse("progress", progress, "an object")
        for key in ("step", "total_steps", "world_size"):
            value = progress.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= MAX_COUNT:
                raise refuse(f"progress.{key}", value, "a whole number from 0")
        if progress.get("total_steps", MAX_COUNT) < progress.get("step", 0):
            raise refuse("progress.total_steps", progress["total_steps"],
                         f"at least progress.step ({progress['step']})")
        ident = progress.get("checkpoint")
        if ident is not None and not (isinstance(ident, str) and len(ident) <= 64):
            raise refuse("progress.checkpoint", ident, "a checkpoint id")
    training = meta.get("training")
    training = {} if training is None else training
    if not isinstance(training, dict):
        raise refuse("training", training, "an object")
    for key in TRAINING_NUMBERS:
        value = training.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0):
            raise refuse(f"training.{key}", value, "a number from 0")
    check_training(training, meta["decoder"], refuse)
    if training.get("feature") is not None \
            and str(training["feature"]).lower() != feature["name"]:
        raise refuse("training.feature", training["feature"], f"'{feature['name']}' (the "
                     "representation it decodes)")
    out = dict(meta)
    if meta.get("metrics") is not None:
        [out["metrics"]] = check_history([meta["metrics"]], MAX_COUNT, path, ADVICE,
                                         "decoder file", "its metadata 'metrics'")
    packed = meta.get("packed")
    if packed is not None:
        if not isinstance(packed, dict):
            raise refuse("packed", packed, "an object")
        out["packed"] = _check_packed(path, packed, refuse)
    _check_finite_numbers(out, refuse)  # metrics and history cleaned: no Infinity left
    return out


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False))


def check_sizes(meta: dict[str, Any], refuse) -> None:
    """Refuse entries of ``meta`` that no section of this version knows (``KNOWN``) taking more
    than ``MAX_UNKNOWN`` characters of JSON together (naming the largest), and a metrics
    record larger than that."""
    unknown = [(f"{section}.{key}" if section else key, value, _json_size({key: value}))
               for section, known in KNOWN.items()
               for part in [meta.get(section) if section else meta] if isinstance(part, dict)
               for key, value in part.items() if key not in known]
    total = sum(size for _, _, size in unknown)
    if total > MAX_UNKNOWN:
        field, value, _ = max(unknown, key=lambda entry: entry[2])
        raise refuse(field, value, "an entry this version knows; those it does not (a newer "
                     f"version's) may take {MAX_UNKNOWN} characters of JSON in all, and these "
                     f"take {total}")
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and _json_size(metrics) > MAX_UNKNOWN:
        raise refuse("metrics", metrics, f"a record of at most {MAX_UNKNOWN} characters of "
                     f"JSON (it takes {_json_size(metrics)})")


def _check_packed(path, packed: dict[str, Any], refuse) -> dict[str, Any]:
    """What ``pack`` wrote: the dtype, the tensors kept in float32, the recipe and notes (text),
    the number of parameters and the training history (records as a state's)."""
    if packed.get("dtype", "float16") not in PACKED_DTYPES:
        raise refuse("packed.dtype", packed["dtype"], "float16 or float32")
    kept = packed.get("float32_tensors", [])
    if not (isinstance(kept, list) and all(isinstance(k, str) for k in kept)):
        raise refuse("packed.float32_tensors", kept, "a list of tensor names")
    for key in ("recipe", "notes"):
        if packed.get(key) is not None and not isinstance(packed[key], str):
            raise refuse(f"packed.{key}", packed[key], "text")
        if len(packed.get(key) or "") > MAX_NOTE:
            raise refuse(f"packed.{key}", packed[key], f"text of at most {MAX_NOTE} characters "
                         f"(it has {len(packed[key])})")
    count = packed.get("parameters", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise refuse("packed.parameters", count, "a whole number from 0")
    history = packed.get("history") or []
    return {**packed, "history": check_history(history, MAX_COUNT, path, ADVICE, "decoder file",
                                               "its metadata 'packed.history' record {}")}


def _check_finite_numbers(meta: dict[str, Any], refuse) -> None:
    """Refuse a NaN or infinite number anywhere in ``meta``, or a whole number beyond 2**64
    (10**400 is no number most JSON readers hold: infinity to JavaScript); walked without
    recursion, as the JSON may nest deeply."""
    stack: list[tuple[str, Any]] = [("", meta)]
    while stack:
        field, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise refuse(field, value, "a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**64:
            raise refuse(field, value, "a whole number of at most 20 digits")
        if isinstance(value, dict):
            stack += [(f"{field}.{k}" if field else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{field}[{i}]", v) for i, v in enumerate(value)]
