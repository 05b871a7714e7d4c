"""The paper's analyses as pictures and tables, from decoder files: what ``featinv analyze``
writes and ``examples/reproduce_fig7.py`` assembles.

- ``perturbation_study``: Figure 7's numbers, the error of each layer's decoder under each
  feature perturbation (plus an autoencoder curve); ``plots.perturbation_chart`` draws them.
- ``reconstruction_strip``: one photo and its reconstruction by each decoder, in one row.
- ``interpolation_strip``, ``topk_strip``, ``sampled_images``, ``unit_images``: the pictures of
  ``analyze interpolate``, ``topk``, ``sample`` and ``unit``.

Pictures are ``(3, H, W)`` tensors in [0, 1] (``featinv.io.images.save_png`` writes them).
DECODER sources are checkpoint paths or names of representations with a shipped decoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from ..choices import SAMPLERS
from ..decoders.networks import Decoder
from ..errors import FeatinvError
from ..io.images import make_grid
from ..inversion.device import pick_device
from ..inversion.pipeline import Inverter, decode, encode, reconstruct
from ..representation.spec import Extractor
from .analyses import TOPK_VARIANTS, FeatureSampler, interpolate, perturbation_errors, \
    topk_variants, unit_features
from .evaluate import load_square_images
from .metrics import reconstruction_distances

Source = str | Path


def load_pair(source: Source, device: str | torch.device | None = None
              ) -> tuple[Extractor, Decoder]:
    """The decoder of ``source`` and the representation it inverts, both on ``device``."""
    inverter = Inverter.load(source, device=pick_device(device))
    return inverter.extractor, inverter.decoder


def perturbation_study(decoders: Sequence[Source], data: Source | torch.Tensor,
                       limit: int | None = None, names: Sequence[str] | None = None,
                       seed: int = 0, autoencoders: Sequence[Source] = (),
                       device: str | torch.device | None = None,
                       on_error: Callable[[str], None] | None = None,
                       on_layer: Callable[[dict[str, Any]], None] | None = None
                       ) -> dict[str, Any]:
    """Figure 7: the normalized error of each decoder (one per layer, in order) on the photos
    below ``data`` (or an ``(N, 3, H, W)`` tensor), under each perturbation of ``names``
    (default: all); ``autoencoders`` (decoders trained with ``finetune_encoder``) add their
    unperturbed error as one more curve.

    The photos are read once per decoder size, at most ``limit`` of them (unreadable ones go to
    ``on_error``). ``on_layer(row)`` is called after each decoder. Returns ``{"data", "n_images",
    "seed", "layers": [{"layer", "decoder", "errors": {name: error}}], "autoencoder": [{"layer",
    "decoder", "error"}]}``, as ``featinv analyze perturb`` writes to perturb.json.
    """
    images: dict[int, torch.Tensor] = {}

    def images_at(size: int) -> torch.Tensor:
        if isinstance(data, torch.Tensor):
            return data
        if size not in images:
            images[size] = load_square_images(data, size, limit, on_error)[0]
        return images[size]

    def measure(source: Source, which: Sequence[str] | None,
                autoencoder: bool = False) -> tuple[str, dict[str, float]]:
        extractor, decoder = load_pair(source, device)
        if autoencoder and not (decoder.meta.get("training") or {}).get("finetune_encoder"):
            raise FeatinvError(f"{source}: this decoder was not trained with "
                               "--finetune-encoder, so it is no autoencoder; pass it as a "
                               "decoder, not as an autoencoder (-a).")
        x = images_at(decoder.config["image_size"])
        return decoder.meta["feature"]["name"], perturbation_errors(extractor, decoder, x,
                                                                    which, seed)

    rows, auto = [], []
    for source in decoders:
        layer, errors = measure(source, list(names) if names else None)
        rows.append({"layer": layer, "decoder": str(source), "errors": errors})
        if on_layer is not None:
            on_layer(rows[-1])
    for source in autoencoders:
        layer, errors = measure(source, ["none"], autoencoder=True)
        auto.append({"layer": layer, "decoder": str(source), "error": errors["none"]})
    if isinstance(data, torch.Tensor):
        n_images, where = len(data), None
    else:
        n_images, where = (len(next(iter(images.values()))) if images else 0), str(data)
    return {"data": where, "n_images": n_images, "seed": seed, "layers": rows,
            "autoencoder": auto}


@torch.no_grad()
def reconstruction_strip(decoders: Iterable[Source], image: torch.Tensor,
                         device: str | torch.device | None = None) -> torch.Tensor:
    """``image`` ``(3, H, W)`` followed by its reconstruction by each decoder, in one row (the
    picture beside Figure 7: what each layer keeps)."""
    dev = pick_device(device)
    pictures = [image[None].cpu()]
    for source in decoders:
        extractor, decoder = load_pair(source, dev)
        pictures.append(reconstruct(extractor, decoder, image[None].to(dev)).cpu())
    return make_grid([torch.cat(pictures)])


@torch.no_grad()
def interpolation_strip(extractor: Extractor, decoder: Decoder, a: torch.Tensor,
                        b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """A | the features between A and B decoded, ``steps`` of them | B (Figure 10)."""
    strip = interpolate(extractor, decoder, a, b, steps).cpu()
    return make_grid([torch.cat([a[None].cpu(), strip, b[None].cpu()])])


@torch.no_grad()
def topk_strip(extractor: Extractor, decoder: Decoder, image: torch.Tensor, k: int
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """``image`` ``(3, H, W)`` | decoded from all class scores | the top ``k`` only | all but
    the top ``k`` (Figure 8), and each reconstruction's distance to the image."""
    x = image[None]
    variants = topk_variants(encode(extractor, decoder, x), k)
    recon = {name: decode(decoder, f).cpu() for name, f in variants.items()}
    strip = make_grid([torch.cat([x.cpu()] + [recon[name] for name in TOPK_VARIANTS])])
    distances = {name: float(reconstruction_distances(x.cpu(), recon[name])[0])
                 for name in TOPK_VARIANTS}
    return strip, distances


@torch.no_grad()
def sampled_images(extractor: Extractor, decoder: Decoder, data: Source | torch.Tensor,
                   limit: int | None = None, method: str = "histogram", count: int = 8,
                   contrast: float = 2.0, seed: int = 0, batch_size: int = 32,
                   on_error: Callable[[str], None] | None = None) -> torch.Tensor:
    """``count`` images decoded from random features that imitate those of the photos below
    ``data`` (``method``: one of ``featinv.choices.SAMPLERS``; Figure 11), in one row;
    unreadable photos go to ``on_error``."""
    if method not in SAMPLERS:
        raise FeatinvError(f"Unknown sampler '{method}'; choose one of {', '.join(SAMPLERS)}.")
    x = data if isinstance(data, torch.Tensor) else \
        load_square_images(data, decoder.config["image_size"], limit, on_error)[0]
    feats = torch.cat([encode(extractor, decoder, x[i:i + batch_size]).cpu()
                       for i in range(0, len(x), batch_size)])
    draw = getattr(FeatureSampler(feats), method)
    return make_grid([decode(decoder, draw(count, contrast, seed)).cpu()])


@torch.no_grad()
def unit_images(decoder: Decoder, units: Sequence[int], value: float | None = None
                ) -> torch.Tensor:
    """One image per unit, decoded from that unit alone active (supplementary Figure 17)."""
    feats = torch.cat([unit_features(decoder, u, value) for u in units])
    return make_grid([decode(decoder, feats).cpu()])
