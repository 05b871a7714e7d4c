"""The checkpoint format, in one place: weights in safetensors, metadata as JSON. Never pickle.

Two kinds of file, both ``.safetensors`` whose header's ``featinv`` entry holds JSON metadata:

- a **decoder** (``format: featinv-decoder``): the decoder's weights under their own names, a
  fine-tuned encoder's under ``encoder.``; metadata: representation (name, params, plugin, input),
  layout, image size, decoder config, and sections such as ``training``, ``metrics``,
  ``progress`` (see ``decoder_metadata``). This is what ``invert`` loads.
- a **training state** (``format: featinv-train-state``): everything ``--resume`` needs. Tensors
  are prefixed by what they belong to (``STATE_PREFIXES``: ``decoder.``, ``encoder.``, ``ema.``,
  ``discriminator.``, and ``opt.<param>.<key>`` / ``disc_opt.<param>.<key>`` for the Adams'
  state); metadata: step, history, the run's config and the optimizers' param groups.

A training run's folder holds ``DECODER_FILE``, ``STATE_FILE`` and ``METRICS_FILE`` (one JSON
record per epoch). The decoder and the state of one checkpoint carry the same id
(``CHECKPOINT_KEY``: the decoder's under ``progress``, the state's at the top), so that a pair
from two checkpoints (a run killed between the two renames) is recognised.

Writes are atomic: a temporary file in the same folder, then a rename, so an interrupted save
leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError

from ..errors import CheckpointError, printable
from ..limits import MEMORY_ENV, allocation_failure, budget_words, memory_budget
from .archives import Entry
from .file_types import kernel_file, what_it_is
from .files import atomic_write, file_kind  # noqa: F401 (atomic_write: public here too)
from .optimizer_state import OPTIMIZER_PREFIX, load_optimizer, optimizer_tensors  # noqa: F401
from .state_checks import check_state_meta
from .tensor_files import DTYPE_CODES, load_file, save_file
from .weight_checks import check_magnitudes, stored_type_error

FORMAT = "featinv-decoder"
STATE_FORMAT = "featinv-train-state"
FORMAT_VERSION = 1
META_KEY = "featinv"
# the files of a training run's folder (``featinv train --out``), in the order RunFolder wants
DECODER_FILE = "decoder.safetensors"
STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"
RUN_FILES = (DECODER_FILE, STATE_FILE, METRICS_FILE)
REPLACED_DIR = ".featinv-replaced"  # a replaced run, until its replacement has a checkpoint
CHECKPOINT_KEY = "checkpoint"  # the id a checkpoint's decoder (under progress) and state share
ENCODER_PREFIX = "encoder."  # a fine-tuned encoder's tensors in a decoder file
# Training-state tensor prefixes (every state ever written uses them): each module's weights,
# then each optimizer's state. The decoder's optimizer keeps its param groups in the metadata's
# ``param_groups``, the others' are under ``optimizer_groups`` by prefix.
STATE_PREFIXES = {"decoder": "decoder.", "encoder": ENCODER_PREFIX, "ema": "ema.",
                  "discriminator": "discriminator.", "opt": OPTIMIZER_PREFIX,
                  "disc_opt": "disc_opt."}


def atomic_save(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` to ``path`` atomically (``tensor_files.save_file``:
    any path, each tensor's bytes made while it is written, not a copy of them all first)."""

    def write(tmp):
        try:
            save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)})
        except SafetensorError as exc:  # a full disk or file-size limit, as an OSError
            if "I/O error" not in str(exc):
                raise
            found = re.search(r"(?:os error|code:) (\d+)", str(exc))
            raise (OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found
                   else OSError(printable(str(exc))[:200])) from None
    return atomic_write(path, write)


def holds_prefix(path: str | Path, prefix: str) -> bool:
    """Whether the safetensors file ``path`` holds a tensor whose name starts with ``prefix``
    (read from its header, no tensor loaded)."""
    return any(name.startswith(prefix) for name in read_header(path, None)[1])


def read_meta(path: str | Path, expected_format: str = FORMAT) -> dict[str, Any]:
    """The JSON metadata of a featinv file, checked for format; tensors are not read."""
    return read_header(path, expected_format)[0]


