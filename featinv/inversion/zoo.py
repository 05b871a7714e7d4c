"""The built-in zoo: the decoders in ``featinv/zoo``, shipped through the
``featinv_shipped_decoders`` hook like any plugin's (plugin name ``featinv.zoo``).

File names: ``NAME.safetensors`` is the default decoder of representation ``NAME``;
``NAME.VARIANT.safetensors`` (e.g. ``hog.realistic.safetensors``) is its decoder ``VARIANT``.
Names may hold dots themselves (``alexnet.conv1``), so the representation is read from the
file's metadata (its header only); a damaged file is listed under its file name, and
``featinv zoo`` reports the damage.

``hub_cached`` lists the featinv decoders in the Hugging Face cache for ``featinv zoo``, and
``describe_meta`` the row of one decoder: both from JSON headers only, without PyTorch.
"""
from __future__ import annotations

import json
from math import inf
from pathlib import Path
from typing import Any

from ..representation.hookspecs import DEFAULT_VARIANT, ShippedDecoder, hookimpl

ZOO_DIR = Path(__file__).parent.parent / "zoo"


def zoo_entry(path: Path) -> ShippedDecoder:
    """The ``ShippedDecoder`` a file of the zoo stands for, by the convention above."""
    from ..errors import FeatinvError
    from ..io.checkpoint import read_meta

    stem = path.name[: -len(".safetensors")]
    try:
        meta = read_meta(path)
        feature = str(meta["feature"]["name"]).lower()
    except (FeatinvError, KeyError, TypeError):
        meta, feature = {}, stem  # damaged: listed, and refused when described or loaded
    if stem.startswith(feature + "."):
        try:
            return ShippedDecoder(feature, path, stem[len(feature) + 1:], _losses(meta))
        except ValueError:  # not a decoder name: listed under the file name
            pass
    return ShippedDecoder(stem, path, DEFAULT_VARIANT)


@hookimpl
def featinv_shipped_decoders() -> list[ShippedDecoder]:
    return [zoo_entry(path) for path in sorted(ZOO_DIR.glob("*.safetensors"))]


def _losses(meta: dict) -> str:
    """"losses pixel,feature=0.1 (comparator NAME)" for a decoder trained with more than the
    pixel loss; "" otherwise."""
    training = meta.get("training")
    if not isinstance(training, dict) or training.get("loss", "pixel") in ("pixel", None):
        return ""
    comparator = training.get("comparator")
    return f"losses {training['loss']}" + (f" (comparator {comparator})" if comparator else "")


def images_seen(record: dict[str, Any], batch_size: int | None) -> int | None:
    """Training images seen at a history ``record``: its ``images_seen``, or ``step x
    batch_size`` for runs that logged steps only; None when neither is known."""
    seen = record.get("images_seen")
    if seen is None and isinstance(record.get("step"), int) and batch_size:
        seen = record["step"] * batch_size
    return seen


# ``describe_meta``'s numbers and texts: a value of another type (NaN, a string where a number
# belongs, from a damaged or foreign file) is shown as unknown (None), not passed on to break
# the table or to put NaN into 'zoo --json'
ZOO_NUMBERS = ("megabytes", "width", "parameters", "image_size", "train_images", "epochs",
               "images_seen", "val_normalized_error", "val_psnr", "val_ssim", "val_images")
ZOO_TEXTS = ("preset", "train_data", "recipe")


def _number(value):
    """``value`` if it is a finite int or float (not a bool), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if ok and (isinstance(value, int) or value == value and abs(value) != inf) \
        else None


def clean_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with ``ZOO_NUMBERS`` that are no finite numbers and ``ZOO_TEXTS`` that are no
    strings set to None."""
    return {**entry, **{k: _number(entry.get(k)) for k in ZOO_NUMBERS if k in entry},
            **{k: entry[k] if isinstance(entry.get(k), str) else None
               for k in ZOO_TEXTS if k in entry}}


def describe_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """Name, size, decoder, validation metrics and network weights (``weights``: the
    representation's ``weights`` parameter; None without one) of the decoder file ``path`` whose
    metadata is ``meta`` (``featinv zoo``'s row; ``KeyError``/``TypeError`` when incomplete)."""
    training = meta.get("training") or {}
    packed = meta.get("packed") or {}
    history = packed.get("history") or []
    metrics = meta.get("metrics") or (history[-1] if history else {})
    seen = images_seen(history[-1], training.get("batch_size")) if history else None
    return clean_entry({"feature": meta["feature"]["name"], "file": str(path),
            "megabytes": round(path.stat().st_size / 1e6, 2),
            "preset": meta["decoder"].get("preset"), "width": meta["decoder"].get("width"),
            "parameters": packed.get("parameters"), "image_size": meta.get("image_size"),
            "train_data": training.get("data"), "train_images": training.get("limit"),
            "epochs": training.get("epochs"), "images_seen": seen,
            "val_normalized_error": metrics.get("val_normalized_error"),
            "val_psnr": metrics.get("val_psnr"), "val_ssim": metrics.get("val_ssim"),
            "val_images": metrics.get("val_n_images"), "recipe": packed.get("recipe"),
            "weights": (meta["feature"].get("params") or {}).get("weights")})


def hub_cached() -> list[dict]:
    """``featinv zoo``'s entries for the featinv decoders in the Hugging Face cache (those whose
    ``config.json`` says ``library_name: featinv``), one per cached branch or tag:
    ``describe_meta``'s fields, ``decoder`` the ``hf-hub:`` reference to load it by, ``plugin``
    ``"hf-hub cache"``; a damaged one is an entry with an ``error``. Nothing is downloaded."""
    from ..errors import printable
    from ..io import hub

    out = []
    for ref, snapshot in hub.cached_refs():
        config = _read_json(snapshot / hub.CONFIG_FILE)
        if config.get("library_name") != "featinv":
            continue  # another library's model
        info = {"decoder": str(ref), "plugin": "hf-hub cache",
                "description": f"cached from the Hub: -c {ref}"}
        model = snapshot / hub.MODEL_FILE
        try:
            out.append({**describe_meta(_header_meta(model), model), **info})
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            feature = config.get("feature")
            out.append({"feature": str(feature.get("name", "")) if isinstance(feature, dict)
                        else "", "file": str(model), **info,
                        "error": printable(f"{ref}: not a readable featinv decoder "
                                           f"({type(exc).__name__}: {exc}); delete it from the "
                                           "cache and load it again.")})
    return out


def _header_meta(path: Path) -> dict[str, Any]:
    """The featinv metadata in a safetensors header (no tensor read, no PyTorch)."""
    from ..io.archives import check_safetensors_header, read_safetensors_header

    check_safetensors_header(path, ValueError)
    try:  # parsed by hand: safetensors cannot open a path that is not UTF-8
        meta = json.loads(read_safetensors_header(path)[1]["featinv"])
    except RecursionError:
        raise ValueError("metadata nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != "featinv-decoder":
        raise ValueError("not a featinv-decoder file")
    return meta


def _read_json(path: Path) -> dict:
    """A small JSON file (at most 1 MiB) as a dict; {} for anything unreadable or not a file."""
    try:
        if not path.is_file():
            return {}
        with open(path, "rb") as f:
            data = json.loads(f.read(1 << 20))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
