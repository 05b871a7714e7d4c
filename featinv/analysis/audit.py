"""What a representation leaks: reconstruct photos from their features and measure how close
and how recognisable the reconstructions are (``featinv audit``).

For each decoder (one per representation) and the N photos below a folder, each centre-cropped
and resized to the decoder's training size ``(N, 3, S, S)``:

- quality: the paper's normalized error, PSNR, SSIM;
- realism (SqueezeNet probe, :mod:`featinv.analysis.perceptual`): perceptual distance and
  top-1 class agreement;
- re-identification (:mod:`featinv.analysis.reidentify`): the rank of each reconstruction's
  original among the N photos (a) in the representation's own feature space (Euclidean) and
  (b) in an independent model's space (cosine; by default SqueezeNet 1.0 fire9 activations),
  with top-1/top-5 rates, their chance levels and bootstrap intervals.

Representations are ranked by how much they leak: independent top-1 rate, then top-5, then
own-space top-1, then the smaller perceptual distance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..datasets.folders import scan_folder
from ..errors import FeatinvError, ImageError
from ..inversion.methods import Method
from ..io.images import load_square
from .evaluate import check_count, run_timed
from .metrics import mean_pairwise_distance, quality, reconstruction_distances
from .perceptual import Probe, perceptual_scores, squeezenet_probe
from .reidentify import check_gallery, ranks, summary


@dataclass
class Space:
    """An embedding for re-identification: ``embed(images (B, 3, H, W)) -> (B, D)``."""

    name: str
    embed: Callable[[torch.Tensor], torch.Tensor]
    cosine: bool = True


@dataclass
class Audit:
    """``result``: the JSON report; ``pictures``: label -> (photos, reconstructions), the first
    photos ``(n, 3, S, S)`` in order and theirs, for the HTML report."""

    result: dict[str, Any]
    pictures: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


def probe_space(probe: Probe, batch_size: int = 32) -> Space:
    """The probe's deepest tapped activations (fire9), flattened, compared by cosine."""
    @torch.no_grad()
    def embed(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([probe(x[i:i + batch_size].to(probe.device))[0][-1].flatten(1).cpu()
                          for i in range(0, len(x), batch_size)])

    return Space(f"SqueezeNet 1.0 {probe.names[-1]} ({Path(probe.weights).name})", embed)


def feature_space(extractor: torch.nn.Module, batch_size: int = 32, cosine: bool = True,
                  device: str | torch.device | None = None) -> Space:
    """A representation's features, flattened."""
    dev = torch.device(device) if device else next(
        (t.device for t in (*extractor.parameters(), *extractor.buffers())), torch.device("cpu"))

    @torch.no_grad()
    def embed(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([extractor(x[i:i + batch_size].to(dev)).flatten(1).cpu()
                          for i in range(0, len(x), batch_size)])

    return Space(getattr(extractor, "name", type(extractor).__name__), embed, cosine)


def independent_space(name: str, params: dict[str, Any] | None, probe: Probe | None,
                      device: str | torch.device | None, batch_size: int = 32) -> Space | None:
    """``"none"``: no independent re-identification; ``"auto"``: the SqueezeNet probe when there
    is one, else featinv's ``squeezenet.fire9`` with its default weights; a name: that
    representation (with ``params``)."""
    from ..representation.registry import get_feature

    if name == "none":
        return None
    if name == "auto" and probe is not None:
        return probe_space(probe, batch_size)
    try:
        extractor = get_feature("squeezenet.fire9" if name == "auto" else name, **(params or {}))
    except FeatinvError as exc:
        if name != "auto":
            raise
        raise FeatinvError(f"No independent model for re-identification: no SqueezeNet weight "
                           f"file was found and squeezenet.fire9 cannot load its weights ({exc}). "
                           "Pass --perceptual-weights PATH, --reid-feature NAME (any "
                           "representation, e.g. timm.resnet18.pooled) or --reid-feature none."
                           ) from None
    return feature_space(extractor.to(device or "cpu"), batch_size, device=device)


def load_photos(data: str | Path, size: int, limit: int | None,
                on_error: Callable[[str], None] | None = None
                ) -> tuple[torch.Tensor, list[str], list[str]]:
    """The readable photos below ``data`` (the first ``limit`` files) at ``size`` px: ``(N, 3,
    size, size)``, their names (relative to ``data``) and the messages of unreadable files."""
    check_count(limit, "--limit")
    files = scan_folder(data, None)[:limit] if limit else scan_folder(data, None)
    check_gallery(len(files))
    images, names, failed = [], [], []
    for path in files:
        try:
            images.append(load_square(path, size))
            names.append(str(Path(path).relative_to(data)))
        except ImageError as exc:
            failed.append(str(exc))
            if on_error:
                on_error(str(exc))
    check_gallery(len(images))
    return torch.stack(images), names, failed


def leak_key(row: dict[str, Any]) -> tuple:
    """Sort key: the most leaking representation first (see the module docstring)."""
    ind, own = row["independent"] or {}, row["own"]
    perceptual = row["perceptual_distance"]
    return (-ind.get("top1", 0.0), -ind.get("top5", 0.0), -own["top1"],
            perceptual if perceptual is not None else float("inf"))


def audit_one(method: Method, x: torch.Tensor, names: Sequence[str], space: Space | None,
              probe: Probe | None, batch_size: int = 32, samples: int = 1000,
              seed: int = 0) -> tuple[dict[str, Any], torch.Tensor]:
    """The audit of one decoder on photos ``x`` ``(N, 3, S, S)``: its report row and the
    reconstructions ``(N, 3, S, S)``."""
    y, seconds = run_timed(method, x, batch_size, warm_up=False)
    own_space = feature_space(method.extractor, batch_size, cosine=False)
    own = summary(ranks(own_space.embed(x), own_space.embed(y)), samples=samples, seed=seed)
    independent = None
    if space is not None:
        independent = summary(ranks(space.embed(x), space.embed(y), cosine=space.cosine),
                              samples=samples, seed=seed)
    errors = reconstruction_distances(x, y) / mean_pairwise_distance(x)
    perceptual = agree = None
    if probe is not None:
        layers, agreement = perceptual_scores(probe, x, y, batch_size)
        perceptual, agree = layers.mean(1), agreement
    per_image = [{"file": names[i], "normalized_error": float(errors[i]),
                  "own_rank": own["ranks"][i],
                  "independent_rank": independent["ranks"][i] if independent else None,
                  "perceptual_distance": float(perceptual[i]) if perceptual is not None else None,
                  "same_class": bool(agree[i]) if agree is not None else None}
                 for i in range(len(x))]
    row = {"feature": method.feature, "label": method.label,
           "checkpoint": method.info.get("checkpoint"), "image_size": int(x.shape[-1]),
           **quality(x, y),
           "perceptual_distance": float(perceptual.mean()) if perceptual is not None else None,
           "class_agreement": float(agree.double().mean()) if agree is not None else None,
           "own": own, "independent": independent, "seconds_per_image": seconds,
           "images": per_image}
    return row, y


def labels_of(methods: Sequence[Method]) -> list[str]:
    """A distinct name per decoder: its label (``hog``, ``hog.realistic``), else its file's
    stem where two share a label, else a number appended."""
    labels = [m.label for m in methods]
    labels = [Path(m.info["checkpoint"]).stem if labels.count(m.label) > 1
              and m.info.get("checkpoint") else m.label for m in methods]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label}-{seen[label]}")
    return out


def audit(methods: Sequence[Method], data: str | Path, limit: int | None = None,
          image_size: int | None = None, batch_size: int = 32, probe: Probe | None = None,
          space: Space | None = None, samples: int = 1000, seed: int = 0, show: int = 12,
          on_error: Callable[[str], None] | None = None,
          log: Callable[[str], None] = lambda _m: None) -> Audit:
    """Audit each of ``methods`` (decoders) on the photos below ``data``; rows ranked by leak.

    Photos are loaded at each decoder's training size (or ``image_size`` for all). ``probe``:
    the SqueezeNet probe for the perceptual distance and class agreement (None: left out);
    ``space``: the independent re-identification space (None: left out). ``show``: how many
    photo/reconstruction pairs per representation go to ``Audit.pictures``.
    """
    check_count(batch_size, "--batch-size")
    photos: dict[int, tuple[torch.Tensor, list[str], list[str]]] = {}
    rows, pictures = [], {}
    for method, label in zip(methods, labels_of(methods)):
        size = image_size or method.image_size
        if size not in photos:
            photos[size] = load_photos(data, size, limit, on_error)
        x, names, failed = photos[size]
        log(f"auditing {label} on {len(x)} photos at {size} px")
        row, y = audit_one(method, x, names, space, probe, batch_size, samples, seed)
        row["label"] = label
        rows.append(row)
        pictures[label] = (x[:show], y[:show].clamp(0, 1))
    rows.sort(key=leak_key)
    for i, row in enumerate(rows, 1):
        row["leak_rank"] = i
    x, names, failed = next(iter(photos.values()))
    result = {"data": str(data), "n_images": len(x), "failed": failed,
              "independent_space": space.name if space else None,
              "perceptual_weights": getattr(probe, "weights", None) if probe else None,
              "bootstrap_samples": samples, "seed": seed, "representations": rows}
    return Audit(result, pictures)


def make_probe(weights: str | None, device: str | torch.device | None) -> Probe | None:
    """The SqueezeNet probe for ``weights`` (a file or ``"auto"``), or None for ``"none"`` or
    when ``"auto"`` finds no weight file (the perceptual metrics are then left out). A file that
    ``$FEATINV_PERCEPTUAL_WEIGHTS`` names is refused as one passed with the option."""
    import os

    from .perceptual import WEIGHTS_ENV

    if weights is None or weights == "none":
        return None
    try:
        return squeezenet_probe(weights, device=device)
    except FeatinvError:
        if weights == "auto" and not os.environ.get(WEIGHTS_ENV):
            return None
        raise