def read_header(path: str | Path, expected_format: str | None = FORMAT
                ) -> tuple[dict[str, Any], dict[str, Entry]]:
    """The JSON metadata (checked for format unless ``expected_format`` is None) and each
    tensor's shape and dtype (name -> ``Entry``) of a featinv file, from its header alone."""
    from .archives import SizeMismatch, check_safetensors_header, read_safetensors_header

    if Path(path).is_dir():
        raise CheckpointError(f"'{printable(path)}' is a folder, not a checkpoint; pass the "
                              ".safetensors file in it (a training run's is OUT/decoder.safetensors).")
    path = _existing(path)
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{printable(path)}: cannot read file (Permission denied); fix its "
                              "permissions.")
    check_safetensors_header(path, CheckpointError)  # a 90 MB header costs 200 MB to parse
    try:
        entries, header = read_safetensors_header(path)
    except SizeMismatch as exc:
        raise CheckpointError(f"{printable(path)}: weights are unreadable ({exc}); the file may "
                              "be truncated. Re-download or re-train it.") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(_not_safetensors(path, exc)) from None
    meta = {} if expected_format is None else _parse_meta(path, header, expected_format)
    return meta, entries


def load(path: str | Path, expected_format: str = FORMAT,
         check: Callable[[dict[str, Entry]], None] | None = None
         ) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a featinv file; refuses anything that is not one. ``check`` sees
    the tensors' names, shapes and dtypes (from the header) first and raises to refuse them;
    nothing is read before it and the memory budget have passed."""
    meta, entries = read_header(path, expected_format)
    if check is not None:
        check(entries)
    total = sum(e.nbytes for e in entries.values())
    if total > memory_budget():
        raise CheckpointError(f"{printable(path)}: its tensors take {total / 1e6:,.0f} MB once "
                              f"read, over featinv's memory budget ({budget_words()}); raise "
                              f"${MEMORY_ENV} if the file is right (a featinv decoder needs "
                              "some MB, no GB).")
    try:
        tensors = load_file(path)
    except (MemoryError, RuntimeError) as exc:  # an address-space limit (ulimit -v) below
        if not allocation_failure(exc):           # what the budget allows
            raise CheckpointError(f"{printable(path)}: weights are unreadable "
                                  f"({printable(exc)[:200]}); the file may be truncated. "
                                  "Re-download or re-train it.") from None
        raise CheckpointError(f"{printable(path)}: its tensors take {total / 1e9:.1f} GB, more "
                              "than this process may allocate (ulimit -v or a container's "
                              "limit); raise the limit or use a smaller file.") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{printable(path)}: weights are unreadable "
                              f"({printable(exc)[:200]}); the file may be truncated. "
                              "Re-download or re-train it.") from None
    return tensors, meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file() and path.exists():  # a FIFO would block, /dev/zero never end
        raise CheckpointError(f"{printable(path)}: {file_kind(path.stat().st_mode)}, not a "
                              "checkpoint file; featinv reads only regular files.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' not found. Train one with 'featinv train' "
                              "or pass the path of a .safetensors file.")
    if kernel_file(path):  # sized 0 and generated as read (/proc/kmsg blocks)
        raise CheckpointError(f"{printable(path)}: a file of the kernel ({kernel_file(path)}), "
                              "not a checkpoint file; featinv reads only regular files.")
    return path


def _not_safetensors(path: Path, exc: Exception) -> str:
    if path.stat().st_size == 0:
        return f"{printable(path)}: empty file (0 bytes), not a checkpoint."
    what = what_it_is(path)
    return f"{path}: {what}" if what else f"{path}: not a safetensors file ({exc})."


def _parse_meta(path: Path, header: dict[str, str], expected_format: str) -> dict[str, Any]:
    if META_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file without featinv metadata; it was not "
                              "written by featinv.")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt featinv metadata ({exc}).") from None
    except RecursionError:  # JSON nested thousands of levels deep
        raise CheckpointError(f"{path}: corrupt featinv metadata (nested too deeply); use an "
                              "intact copy.") from None
    if _depth(meta) > MAX_META_DEPTH:  # copying or printing it would recurse that deep
        raise CheckpointError(f"{path}: corrupt featinv metadata (nested too deeply: more than "
                              f"{MAX_META_DEPTH} levels); use an intact copy.")
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        advice = (" (a training run's state); pass the run folder or its decoder.safetensors "
                  "instead." if got == STATE_FORMAT and expected_format == FORMAT
                  else ".")
        raise CheckpointError(f"{path}: expected a {expected_format} file, found {got!r}{advice}")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise CheckpointError(f"{path}: incomplete featinv metadata (missing or invalid "
                              f"format_version {version!r:.40}); use an intact copy.")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer featinv (format "
                              f"{meta['format_version']}); upgrade featinv.")
    if expected_format == STATE_FORMAT:
        check_state_meta(path, meta)
    return meta


MAX_META_DEPTH = 32  # featinv writes 5 levels; Python's copy and json recurse per level


def _depth(value: Any) -> int:
    """How deeply ``value`` (parsed JSON) nests lists and objects, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack += [(v, level + 1) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


# -- decoders ---------------------------------------------------------------------------------

def weights_fingerprint(module: torch.nn.Module | None) -> str | None:
    """sha256 of a module's floating-point state (shapes and float32 values, in the order of
    the sorted state-dict names): which network weights a representation computes its features
    with, whatever they were called. ``None`` for a module without any (HOG, LBP, SIFT)."""
    import hashlib

    state = module.state_dict() if module is not None else {}
    tensors = [state[k] for k in sorted(state) if state[k].is_floating_point()]
    if not tensors:
        return None
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(repr(tuple(t.shape)).encode())
        digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def decoder_metadata(extractor, decoder, **sections: Any) -> dict[str, Any]:
    """The JSON metadata stored with a decoder's weights; ``sections`` (``training``,
    ``metrics``, ``progress``, ...) are added as they are. ``feature.weights_sha256`` is the
    ``weights_fingerprint`` of the representation's module (the weights its features came
    from; ``feature.params.weights`` names them), absent for representations without weights."""
    from ..version import __version__

    feature = {"name": extractor.name, "params": extractor.params,
               "plugin": extractor.spec.plugin, "input": extractor.spec.input}
    fingerprint = weights_fingerprint(getattr(extractor, "module", None))
    if fingerprint is not None:
        feature["weights_sha256"] = fingerprint
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "featinv_version": __version__,
            "feature": feature,
            "layout": decoder.layout.to_json(), "image_size": decoder.config["image_size"],
            "decoder": decoder.config, **sections}


