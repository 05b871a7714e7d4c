"""Where commands write their results: one output name per input, never onto an input, and
never onto an existing file unless the user passed ``--overwrite``.

``plan_inputs`` expands the command line's files and folders into images, each with an output
stem that mirrors its sub-folders below the folder given (``a/photo``, ``b/photo``); inputs that
would still share a stem keep their extension (``photo.jpg``, ``photo.png``), then get a number
(``photo.jpg-2``). ``check_targets`` refuses, before any work, every output that would replace
an input, an existing file (without ``overwrite``), or a folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import FeatinvError, printable
from .files import claim_new, write_output  # noqa: F401 (write_output: public here too)
from .images import EXAMPLE_PREFIX, find_images
from .marks import without_outputs


@dataclass(frozen=True)
class Input:
    """An image to process (a file, or ``skimage:NAME``) and the stem of its outputs."""

    path: Path
    stem: str


def _is_example(path: str | Path) -> bool:
    return str(path).startswith(EXAMPLE_PREFIX)


def _key(path: Path):
    """What identifies a file: its inode when it exists (hard and symbolic links included)."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return os.path.abspath(path)


def _expand(arg: str | Path) -> list[tuple[Path, str, str]]:
    """``(path, stem, name with extension)`` of each image an argument stands for."""
    if _is_example(arg):
        name = str(arg)[len(EXAMPLE_PREFIX):].replace("/", "_").replace("\\", "_")
        return [(Path(arg), name, name)]
    path = Path(arg)
    if path.is_dir():  # the PNGs featinv wrote are no photos: left out, with a warning
        files = find_images(path)
        files = without_outputs(files, path) if files else files
        if not files:  # kept, so that reading it reports it ("is a directory")
            return [(path, path.name or "folder", path.name or "folder")]
        return [(f, f.relative_to(path).with_suffix("").as_posix(), f.relative_to(path).as_posix())
                for f in files]
    return [(path, path.stem, path.name)]


def plan_inputs(args: Iterable[str | Path]) -> list[Input]:
    """The images of ``args`` (files, folders searched recursively, ``skimage:NAME``), each
    once, with distinct output stems (see the module docstring)."""
    entries, seen = [], set()
    for arg in args:
        for path, stem, full in _expand(arg):
            key = str(path) if _is_example(path) else _key(path)
            if key not in seen:
                seen.add(key)
                entries.append([path, stem, full])
    for level in (0, 1):  # 0: stems that clash keep their extension; 1: then get a number
        groups: dict[str, list[list]] = {}
        for entry in entries:
            groups.setdefault(entry[1].casefold(), []).append(entry)
        for group in groups.values():
            if len(group) < 2:
                continue
            for i, entry in enumerate(group):
                if level == 0:
                    entry[1] = entry[2]
                elif i:
                    entry[1] = f"{entry[1]}-{i + 1}"
    return [Input(path, stem) for path, stem, _ in entries]


def unique_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeats numbered (``hog``, ``hog-2``), so that outputs stay distinct."""
    out, counts = [], {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
        out.append(label if counts[label] == 1 else f"{label}-{counts[label]}")
    return out


def output_paths(inputs: Sequence[Input], labels: Sequence[str], out: str | Path
                 ) -> dict[tuple[Path, str], Path]:
    """Where each ``(input, label)`` picture goes: ``OUT/<stem>.<label>.png``, or ``out`` itself
    when it names one ``.png`` file, which is refused for more than one picture."""
    single_file = str(out).lower().endswith(".png")
    count = len(inputs) * len(labels)
    if single_file and count > 1:
        raise FeatinvError(f"-o {printable(out)} names one PNG, but {count} pictures will be "
                           "written; pass a folder instead (or --side-by-side).")
    return {(item.path, label): Path(out) if single_file else
            Path(out) / f"{item.stem}.{label}.png" for item in inputs for label in labels}


NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, Windows' NTFS in UTF-16 units)


def check_targets(targets: Sequence[str | Path], inputs: Iterable[str | Path] = (),
                  overwrite: bool = False, suffix: str | None = None) -> None:
    """Refuse, with one line, outputs that would replace an input (even with ``overwrite``), a
    folder, or an existing file (unless ``overwrite``), or that lie below a file; with
    ``suffix`` (the format written, e.g. ``.npz``), outputs named as another format (``-o
    photo.jpg --overwrite`` would put an archive where a JPEG was)."""
    targets = [Path(t) for t in targets]
    for target in targets:  # the OS would refuse it with a bare OSError (ENAMETOOLONG)
        long = next((p for p in target.parts if len(os.fsencode(p)) > NAME_MAX), None)
        if long is not None:
            raise FeatinvError(f"-o {printable(target)[:60]}...: its name "
                               f"{printable(long)[:30]}... has {len(os.fsencode(long))} bytes; a "
                               f"file or folder name may have at most {NAME_MAX}.")
    originals = {}
    for path in inputs:
        if not _is_example(path) and os.path.lexists(path):
            originals.setdefault(_key(Path(path)), Path(path))
    for target in targets:
        source = originals.get(_key(target))
        if source is not None:
            same = "" if str(target) == str(source) else f" (the input {printable(source)})"
            raise FeatinvError(f"{printable(target)} is one of the inputs{same}; featinv never "
                               "replaces an input. Choose another -o.")
        if target.is_dir():
            raise FeatinvError(f"{printable(target)} is a folder; give -o a file name, or a "
                               "folder that does not hold one of that name.")
        for parent in target.parents:
            if os.path.lexists(parent):
                if not parent.is_dir():
                    raise FeatinvError(f"{printable(parent)} is a file, not a folder; choose "
                                       "another -o.")
                break
    for target in targets if suffix else []:
        if target.suffix.lower() != suffix:
            raise FeatinvError(f"-o {printable(target)}: this command writes a {suffix} file; "
                               f"give a path ending in {suffix}.")
    if len({_key(t) for t in targets}) < len(targets):
        raise FeatinvError("Two outputs of this command would have the same name; give the "
                           "inputs distinct names.")
    existing = [t for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
        raise FeatinvError(f"{printable(existing[0])} exists already{more}; pass --overwrite to "
                           "replace it, or choose another -o.")
    if not overwrite:  # and not replaced if another command writes one meanwhile
        claim_new(targets)


def inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (links resolved; neither need exist yet)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


def with_data_images(folder: str | Path | None) -> list[Path]:
    """The images below a ``--data`` folder, as inputs for ``check_targets`` (none when it is not
    a folder; reading it reports that later)."""
    return find_images(folder) if folder is not None and Path(folder).is_dir() else []
