"""``.safetensors`` files written and read by featinv, at any path and without copying the
tensors all at once (issue 24, round 11: E4 and E6).

safetensors' own functions take the path as UTF-8 text: a run folder named ``tr\\xff`` (any
name whose bytes are not UTF-8, which POSIX allows) was written by ``train`` and then read by
nothing, every reader blaming truncation. ``save_file`` here writes through a Python file
object, so any path the OS accepts works; ``load_file`` hands such a path's bytes to
safetensors. ``save_file`` also turns each tensor into the contiguous CPU bytes the format
stores one at a time, while it writes (a channels-last decoder's weights and Adam's moments are
not contiguous), instead of a copy of the whole state first: an out-of-memory failure in the
last save of a finished run lost the run.

``DTYPE_CODES`` names each torch dtype as a safetensors header does (``F32``, ``I64``, ...),
for the checks that refuse tensors of types featinv never writes.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Mapping

import torch

DTYPE_CODES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
    **{getattr(torch, name): code for name, code in (
        ("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
        ("uint32", "U32"), ("uint64", "U64")) if hasattr(torch, name)}}
# the names of the codes in messages (torch's words)
TYPE_NAMES = {code: str(dtype).removeprefix("torch.") for dtype, code in DTYPE_CODES.items()}


def utf8_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` can be passed to safetensors' functions (which take UTF-8 text): a
    name whose bytes are not UTF-8 reaches Python as text with lone surrogates."""
    name = os.fspath(path)
    try:
        name.encode("utf-8") if isinstance(name, str) else name.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return False
    return True


def _data(tensor: torch.Tensor) -> memoryview:
    """The bytes safetensors stores for ``tensor``: C order, little-endian, on the CPU (a copy
    only where the tensor is not that already)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def save_file(tensors: Mapping[str, torch.Tensor], filename: str | os.PathLike,
              metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (and the text ``metadata``) as a ``.safetensors`` file at
    ``filename``: the header first (each tensor's dtype, shape and place, the data in name
    order), then each tensor's bytes (``_data``, made one tensor at a time). ``ValueError`` for
    a dtype the format has no code for; ``OSError`` as writing raises it."""
    if sys.byteorder != "little":  # the format is little-endian: let safetensors swap bytes
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                    metadata=dict(metadata) if metadata else None)
        with open(filename, "wb") as f:
            f.write(data)
        return
    names, head = sorted(tensors), _header(tensors, metadata)
    with open(filename, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for name in names:
            f.write(_data(tensors[name]))


def _header(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None) -> bytes:
    """The JSON header ``save_file`` writes (padded to 8 bytes): each tensor's dtype, shape and
    place, the data in name order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name in sorted(tensors):
        value = tensors[name]
        if value.dtype not in DTYPE_CODES:
            raise ValueError(f"tensor {name} is {value.dtype}, which safetensors cannot store")
        size = value.numel() * value.element_size()
        header[name] = {"dtype": DTYPE_CODES[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode("ascii")
    return head + b" " * (-len(head) % 8)  # the data starts 8-byte aligned, as safetensors does


def file_size(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
              ) -> int:
    """The bytes ``save_file`` writes for ``tensors`` and ``metadata``, without writing."""
    return 8 + len(_header(tensors, metadata)) + sum(
        v.numel() * v.element_size() for v in tensors.values())


def load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the ``.safetensors`` file ``path`` (check its header first: this reads
    it as it is). safetensors maps a file it can name; one whose path is not UTF-8 is read
    into memory and parsed from there."""
    from safetensors.torch import load, load_file as load_named

    if utf8_path(path):
        return load_named(os.fsdecode(path))
    with open(Path(path), "rb") as f:
        return load(f.read())