def save_decoder(decoder: torch.nn.Module, path: str | Path, meta: dict[str, Any],
                 encoder: torch.nn.Module | None = None) -> Path:
    """Write the decoder's weights with ``meta`` (see ``decoder_metadata``), atomically.

    ``encoder``: a fine-tuned representation module, stored as ``encoder.*`` tensors; inversion
    then computes features with it instead of the representation's own weights.
    """
    tensors = dict(decoder.state_dict())
    if encoder is not None:
        tensors.update({f"{ENCODER_PREFIX}{k}": v for k, v in encoder.state_dict().items()})
        meta = {**meta, "encoder": {"finetuned": True}}
    return atomic_save(tensors, path, meta)


# -- training state ---------------------------------------------------------------------------

def module_prefix(name: str) -> str:
    """The tensor prefix of module ``name`` in a training state (``STATE_PREFIXES``; a name it
    does not list is stored under ``<name>.``)."""
    return STATE_PREFIXES.get(name, f"{name}.")


def save_train_state(path: str | Path, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer], meta: dict[str, Any]) -> Path:
    """Write a training state: each module's weights under its prefix (``module_prefix``), each
    optimizer's state under its prefix (``OPTIMIZER_PREFIX`` for the decoder's), ``meta`` (step,
    history, config) as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    groups = {}
    for name, module in modules.items():
        prefix = module_prefix(name)
        tensors.update({f"{prefix}{k}": v for k, v in module.state_dict().items()})
    for prefix, opt in optimizers.items():
        opt_tensors, groups[prefix] = optimizer_tensors(opt, prefix)
        tensors.update(opt_tensors)
    full = {"format": STATE_FORMAT, "format_version": FORMAT_VERSION, **meta,
            "param_groups": groups.get(OPTIMIZER_PREFIX, []),
            "optimizer_groups": {p: g for p, g in groups.items() if p != OPTIMIZER_PREFIX}}
    return atomic_save(tensors, path, full)


def _check_state_entries(path, entries: dict[str, Entry], modules: dict[str, torch.nn.Module],
                         optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Refuse a training state holding tensors this run has not (from its header, before any
    is read): a module's must be in its state dict with that shape, an optimizer's
    ``<prefix><param>.<key>`` shaped like that parameter or a scalar; any other must carry a
    prefix training writes (a part this run does not resume, e.g. ``ema.`` without --ema). The
    tensors this run loads must be of the type training writes them in (a module's own; Adam's
    moments their parameter's, its step count float32): any other was cast on load."""
    module_tensors = {f"{module_prefix(n)}{k}": v
                      for n, m in modules.items() for k, v in m.state_dict().items()}
    module_prefixes = tuple(module_prefix(n) for n in modules)
    params = {prefix: [p for group in opt.param_groups for p in group["params"]]
              for prefix, opt in optimizers.items()}
    for name, entry in entries.items():
        shape, code = tuple(entry.shape), None  # code: the dtype training writes it in
        opt = next((p for p in params if name.startswith(p)), None)
        if name in module_tensors:
            ok = shape == tuple(module_tensors[name].shape)
            code = DTYPE_CODES.get(module_tensors[name].dtype)
        elif name.startswith(module_prefixes):
            ok = False
        elif opt is not None:
            pid, _, key = name[len(opt):].partition(".")
            ok = pid.isdecimal() and int(pid) < len(params[opt]) and \
                shape in (tuple(params[opt][int(pid)].shape), ())
            # Adam's step count is a float32 scalar, its moments are of their parameter's type
            code = "F32" if key == "step" else \
                DTYPE_CODES.get(params[opt][int(pid)].dtype) if ok else None
        else:
            ok = name.startswith(tuple(STATE_PREFIXES.values()))
        if not ok:
            raise CheckpointError(f"{printable(path)}: holds a tensor this run does not have "
                                  f"({printable(name)[:80]} of shape {list(shape)[:6]}); the "
                                  "training state was altered. Start a new run (--overwrite).")
        if code is not None and entry.code != code:
            raise stored_type_error(path, name, entry.code, (code,), "training state",
                                    "Start a new run (--overwrite).")


