"""Features of image files, saved to ``.npz`` with their layout and provenance (``featinv extract``).

File format (``np.savez_compressed``, no pickles; read with :func:`load_features`):

- ``features``: ``(N, C, h, w)`` or ``(N, C)`` float32 when every image gives the same layout,
  otherwise one array per image, ``features_0000``, ``features_0001``, ...
- ``report_<name>``: ``(N,)`` per-image statistics the representation reports (e.g.
  ``report_keypoints`` for sift);
- ``meta``: a JSON string: format, featinv version, feature name/params/plugin, and per image its
  path, size and layout.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from ..version import __version__
from ..errors import FeatinvError, ImageError, PluginError, printable
from ..io.images import load_fitted
from ..limits import DEFAULT_MAX_SIDE, allocation_failure
from ..io.files import write_output
from .spec import Extractor

FORMAT = "featinv-features"


@dataclass
class Extracted:
    """Features of several images: one ``(C, h, w)`` or ``(C,)`` array per image."""

    feature: dict[str, Any]
    features: list[np.ndarray] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, list] = field(default_factory=dict)

    def stacked(self) -> np.ndarray | None:
        """``(N, ...)`` when all images have the same layout, else None."""
        shapes = {f.shape for f in self.features}
        return np.stack(self.features) if len(shapes) == 1 else None




def check_finite(extractor: Extractor, features: torch.Tensor, what: str) -> None:
    """A ``PluginError`` naming the representation and its plugin when ``features`` (computed
    from ``what``) hold NaN or infinite values. One reduction and one host sync: call it per
    batch outside training, not per step."""
    if not bool(torch.isfinite(features).all()):
        raise PluginError(f"{what}: {extractor.name} (plugin {extractor.spec.plugin}) returned "
                          "NaN or infinite features; that is a bug of the plugin (or of its "
                          "weights): report it to its authors.")


@torch.no_grad()
def extract_files(extractor: Extractor, paths: Iterable[str | Path], size: int | None = None,
                  crop: bool = False, device: str | torch.device = "cpu",
                  on_error: Callable[[str], None] | None = None,
                  max_side: int | None = DEFAULT_MAX_SIDE) -> Extracted:
    """Features of each image file, one at a time (images may differ in size).

    ``size`` resizes the shorter side (``crop=True``: centre square of that side) first;
    ``max_side`` then shrinks a longer side beyond it (None: no cap), as ``invert`` does. A file
    that cannot be read, is too small or does not fit in memory is reported through
    ``on_error`` and skipped; without ``on_error`` it raises.
    """
    extractor = extractor.to(device)
    out = Extracted({"name": extractor.name, "params": extractor.params,
                     "plugin": extractor.spec.plugin})
    for path in map(Path, paths):
        try:
            try:
                image = load_fitted(path, size, max_side, crop)
                extractor.check_large_enough(*image.shape[1:], "extract")
                feats, report = extractor.forward_with_report(image[None].to(device))
            except (MemoryError, RuntimeError) as exc:
                if not allocation_failure(exc):
                    raise
                raise ImageError(f"{printable(path)}: not enough memory for its features; "
                                 "use a smaller --size or --max-side.") from None
            check_finite(extractor, feats, printable(path))
        except (ImageError, FeatinvError) as exc:
            if on_error is None:
                raise
            name = printable(path)
            on_error(printable(exc) if name in printable(exc) else f"{name}: {printable(exc)}")
            continue
        out.features.append(feats[0].cpu().numpy())
        layout = extractor.layout(*image.shape[-2:])
        out.images.append({"path": str(path), "height": image.shape[1], "width": image.shape[2],
                           "layout": layout.to_json()})
        for key, values in report.items():
            out.report.setdefault(key, []).extend(values)
    return out


def save_features(result: Extracted, path: str | Path) -> Path:
    """Write ``result`` as described in the module docstring (atomically)."""
    if not result.features:
        raise FeatinvError("No features to save: every image failed.")
    stacked = result.stacked()
    arrays = ({"features": stacked} if stacked is not None else
              {f"features_{i:04d}": f for i, f in enumerate(result.features)})
    for key, values in result.report.items():
        arrays[f"report_{key}"] = np.asarray(values)
    meta = {"format": FORMAT, "featinv_version": __version__,
            "feature": result.feature, "stacked": stacked is not None, "images": result.images}
    arrays["meta"] = np.array(json.dumps(meta))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would append ".npz" to a name
            np.savez_compressed(f, **arrays)

    return write_output(path, write)


def load_features(path: str | Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read a file written by :func:`save_features`: per-image arrays and the metadata.

    The report arrays are added to the metadata under ``"report"``. Never unpickles.
    """
    from ..io.archives import ArchiveError, read_npz

    try:
        data = read_npz(path, what="features file")  # headers and memory budget checked first
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError("not a featinv features file")
        if meta["stacked"]:
            features = list(data["features"])
        else:
            features = [data[f"features_{i:04d}"] for i in range(len(meta["images"]))]
        meta["report"] = {k[len("report_"):]: data[k].tolist() for k in data
                          if k.startswith("report_")}
    except ArchiveError as exc:
        raise FeatinvError(f"{printable(path)}: not a readable featinv features file "
                           f"({exc.reason})") from None
    except (OSError, KeyError, ValueError, RecursionError) as exc:  # RecursionError: nested JSON
        raise FeatinvError(f"{printable(path)}: not a readable featinv features file "
                           f"({type(exc).__name__}: {printable(exc)}).") from None
    return features, meta
