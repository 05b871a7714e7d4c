"""Checkpoints: weights in safetensors, metadata as JSON in the safetensors header. Never pickle.

A decoder checkpoint is one ``.safetensors`` file; its header's ``featinv`` entry holds the JSON
metadata (representation name, params and plugin, layout, image size, decoder config, training
config, validation metrics, featinv version). Writes are atomic: a temporary file in the same
folder, then a rename, so an interrupted save leaves the previous file intact.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError

FORMAT = "featinv-decoder"
STATE_FORMAT = "featinv-train-state"
FORMAT_VERSION = 1
META_KEY = "featinv"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` through ``write(temporary_path)``, then rename it into place.

    An interrupted or failing write leaves any previous file intact. The file gets the usual
    permissions (``0666 & ~umask``), not ``mkstemp``'s 0600: results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` to ``path`` atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp,
                                                    metadata={META_KEY: json.dumps(meta)}))


def read_meta(path: str | Path, expected_format: str = FORMAT) -> dict[str, Any]:
    """The JSON metadata of a featinv file, checked for format; tensors are not read."""
    from safetensors import safe_open

    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(_not_safetensors(path, exc)) from None
    return _parse_meta(path, header, expected_format)


def load(path: str | Path, expected_format: str = FORMAT) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a featinv file; refuses anything that is not one."""
    meta = read_meta(path, expected_format)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights are unreadable ({exc}); the file may be "
                              "truncated. Re-download or re-train it.") from None
    return tensors, meta


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' not found. Train one with 'featinv train' "
                              "or pass the path of a .safetensors file.")
    return path


def _not_safetensors(path: Path, exc: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" or head == b"PK":
        return (f"{path}: looks like a pickled PyTorch file; featinv never unpickles files. "
                "Convert the weights to safetensors first.")
    return f"{path}: not a safetensors file ({exc})."


def _parse_meta(path: Path, header: dict[str, str], expected_format: str) -> dict[str, Any]:
    if META_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file without featinv metadata; it was not "
                              "written by featinv.")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt featinv metadata ({exc}).") from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: expected a {expected_format} file, found {got!r}.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer featinv (format "
                              f"{meta['format_version']}); upgrade featinv.")
    return meta