def load_train_state(path: str | Path, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer],
                     updated: Collection[torch.Tensor] = ()) -> dict[str, Any]:
    """Load what ``save_train_state`` wrote into ``modules`` and ``optimizers``; returns the
    metadata. Mismatching weights are a ``CheckpointError``, and so is a state without Adam's
    moments for a parameter of ``updated`` (those every training step updates) after a step;
    ``optimizer_state.load_optimizer`` has the rules."""
    tensors, meta = load(path, STATE_FORMAT,
                         check=lambda entries: _check_state_entries(path, entries, modules,
                                                                    optimizers))
    bad = [k for k, v in tensors.items() if v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{path}: the training state holds NaN or infinite values (e.g. "
                              f"{bad[0]}); training never saves such a state. Start a new run "
                              "(--overwrite).")
    for name, module in modules.items():
        prefix = module_prefix(name)
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        check_magnitudes(path, {prefix + k: v for k, v in weights.items()},
                         {prefix + k for k, _ in module.named_parameters()},
                         advice="Start a new run (--overwrite), or restore the state from a "
                         "backup.")
        try:
            module.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the stored {name} does not fit this run "
                                  f"({str(exc).strip().splitlines()[0]}).") from None
    extra = meta.get("optimizer_groups") or {}
    # fp16 training skips the steps whose gradients overflow (GradScaler): its first steps may
    # have updated nothing; auto was resolved before it was stored (earlier versions: unknown)
    skips = (meta.get("config") or {}).get("precision") not in ("fp32", "bf16")
    for prefix, opt in optimizers.items():
        groups = meta.get("param_groups") if prefix == OPTIMIZER_PREFIX else extra.get(prefix)
        if groups is None and prefix == OPTIMIZER_PREFIX:
            raise CheckpointError(f"{path}: its metadata has no 'param_groups' (the "
                                  "optimizer's settings); the training state was altered or "
                                  "damaged. Start a new run (--overwrite), or restore the state "
                                  "from a backup.")
        if groups is None:
            raise CheckpointError(f"{path}: no optimizer state for '{prefix}'; it was saved by "
                                  "a run with other losses. Start a new run.")
        try:
            load_optimizer(opt, tensors, groups, prefix, int(meta["step"]), updated, skips)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: the optimizer state does not fit this run "
                                  f"({exc}). Start a new run (--overwrite), or restore the "
                                  "state from a backup.") from None
    return meta
