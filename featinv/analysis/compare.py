"""Score reconstructions that already exist: any folder of images against their originals.

``featinv compare ORIGINALS RECONSTRUCTIONS`` pairs each reconstruction with the original of
the same relative path: ``RECONSTRUCTIONS/a/photo.hog.png`` (what ``featinv invert -o`` writes)
or ``RECONSTRUCTIONS/a/photo.png`` goes with ``ORIGINALS/a/photo.jpg``. The name of the
reconstruction without its extension is tried as it is, then with its last ``.part`` removed,
and so on, against the originals' names with and without extension; ``suffix`` (e.g. ``".hog"``)
instead asks for exactly ``<original stem><suffix>.<ext>``. Both images of a pair are
centre-cropped to a square and resized to ``image_size``; then the same metrics as ``evaluate``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..datasets.folders import scan_folder
from ..errors import DataError, ImageError, printable
from .evaluate import check_count
from ..io.images import check_side, load_square
from ..limits import budget_words, memory_budget, memory_bytes
from .metrics import metrics_bytes, quality
from .perceptual import probe_for, realism_metrics, resolve_comparator

DEFAULT_SIZE = 128


def _index(root: Path, files: list[Path]) -> dict[tuple[Path, str], Path | None]:
    """(relative folder, name or stem) -> original; None where two originals share a stem."""
    index: dict[tuple[Path, str], Path | None] = {}
    for path in files:
        rel = path.relative_to(root)
        index[rel.parent, rel.name] = path
        key = (rel.parent, rel.stem)
        index[key] = None if key in index and index[key] != path else path
    return index


def pair_files(originals: str | Path, reconstructions: str | Path, suffix: str | None = None
               ) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """``[(original, reconstruction), ...]`` in the originals' order, and the reconstructions
    that match no original (with ``suffix``: those named with it). A ``DataError`` when an original has several reconstructions, a
    name is ambiguous, or nothing pairs up."""
    root_o, root_r = Path(originals), Path(reconstructions)
    files_o, files_r = scan_folder(root_o), scan_folder(root_r, photos=False)
    if root_o.resolve() == root_r.resolve():
        raise DataError(f"'{printable(root_o)}' is both the originals and the reconstructions; "
                        "keep the reconstructions in a folder of their own.")
    index, found, unmatched = _index(root_o, files_o), {}, []
    for recon in files_r:
        rel = recon.relative_to(root_r)
        base = rel.name[:-len(rel.suffix)] if rel.suffix else rel.name
        if suffix:
            if not base.endswith(suffix):
                continue  # another decoder's output: not asked for
            names = [base[:-len(suffix)]]
        else:
            names = [base] + [base.rsplit(".", i)[0] for i in range(1, base.count(".") + 1)]
        hit = next(((rel.parent, n) for n in names if (rel.parent, n) in index), None)
        if hit is None:
            unmatched.append(recon)
            continue
        original = index[hit]
        if original is None:
            raise DataError(f"{printable(recon)}: several originals in '{printable(root_o)}' "
                            f"are named '{printable(hit[1])}.*'; name the reconstruction "
                            "after the original's full file name (photo.jpg.hog.png).")
        if original in found:
            raise DataError(f"{printable(original)} has several reconstructions "
                            f"({printable(found[original].name)}, {printable(recon.name)}); "
                            "pass --suffix (e.g. --suffix .hog) to pick one decoder's outputs.")
        found[original] = recon
    pairs = [(o, found[o]) for o in files_o if o in found]
    if not pairs:
        raise DataError(f"No image in '{printable(root_r)}' has an original of the same "
                        f"relative name in '{printable(root_o)}' (e.g. a/photo.hog.png for "
                        "a/photo.jpg).")
    return pairs, unmatched


def compare_folders(originals: str | Path, reconstructions: str | Path,
                    image_size: int = DEFAULT_SIZE, limit: int | None = None,
                    suffix: str | None = None, comparator: str | None = None,
                    comparator_params: dict[str, Any] | None = None,
                    perceptual_weights: str | Path | None = "auto", batch_size: int = 32,
                    device: str | None = None, on_error: Callable[[str], None] | None = None
                    ) -> dict[str, Any]:
    """The metrics of ``evaluate`` for pairs of files (see the module's docstring).

    ``comparator``: a representation name for ``feature_error`` (None: off);
    ``perceptual_weights``: the SqueezeNet file, ``"auto"`` (find it) or None/``"none"`` (off).
    Pairs whose files cannot be read are reported through ``on_error`` and left out (listed
    under ``"failed"``); reconstructions without an original are listed under ``"unmatched"``.
    """
    from ..inversion.device import pick_device

    check_side(image_size, "--image-size")
    check_count(limit, "--limit")
    check_count(batch_size, "--batch-size")
    dev = pick_device(device)
    judge = resolve_comparator(comparator, comparator_params, None, dev)
    probe = probe_for(perceptual_weights, dev)
    pairs, unmatched = pair_files(originals, reconstructions, suffix)
    cut = f" among the first {limit} (--limit {limit})" if limit and len(pairs) > limit else ""
    pairs = pairs[:limit] if limit else pairs
    need = metrics_bytes(len(pairs), image_size)  # both images of each pair, the metrics
    memory = memory_bytes()
    if need > memory_budget(memory):
        raise DataError(f"{len(pairs)} pairs at {image_size} px take about {need / 1e9:.1f} GB "
                        f"with their metrics, over {budget_words(memory)}; use --limit or a "
                        "smaller --image-size.")
    x = torch.empty(len(pairs), 3, image_size, image_size)  # filled in place: no second copy
    y = torch.empty_like(x)
    n, failed = 0, []
    for original, recon in pairs:
        try:
            x[n], y[n] = load_square(original, image_size), load_square(recon, image_size)
        except ImageError as exc:
            failed.append(str(exc))
            if on_error:
                on_error(str(exc))
            continue
        n += 1
    if n < 2:
        raise DataError(f"Need at least 2 readable pairs of images, found {n}{cut}.")
    x, y = x[:n], y[:n]
    return {"originals": str(originals), "reconstructions": str(reconstructions),
            "image_size": image_size, **quality(x, y),
            **realism_metrics(x, y, judge, probe, batch_size, dev), "n_images": len(x),
            "device": str(dev), "batch_size": batch_size,
            "unmatched": [str(p) for p in unmatched], "failed": failed}
