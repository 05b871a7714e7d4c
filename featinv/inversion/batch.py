"""Invert files with one or more methods and write the pictures: what ``featinv invert`` does.

``invert_files`` plans every output first (``featinv.io.outputs``: one name per input and
method, never onto an input or, without ``overwrite``, an existing file), then inverts each
image with each method and writes one PNG per method, or with ``side_by_side`` one PNG per image
holding input | reconstruction(s).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ..errors import DecoderOutputError, FeatinvError, ImageError, printable
from ..io.images import check_side, make_grid, save_png
from ..io.outputs import check_targets, inside, output_paths, plan_inputs, unique_labels
from ..limits import DEFAULT_MAX_SIDE, allocation_failure
from .output_checks import FarFromRange
from .sizing import prepare
from .methods import Method


@dataclass
class InvertReport:
    """What ``invert_files`` did: the PNGs ``written`` (in order), the inputs that ``failed``
    with their errors, and how many inputs there were."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, Exception]] = field(default_factory=list)
    n_inputs: int = 0


def output_labels(methods: Sequence[Method], side_by_side: bool = False) -> list[str]:
    """The label in each output name: the methods' labels, repeats numbered (two ``hog``
    checkpoints: ``hog``, ``hog-2``), or side by side one label joining them (``hog-lbp``)."""
    names = unique_labels([m.label for m in methods])
    return ["-".join(names)] if side_by_side else names


def _abouts(methods: Sequence[Method], side_by_side: bool) -> list[str]:
    """What each output picture is, for its mark (``featinv.io.marks``): the representation and
    the decoder (or method) of each reconstruction."""
    each = [f"feature {m.feature}, " + (f"decoder {m.info.get('checkpoint')}"
                                        if m.info.get("checkpoint") else f"method {m.name}")
            for m in methods]
    if side_by_side:
        return ["input beside its reconstructions (" + "; ".join(each) + ")"]
    return [f"reconstruction ({text})" for text in each]


def check_out_outside_inputs(out: str | Path, images: Sequence[str | Path]) -> None:
    """Refuse an output folder that is an input folder or lies inside one: the reconstructions
    would be read back as photos by the next command on that folder (audit scored them as
    originals)."""
    folder = Path(out).parent if str(out).lower().endswith(".png") else Path(out)
    for arg in images:
        if isinstance(arg, (str, Path)) and Path(arg).is_dir() and inside(folder, Path(arg)):
            raise FeatinvError(f"-o {printable(out)} is inside the input folder "
                               f"{printable(arg)}: the reconstructions would be read as photos "
                               "by the next command on it. Write them to another folder.")


def invert_files(images: Iterable[str | Path], methods: Sequence[Method], out: str | Path = ".",
                 size: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
                 side_by_side: bool = False, overwrite: bool = False,
                 protect: Iterable[str | Path] = (),
                 on_written: Callable[[Path], None] | None = None,
                 on_error: Callable[[Exception, Path], None] | None = None) -> InvertReport:
    """Reconstruct each of ``images`` (files, folders, ``skimage:NAME``) with each method.

    ``size``: the shorter side to work at (default: each image's own when a method allows it,
    else the first method's training size); ``max_side`` shrinks larger images. ``out``: a
    folder (``<stem>.<label>.png``) or, for one picture, a ``.png`` path. ``protect``: more
    files that are never written over (the checkpoints). An image that cannot be read or
    inverted is reported through ``on_error(exc, path)`` and skipped; every other problem is a
    ``FeatinvError`` before any work.
    """
    if not methods:
        raise FeatinvError("Nothing to invert with: pass at least one method.")
    if size is None and not any(m.any_size for m in methods):  # else: each image's own size
        size = check_side(methods[0].image_size)
    images = list(images)
    check_out_outside_inputs(out, images)
    inputs = plan_inputs(images)
    labels = output_labels(methods, side_by_side)
    targets = output_paths(inputs, labels, out)
    check_targets(list(targets.values()), [item.path for item in inputs] + list(protect),
                  overwrite)
    report = InvertReport(n_inputs=len(inputs))
    for item in inputs:
        try:
            try:
                x = prepare(item.path, size, max_side)
                with warnings.catch_warnings(record=True) as far:
                    warnings.simplefilter("always", FarFromRange)
                    ys = [m.run(x[None])[0].cpu() for m in methods]
                for note in far:  # each named after its image; other warnings as they were
                    message = note.message
                    if isinstance(message, FarFromRange):
                        message = FarFromRange(f"{printable(item.path)}: {message}")
                    warnings.warn_explicit(message, note.category, note.filename, note.lineno)
            except (MemoryError, RuntimeError) as exc:  # the rest of the batch is still inverted
                if not allocation_failure(exc):
                    raise
                raise ImageError(f"{printable(item.path)}: not enough memory to invert it; use "
                                 "a smaller --size or --max-side.") from None
        except DecoderOutputError:
            raise  # the decoder, not this image: one line, and no picture of it anywhere
        except (ImageError, FeatinvError) as exc:
            report.failed.append((item.path, exc))
            if on_error is not None:
                on_error(exc, item.path)
            continue
        pictures = [make_grid([torch.stack([x, *ys])])] if side_by_side else ys
        for picture, label, about in zip(pictures, labels, _abouts(methods, side_by_side)):
            path = save_png(picture, targets[item.path, label],
                            f"{about} of {printable(Path(item.path).name)}")
            report.written.append(path)
            if on_written is not None:
                on_written(path)
    return report
