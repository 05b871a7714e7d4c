"""Reading ``.npz`` and ``.safetensors`` files that may come from anyone, by their headers first.

A 4 MB ``.npz`` can hold 4 GiB of compressed zeros, and an ``.npy`` header can claim any shape:
``np.load`` decompresses or allocates whatever a member says before anyone looks at it. Here
every member's name, dtype and shape are read from the archive's directory and the ``.npy``
headers (a few hundred bytes each), checked against what the caller expects and against the
memory budget, and only then is any array read; a member whose data does not match its header
is refused too (the zip module stops at the declared size and checks the CRC).
"""
from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import FeatinvError, printable, quoted
from ..limits import MAX_SAFETENSORS_HEADER, memory_budget
from .files import check_regular, file_kind

MAX_MEMBERS = 100_000
MAX_DIRECTORY = 8 * 2**20  # bytes of an .npz's directory (MAX_MEMBERS entries of short names)
NPY_HEADER_LIMIT = 10_000  # numpy's own default bound on an .npy header


@dataclass(frozen=True)
class Entry:
    """One array of an archive, as its header describes it; ``code``: a ``.safetensors``
    tensor's dtype as its header names it (``F32``, ``I64``, ...; empty for an ``.npz``)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    code: str = ""

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ArchiveError(FeatinvError):
    """An archive that is not what it claims, or more than featinv will read; ``reason`` is
    the message without the file name."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def _refuse(path, why: str) -> ArchiveError:
    return ArchiveError(f"{printable(path)}: {why}", why)


def npz_entries(path: str | Path) -> dict[str, Entry]:
    """Name -> ``Entry`` of each array in an ``.npz``, from its headers only (no array read)."""
    path = Path(path)
    check_regular(path, "archive")
    _check_directory(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _refuse(path, f"{len(infos)} members; an .npz featinv reads has fewer than "
                                    f"{MAX_MEMBERS}.")
            entries = {}
            for info in infos:
                name = info.filename[:-4] if info.filename.endswith(".npy") else None
                if name is None or name in entries:
                    raise _refuse(path, f"member {quoted(info.filename)} is not one array "
                                        "of an .npz (np.savez) file.")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise _refuse(path, f"member {quoted(info.filename)} uses a compression "
                                        "np.savez does not write.")
                with archive.open(info) as f:
                    entry, header_bytes = _npy_header(f, path, info.filename)
                if entry.nbytes + header_bytes != info.file_size:
                    raise _refuse(path, f"member {quoted(info.filename)} declares "
                                        f"{info.file_size} bytes, but its header describes an "
                                        f"array of {entry.nbytes} bytes; the file is damaged or "
                                        "forged.")
                entries[name] = entry
            return entries
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, FeatinvError):
            raise
        raise _refuse(path, f"not a readable .npz file ({printable(exc)}).") from None


def _check_directory(path: Path) -> None:
    """Refuse a zip whose end record declares more than ``MAX_MEMBERS`` members or a directory
    larger than they need, before ``zipfile`` reads and parses the whole directory (a forged
    one of 178 MB took 43 s and 1.3 GB); only the last 64 kB are read."""
    try:
        with open(path, "rb") as f:
            # zipfile's own search for the end record (and the zip64 one it always follows), so
            # that decoy bytes or a zip64 record cannot make this check see another directory
            # than the one zipfile then reads (round 16, N1); it reads the file's tail only
            find_end = getattr(zipfile, "_EndRecData", None)
            if find_end is not None:
                record = find_end(f)
                if record is None:
                    return  # zipfile reports it
                count = record[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)]
                directory = record[getattr(zipfile, "_ECD_SIZE", 5)]
            else:
                count, directory = _declared(f)
                if count is None:
                    return  # zipfile reports it
    except (OSError, ValueError, zipfile.BadZipFile):
        return  # zipfile reports it
    if count > MAX_MEMBERS or directory > MAX_DIRECTORY:
        raise _refuse(path, f"a directory of {count} members in {directory} bytes; an .npz "
                            f"featinv reads has fewer than {MAX_MEMBERS} in at most "
                            f"{MAX_DIRECTORY} bytes.")


