"""The paper's Figure 5 row: a photo and its reconstruction from every layer of one network
that has a shipped decoder (``featinv analyze layers``).

A "layer of a network" is a representation named ``NETWORK.LAYER`` (``squeezenet.fire5``,
``timm.resnet18.stage2``): the network is the name without its last part. Layers are shown in
the order their plugin registered them (input to output: conv1, fire2, ..., pool10); layers
built on demand follow, in natural order of their names. Only each layer's default shipped
decoder is used (``featinv zoo``; ``--decoder`` variants are other recipes of the same layer).

Pictures are ``(3, H, W)`` tensors in [0, 1]; labels are drawn under each tile.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from ..errors import FeatinvError, printable
from ..inversion.device import pick_device
from ..inversion.pipeline import reconstruct
from ..io.images import load_square, pil_to_tensor
from ..representation.hookspecs import DEFAULT_VARIANT
from ..representation.plugins import get_state, shipped_decoders
from .figures import load_pair

LABEL_HEIGHT = 18  # px of the band under each tile that holds its label
PAD = 2


def network_of(feature: str) -> str | None:
    """``"squeezenet.fire5"`` -> ``"squeezenet"``; ``None`` for a name without a dot (``hog``)."""
    return feature.rsplit(".", 1)[0] if "." in feature else None


def _depth_key(feature: str, registered: dict[str, int]) -> tuple:
    natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", feature)]
    return (0, registered[feature], []) if feature in registered else (1, 0, natural)


def shipped_layers(network: str | None = None) -> tuple[str, list[str]]:
    """The network (``network``, or the only one with shipped layer decoders) and its layers
    that have a default shipped decoder, input to output. One-line ``FeatinvError`` when there
    are none, or several networks and no ``network``."""
    found = shipped_decoders()
    layers = sorted({f for (f, d) in found.entries if d == DEFAULT_VARIANT and network_of(f)})
    networks = sorted({network_of(f) for f in layers})
    if network is None:
        if len(networks) > 1:
            raise FeatinvError(f"Layer decoders are shipped for several networks "
                               f"({', '.join(networks)}); pick one with -n NAME.")
        if not networks:
            raise FeatinvError("No layer of any network has a shipped decoder in this "
                               "installation ('featinv zoo' lists the shipped decoders); train "
                               "them or install a plugin that ships them.")
        network = networks[0]
    network = network.lower()
    mine = [f for f in layers if network_of(f) == network]
    if not mine:
        others = f" Networks with shipped layer decoders: {', '.join(networks)}." if networks \
            else " No network has any here ('featinv zoo' lists the shipped decoders)."
        raise FeatinvError(f"No layer of '{printable(network)}' has a shipped decoder.{others}")
    registered = {name: i for i, name in enumerate(get_state().features)}
    return network, sorted(mine, key=lambda f: _depth_key(f, registered))


def labelled_row(pictures: list[torch.Tensor], labels: list[str]) -> torch.Tensor:
    """Equally sized ``(3, h, w)`` pictures side by side on white, each with its label centred
    in a band below it: ``(3, PAD + h + LABEL_HEIGHT + PAD, n (w + PAD) + PAD)``."""
    from PIL import Image, ImageDraw, ImageFont

    h, w = pictures[0].shape[-2:]
    canvas = Image.new("RGB", (len(pictures) * (w + PAD) + PAD, h + LABEL_HEIGHT + 2 * PAD),
                       "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for i, (picture, label) in enumerate(zip(pictures, labels)):
        tile = (picture.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy() * 255)
        x = PAD + i * (w + PAD)
        canvas.paste(Image.fromarray(np.round(tile).astype(np.uint8)), (x, PAD))
        box = draw.textbbox((0, 0), label, font=font)
        draw.text((x + (w - (box[2] - box[0])) / 2, PAD + h + (LABEL_HEIGHT - box[3]) / 2),
                  label, fill="black", font=font)
    return pil_to_tensor(canvas)


@torch.no_grad()
def layer_strip(image: str, network: str | None = None, size: int | None = None,
                device: str | torch.device | None = None
                ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Figure 5's row for ``image`` (a file or ``skimage:NAME``): its centred square at ``size``
    px (default: the first layer decoder's training size), then its reconstruction from each
    shipped layer of ``network`` (see ``shipped_layers``), labelled.

    Returns the picture and ``{"network", "image", "size", "layers": [{"layer", "file",
    "weights", "rmse"}]}`` (``rmse``: root mean squared difference of the reconstruction's
    pixel values, in [0, 1], from the photo's).
    """
    dev = pick_device(device)
    network, layers = shipped_layers(network)
    found = shipped_decoders().entries
    pairs = [(layer, *load_pair(layer, dev)) for layer in layers]
    size = size or int(pairs[0][2].config["image_size"])
    x = load_square(image, size)[None]
    pictures, labels, rows = [x[0]], ["photo"], []
    for layer, extractor, decoder in pairs:
        y = reconstruct(extractor, decoder, x.to(dev)).cpu()
        pictures.append(y[0])
        labels.append(layer[len(network) + 1:])
        rows.append({"layer": layer, "file": str(found[layer, DEFAULT_VARIANT].file),
                     "weights": extractor.params.get("weights"),
                     "rmse": float((x - y).pow(2).mean().sqrt())})
    return labelled_row(pictures, labels), {"network": network, "image": str(image),
                                            "size": size, "layers": rows}
