"""Shipped decoders: those of the package (``featinv/zoo``, the built-in plugin
``featinv.zoo``) and of plugins, all through the ``featinv_shipped_decoders`` hook.

``pack`` turns a training checkpoint into a file fit for shipping or sharing: weights stored in
float16 (half the size; they are cast back to float32 on load), the training history and the
recipe (the command that trained it) in the JSON metadata. ``shipped`` lists what the package
holds, reading only the metadata. A packed file may take at most ``MAX_SHIPPED_BYTES`` (the
package ships it; pass ``max_bytes=None`` to share a larger one).
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..io import checkpoint
from ..errors import CheckpointError, FeatinvError, printable
from ..representation.registry import get_spec
from .load import extractor_for, load_decoder
from .pack_meta import portable_feature
from .probes import (decoder_statistics_fault, dependence_fault, own_features_output,
                     probe_features)

MAX_SHIPPED_BYTES = 8 * 1024 * 1024  # the largest decoder file the package ships


def pack(source: str | Path, out: str | Path, recipe: str | None = None,
         half: bool = True, notes: str | None = None, overwrite: bool = True,
         max_bytes: int | None = MAX_SHIPPED_BYTES) -> Path:
    """Write ``source`` (a decoder checkpoint, a training folder or a packed folder) as one
    shareable decoder file (``featinv.inversion.share.pack_folder`` writes a folder).

    The training history (per-epoch validation metrics) is taken from the ``train_state``
    file beside the checkpoint when there is one (a packed file keeps its own, and its
    recipe). The result loads like any checkpoint. ``out`` may never be the source (nor its
    training state); ``overwrite=False`` also refuses an existing ``out``. A file that would
    take more than ``max_bytes`` is refused before anything is written (``None``: no limit).
    """
    from ..io.outputs import check_targets

    from .meta_checks import MAX_NOTE
    from .sources import source_file

    for name, text in (("--recipe", recipe), ("notes", notes)):  # what loading then accepts
        if text is not None and len(text) > MAX_NOTE:
            raise FeatinvError(f"{name} of {len(text)} characters: at most {MAX_NOTE} are "
                               "stored; give the command that trained the decoder.")
    source = source_file(source)  # a run's or a packed folder: the decoder in it
    state = source.parent / checkpoint.STATE_FILE
    check_targets([out], [source, state], overwrite)
    held = [n for n in (checkpoint.DECODER_FILE, checkpoint.STATE_FILE)
            if (Path(out).parent / n).exists()]
    if held:  # -c on that folder would then have two decoders; --overwrite would replace its own
        raise CheckpointError(f"-o {printable(out)} is in a training run's folder ({held[0]}); a "
                              "packed decoder and a run never share a folder: write it elsewhere.")
    decoder = load_decoder(source)  # checks that the checkpoint is complete and consistent
    check_pictures(decoder, source)
    tensors, _ = checkpoint.load(source)
    meta = copy.deepcopy(decoder.meta)  # its metadata as checked on load: strict JSON
    meta["feature"] = portable_feature(meta["feature"], get_spec(meta["feature"]["name"]),
                                       meta["image_size"], source)  # no path, URL, forged plugin
    kept: list[str] = []
    if half:
        tensors, kept = to_half(tensors)
        check_same_output(decoder, tensors, source)
    before = meta.get("packed") if isinstance(meta.get("packed"), dict) else {}  # re-packed
    if state.is_file():  # its history, checked as --resume checks it: strict JSON numbers
        from ..io.state_checks import check_history

        state_meta = checkpoint.read_meta(state, checkpoint.STATE_FORMAT)
        history = check_history(state_meta.get("history", []), state_meta["step"], state,
                                advice="Pack a copy of the decoder file in a folder of its "
                                "own, without the training state.")
    else:
        history = before.get("history") or []
    meta["packed"] = {"dtype": "float16" if half else "float32",
                      **({"float32_tensors": kept} if kept else {}),
                      "recipe": recipe or before.get("recipe"),
                      "notes": notes or before.get("notes"), "history": history,
                      "parameters": sum(p.numel() for p in decoder.parameters())}
    meta.pop("progress", None)
    if meta.get("training"):
        meta["training"] = without_machine_paths(meta["training"])
    if max_bytes is not None:
        _check_size(tensors, meta, max_bytes, half)
    try:
        written = checkpoint.atomic_save(tensors, out, meta)
    except OSError as exc:
        raise CheckpointError(f"Cannot write {printable(out)} ({exc.strerror or exc}); check "
                              "that its folder is writable and has free space.") from None
    try:  # what was written loads (it is the file that ships)
        load_decoder(written)
    except CheckpointError as exc:
        written.unlink(missing_ok=True)
        raise CheckpointError(f"{printable(out)}: the packed file does not load ({exc}); it "
                              "was removed. Pack with --float32.") from None
    return written


FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504: beyond it float16 holds inf
# the largest difference packing may make to a decoder's pictures in [0, 1]: float16 weights
# move them by about 1e-3 (a 0-255 level is 4e-3)
PACK_TOLERANCE = 0.02


def to_half(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``tensors`` with each floating-point tensor in float16, except those beyond its range
    (a weight above 65504, a batch-norm variance of 1e5: inf in float16, an unloadable file),
    which stay float32; returns them and the names kept."""
    out, kept = {}, []
    for name, value in tensors.items():
        if value.is_floating_point() and value.dtype != torch.float16:
            if value.numel() and float(value.detach().abs().max()) > FP16_MAX:
                kept.append(name)
                out[name] = value.float()
                continue
            value = value.half()
        out[name] = value
    return out, sorted(kept)