def _declared(f) -> tuple[int | None, int | None]:
    """The members and directory bytes the end record of the zip open as ``f`` declares (where
    zipfile has no ``_EndRecData``), reading the last 64 kB; None, None if it has none."""
    size = f.seek(0, 2)
    f.seek(max(0, size - 65_557))  # the end record (22 bytes) and its longest comment
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None, None
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    directory = int.from_bytes(tail[at + 12:at + 16], "little")
    if (count == 0xFFFF or directory == 0xFFFFFFFF) and at >= 20 \
            and tail[at - 20:at - 16] == b"PK\x06\x07":  # zip64: its own end record
        f.seek(int.from_bytes(tail[at - 12:at - 4], "little"))
        record = f.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            count = int.from_bytes(record[32:40], "little")
            directory = int.from_bytes(record[40:48], "little")
    return count, directory


def _npy_header(f, path, member: str) -> tuple[Entry, int]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=NPY_HEADER_LIMIT)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=NPY_HEADER_LIMIT)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise _refuse(path, f"member {quoted(member)} has no valid .npy header "
                            f"({printable(exc)[:200]}).") from None
    if dtype.hasobject:
        raise _refuse(path, f"member {quoted(member)} holds Python objects; featinv never "
                            "unpickles.")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise _refuse(path, f"member {quoted(member)} has an invalid shape {shape}.")
    return Entry(tuple(shape), dtype), f.tell()


def check_budget(path, entries: Mapping[str, Entry], what: str) -> None:
    """Refuse an archive whose arrays would take more than the memory budget."""
    total = sum(e.nbytes for e in entries.values())
    budget = memory_budget()
    if total > budget:
        raise _refuse(path, f"its arrays take {total / 2**30:.1f} GiB once read, over featinv's "
                            f"memory budget of {budget / 2**30:.1f} GiB (half of this machine's "
                            f"memory); it is no {what} featinv can use.")


def check_expected(path, entries: Mapping[str, Entry], expected: Mapping[str, Sequence[int]],
                   what: str) -> None:
    """Refuse an archive whose names and shapes are not exactly ``expected`` (name -> shape),
    from the headers, before anything is read."""
    missing = sorted(set(expected) - set(entries))
    unexpected = sorted(set(entries) - set(expected))
    if missing or unexpected:
        raise FeatinvError(f"weights {printable(path)} do not fit {what}: {len(missing)} missing "
                           f"keys (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. "
                           f"[{', '.join(quoted(k) for k in unexpected[:2])}]).")
    wrong = [k for k in expected if tuple(entries[k].shape) != tuple(expected[k])]
    if wrong:
        k = wrong[0]
        raise FeatinvError(f"weights {printable(path)} do not fit {what}: {len(wrong)} tensors "
                           f"of another shape, e.g. {k} is {tuple(entries[k].shape)} in the file "
                           f"and {tuple(expected[k])} in the network.")
    bad = [k for k, e in entries.items() if e.dtype.kind not in "fiub"]
    if bad:
        raise FeatinvError(f"weights {printable(path)} do not fit {what}: {bad[0]} holds "
                           f"{entries[bad[0]].dtype}, not numbers.")


def read_npz(path: str | Path, expected: Mapping[str, Sequence[int]] | None = None,
             what: str = "weights file") -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, read only after their headers passed ``check_expected``
    (when ``expected`` is given) and the memory budget."""
    entries = npz_entries(path)
    if expected is not None:
        check_expected(path, entries, expected, what)
    check_budget(path, entries, what)
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in entries:
                with archive.open(name + ".npy") as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise _refuse(path, f"its data does not match its headers ({printable(exc)[:200]}); "
                            "the file is damaged or forged.") from None
    return out


_SAFETENSORS_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2,
                         "BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1,
                         "F8_E4M3": 1, "F8_E5M2": 1}
_BY_ITEMSIZE = {8: np.dtype("f8"), 4: np.dtype("f4"), 2: np.dtype("f2"), 1: np.dtype("u1")}


def check_safetensors_header(path: str | Path, error: type[Exception] = ArchiveError) -> None:
    """Refuse (``error``) a ``.safetensors`` file whose header, by the length its first 8 bytes
    declare, is longer than ``MAX_SAFETENSORS_HEADER``, or that is no regular file: before
    safetensors parses it. A length the file cannot hold (a file too short, a pickle) is left to
    safetensors, which refuses it unread."""
    def refuse(why: str) -> Exception:
        return _refuse(path, why) if error is ArchiveError else error(f"{printable(path)}: {why}")

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise refuse(f"{file_kind(st.st_mode)}, not a regular file; featinv reads only "
                             "regular files.")
            head = os.read(fd, 8)
        finally:
            os.close(fd)
    except OSError as exc:  # e.g. /proc/self/mem: a 'regular' file no one can read from 0
        raise refuse(f"cannot read it ({printable(exc.strerror or exc)}).") from None
    size = int.from_bytes(head, "little") if len(head) == 8 else 0
    if MAX_SAFETENSORS_HEADER < size <= st.st_size - 8:
        raise refuse(f"its header declares {size / 1e6:.0f} MB of tensor names and metadata, over "
                     f"the {MAX_SAFETENSORS_HEADER // 2**20} MiB featinv reads (its own files "
                     "need about 20 KB); the file is damaged or forged.")


class SizeMismatch(ValueError):
    """A ``.safetensors`` file longer or shorter than its header says (truncated or padded)."""


def read_safetensors_header(path: str | Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """Name -> ``Entry`` of each tensor and the ``__metadata__`` strings of a ``.safetensors``
    file, parsed from its header by hand (``ValueError`` when it is no such file). safetensors'
    own reader maps the whole file into memory first, so a file padded with a huge tensor
    (sparse on disk) fails as 'out of memory' under an address-space limit before anyone looks
    at its names. Checked as safetensors checks: known dtypes, whole shapes, and offsets that
    tile the data exactly, which fills the rest of the file. The entry's dtype stands for the
    stored one by its size (NumPy has no bfloat16)."""
    check_safetensors_header(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, too short for a header")
        length = int.from_bytes(head, "little")
        if not 2 <= length <= min(size - 8, MAX_SAFETENSORS_HEADER):
            raise ValueError(f"header length {length} does not fit a file of {size} bytes")
        try:
            header = json.loads(f.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"header is no JSON: {printable(exc)[:100]}") from None
    if not isinstance(header, dict):
        raise ValueError("header is no JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ is no map of strings")
    entries, spans = {}, []
    for name, info in header.items():
        try:
            itemsize = _SAFETENSORS_ITEMSIZE[info["dtype"]]
            shape, (begin, end) = tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {quoted(printable(name)[:60])} has no valid dtype, shape and "
                             "data_offsets") from None
        numbers = (*shape, begin, end)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) \
                or end - begin != math.prod(shape) * itemsize:
            raise ValueError(f"tensor {quoted(printable(name)[:60])}: shape {shape} does not fit its "
                             f"offsets {[begin, end]}")
        entries[name] = Entry(shape, _BY_ITEMSIZE[itemsize], info["dtype"])
        spans.append((begin, end))
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise ValueError("tensor data overlaps or leaves gaps")
        position = end
    if position != size - 8 - length:
        raise SizeMismatch(f"its tensors take {position} bytes, the file holds "
                           f"{size - 8 - length} after its header")
    return entries, meta


def safetensors_entries(path: str | Path) -> dict[str, Entry]:
    """Name -> ``Entry`` of each tensor of a ``.safetensors`` file, from its header
    (``read_safetensors_header``; nothing mapped or read beyond it)."""
    check_regular(path, "weights file")
    try:
        return read_safetensors_header(path)[0]
    except (OSError, ValueError) as exc:
        raise _refuse(path, f"not a readable safetensors file ({printable(exc)[:200]}).") from None