def check_pictures(decoder, source) -> None:
    """Refuse to pack a decoder whose pictures of ``probes.probe_features`` (features like its
    training data's) are not finite or lie far outside [0, 1] (``output_checks.check_output``:
    invert would call it corrupt, so nobody may ship it), or are one and the same picture (it
    ignores its input), or whose feature statistics cannot be its representation's
    (``stored_statistics_fault``)."""
    from ..errors import DecoderOutputError
    from .output_checks import check_output

    out = own_features_output(decoder.float())
    try:
        check_output(out)
    except DecoderOutputError as exc:
        raise CheckpointError(f"{printable(source)}: not packed: {exc}") from None
    fault = dependence_fault(decoder, out) or stored_statistics_fault(decoder)
    if fault:
        raise CheckpointError(f"{printable(source)}: not packed: {fault}. Use an intact copy, "
                              "or train it again.")


def stored_statistics_fault(decoder) -> str | None:
    """``probes.decoder_statistics_fault`` of ``decoder`` with its representation, or None.
    When the representation cannot be built here (network weights not available offline) a
    warning says that the check was left out."""
    import warnings

    try:
        extractor = extractor_for(decoder)
    except FeatinvError as exc:
        warnings.warn(f"the decoder's feature statistics are not checked: its representation "
                      f"is not available here ({exc})", stacklevel=2)
        return None
    return decoder_statistics_fault(extractor.to(torch.device("cpu")), decoder)


def check_same_output(decoder, tensors: dict[str, torch.Tensor], source) -> None:
    """Refuse packing when the float16 weights change ``decoder``'s pictures by more than
    ``PACK_TOLERANCE`` (on ``probes.probe_features``)."""
    from ..io.checkpoint import ENCODER_PREFIX

    packed = copy.deepcopy(decoder).float()
    state = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()
             if not k.startswith(ENCODER_PREFIX)}
    packed.load_state_dict(state, strict=True)
    features = probe_features(decoder)
    with torch.no_grad():
        a = decoder.float()(features).clamp(0, 1)
        b = packed(features).clamp(0, 1)
    gap = float((a - b).abs().max()) if bool(torch.isfinite(b).all()) else math.inf
    if not gap <= PACK_TOLERANCE:
        raise CheckpointError(f"{printable(source)}: in float16 its weights would change the "
                              f"decoder's pictures by up to {gap:.3g} (more than "
                              f"{PACK_TOLERANCE}); pack it with --float32 (half=False).")


# the TrainConfig fields that name files or folders of the machine that trained
PATH_FIELDS = ("data", "val", "out", "feature_cache", "init_from", "comparator_weights")


def without_machine_paths(training: dict[str, Any]) -> dict[str, Any]:
    """A run's configuration with every file or folder reduced to its last name (``train``, not
    ``/home/me/photos/train``): the recipe stays readable, the trainer's machine is not shipped.
    Parameters that are paths (``weights``) are reduced the same way."""
    def short(value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1] if isinstance(value, str) else value

    out = {k: short(v) if k in PATH_FIELDS else v for k, v in training.items()}
    if isinstance(out.get("params"), dict):
        out["params"] = {k: short(v) for k, v in out["params"].items()}
    return out


def _check_size(tensors, meta: dict[str, Any], max_bytes: int, half: bool) -> None:
    from ..io.tensor_files import file_size

    size = file_size(tensors, {checkpoint.META_KEY: json.dumps(meta)})  # as atomic_save writes
    if size > max_bytes:
        hint = "" if half else "pack it in float16 (half the size), "
        raise CheckpointError(
            f"The packed decoder would take {size / 2**20:.1f} MiB, more than the "
            f"{max_bytes / 2**20:.1f} MiB a shipped decoder may take; {hint}train a smaller "
            "preset or width, or lift the limit to share it anyway (--no-size-limit, "
            "max_bytes=None).")


def describe(path: str | Path) -> dict[str, Any]:
    """Name, size, decoder, validation metrics and the network weights it was trained against
    (``weights``: the representation's ``weights`` parameter; None without one) of a decoder
    file (metadata only; ``featinv.inversion.zoo.describe_meta``)."""
    from .zoo import describe_meta

    return describe_meta(checkpoint.read_meta(path), Path(path))


def shipped() -> list[dict[str, Any]]:
    """One ``describe`` entry per decoder the plugins ship (``featinv_shipped_decoders``; the
    built-in zoo is the plugin ``featinv.zoo``), by feature and variant, each with its variant
    (under the key ``decoder``), ``plugin`` and ``description``. A file that cannot be
    described, a ``(feature, variant)`` shipped twice and a plugin whose hook failed are entries with an
    ``error`` (listed after the others)."""
    from ..representation.plugins import shipped_decoders

    found = shipped_decoders()
    out, bad = [], []
    for (feature, variant), entry in sorted(found.entries.items()):
        info = {"decoder": variant, "plugin": entry.plugin, "description": entry.description}
        try:
            described = describe(entry.file)
            if described["feature"] != feature:
                raise CheckpointError(f"{printable(entry.file)} is a decoder for "
                                      f"'{described['feature']}', shipped as one for '{feature}'.")
            out.append({**described, "feature": feature, **info})
        except (CheckpointError, KeyError, TypeError, OSError) as exc:  # a damaged install
            message = str(exc) if isinstance(exc, CheckpointError) else \
                f"{printable(entry.file)}: not a featinv decoder ({type(exc).__name__}: {exc})"
            bad.append({"feature": feature, "file": str(entry.file), **info, "error": message})
    for (feature, variant), message in sorted(found.broken.items()):
        bad.append({"feature": feature, "decoder": variant, "plugin": None, "error": message})
    for plugin, message in found.problems.items():
        bad.append({"feature": "", "decoder": "", "plugin": plugin,
                    "error": f"plugin '{plugin}': {message}"})
    return out + bad
