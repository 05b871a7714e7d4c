"""Load trained decoders and invert images in one call.

``load_decoder`` accepts a checkpoint path or the name of a representation with a shipped
decoder; ``invert`` goes image -> features -> decoder -> image.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from PIL import Image

from . import checkpoint
from .checkpoint import ENCODER_PREFIX, decoder_metadata, save_decoder  # noqa: F401 (public here too)
from .decoders import Decoder, rebuild_decoder
from .errors import CheckpointError, FeatinvError, UnknownFeatureError, printable
from .images import (check_image_tensor, load_image, pil_to_tensor, resize_shorter_side,
                     shorter_side_size, tensor_to_pil)
from .limits import MAX_SIDE
from .layout import layout_from_json
from .registry import get_feature, get_spec
from .spec import Extractor

ZOO_DIR = Path(__file__).parent / "zoo"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; anything else as given, refused
    with one line when it is not a device name or this machine has no such device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FeatinvError(f"--device {printable(device)}: not a device name; use cpu, cuda, "
                           "cuda:N or auto.") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FeatinvError(f"--device {device}: this machine has no CUDA GPU that PyTorch "
                               "can use (no driver, or a CPU-only PyTorch); use --device cpu "
                               "or auto.")
        if dev.index is not None and dev.index >= count:
            raise FeatinvError(f"--device {device}: this machine has {count} CUDA GPU(s), "
                               f"cuda:0 to cuda:{count - 1}.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise FeatinvError(f"--device {device}: Apple's MPS is not available here; use --device "
                           "cpu or auto.")
    return dev


def shipped_decoder_path(name: str) -> Path | None:
    path = ZOO_DIR / f"{name}.safetensors"
    return path if path.is_file() else None


def _resolve_checkpoint(name_or_checkpoint: str | Path) -> Path:
    text = str(name_or_checkpoint)
    path = Path(text)
    if path.is_dir() and (path / "decoder.safetensors").is_file():  # a training run's folder
        return path / "decoder.safetensors"
    if path.suffix == ".safetensors" or path.exists() or "/" in text or "\\" in text:
        return path
    text = get_spec(text).name  # unknown names fail here, with a suggestion; "HOG" is "hog"
    shipped = shipped_decoder_path(text)
    if shipped is None:
        raise CheckpointError(f"No shipped decoder for '{text}' yet. Train one with 'featinv "
                              f"train --feature {text} ...' and pass --checkpoint.")
    return shipped


def load_decoder(name_or_checkpoint: str | Path, device: str | torch.device | None = "cpu",
                 feature: str | None = None) -> Decoder:
    """A trained decoder (eval mode) from a checkpoint path or a representation name.

    ``decoder.meta`` holds the checkpoint's metadata. With ``feature``, a checkpoint trained for
    another representation is refused.
    """
    path = _resolve_checkpoint(name_or_checkpoint)
    tensors, meta = checkpoint.load(path)
    try:
        name = meta["feature"]["name"]
        params = dict(meta["feature"]["params"])
        stored_layout = layout_from_json(meta["layout"])
        config = dict(meta["decoder"])
        size = int(meta["image_size"])
        if not 1 <= size <= MAX_SIDE:
            raise ValueError(f"image_size {size}")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise CheckpointError(f"{path}: incomplete featinv metadata (missing or invalid "
                              f"{exc}).") from None
    if feature is not None and feature.lower() != name:  # names are lower case
        raise CheckpointError(f"{path} is a decoder for '{name}', not '{feature}'. Pass a "
                              f"checkpoint trained with --feature {feature}.")
    try:
        spec = get_spec(name)
    except UnknownFeatureError:
        plugin = (meta["feature"].get("plugin") if isinstance(meta["feature"], dict) else None)
        raise CheckpointError(f"{path}: a decoder for '{name}', which no installed plugin "
                              f"provides (it was made with plugin '{plugin or 'unknown'}'); "
                              "install or enable that plugin ('featinv plugins' lists the "
                              "loaded ones).") from None
    try:
        current = spec.layout_rule(**params)(size, size)
    except FeatinvError as exc:
        raise CheckpointError(f"{path}: its parameters no longer fit '{name}' ({exc}).") from None
    if current != stored_layout:
        raise CheckpointError(f"{path}: trained on '{name}' features of layout {stored_layout}, "
                              f"but '{name}' now gives {current} at {size} px. The checkpoint "
                              "does not match this version of the representation.")
    with torch.device("meta"):  # the network described, without memory: check it first
        _check_weights_fit(path, _rebuild(path, spec, config), tensors)
    decoder = _rebuild(path, spec, config)
    encoder_state = {k[len(ENCODER_PREFIX):]: tensors.pop(k) for k in list(tensors)
                     if k.startswith(ENCODER_PREFIX)}
    try:
        decoder.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the decoder it describes ({first}). "
                              "The file was altered or written by an incompatible version.") from None
    decoder.meta = meta
    decoder.encoder_state = encoder_state or None
    return decoder.to(pick_device(device)).eval()


def _rebuild(path: Path, spec, config: dict[str, Any]) -> Decoder:
    """``rebuild_decoder``, every failure a ``CheckpointError`` naming the file."""
    try:
        return rebuild_decoder(spec, config)
    except FeatinvError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its decoder description is invalid ({type(exc).__name__}: "
                              f"{exc}); the file was altered or written by an incompatible "
                              "version.") from None


def _check_weights_fit(path: Path, described: torch.nn.Module,
                       tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint whose weights do not match the network its metadata describes
    (``described`` lives on the meta device), before that network takes any memory: metadata
    claiming a wider decoder would otherwise allocate gigabytes for a small file."""
    wanted = {k: tuple(v.shape) for k, v in described.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in tensors.items() if not k.startswith(ENCODER_PREFIX)}
    if wanted == have:
        return
    missing, unexpected = sorted(set(wanted) - set(have)), sorted(set(have) - set(wanted))
    shapes = [k for k in sorted(set(wanted) & set(have)) if wanted[k] != have[k]]
    first = (f"size mismatch for {shapes[0]}: the file has {list(have[shapes[0]])}, the "
             f"description needs {list(wanted[shapes[0]])}" if shapes else
             f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}")
    parameters = sum(math.prod(s) for s in wanted.values())
    raise CheckpointError(f"{path}: weights do not fit the decoder it describes ({first}; "
                          f"{parameters:,} parameters described, "
                          f"{sum(math.prod(s) for s in have.values()):,} stored). The file was "
                          "altered or written by an incompatible version.")


def extractor_for(decoder: Decoder) -> Extractor:
    """The representation (with the same parameters) a loaded decoder was trained on.

    A decoder trained with a fine-tuned encoder brings the encoder's weights along; they replace
    the representation's own (which are then not downloaded).
    """
    feature = decoder.meta["feature"]
    params = dict(feature["params"])
    state = getattr(decoder, "encoder_state", None)
    if not state:
        return get_feature(feature["name"], **params)
    if "weights" in params:
        params["weights"] = "random"  # overwritten just below
    extractor = get_feature(feature["name"], **params)
    try:
        extractor.module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the fine-tuned encoder stored with this decoder does not fit "
                              f"'{feature['name']}' ({str(exc).splitlines()[0]}).") from None
    return extractor.to(next(decoder.parameters()).device)



def _as_tensor(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return check_image_tensor(image if image.ndim == 3 else image.squeeze(0))
    if isinstance(image, Image.Image):
        return pil_to_tensor(image.convert("RGB"))
    return load_image(image)


def prepare(image, size: int | None) -> torch.Tensor:
    """``(3, H, W)`` with the shorter side resized to ``size`` (the decoder's training scale)."""
    img = _as_tensor(image)
    if size is None or min(img.shape[-2:]) == size:
        return img
    name = "image" if isinstance(image, (torch.Tensor, Image.Image)) else printable(image)
    height, width = img.shape[-2:]
    shorter_side_size(width, height, size, name)  # refuse absurd sizes before converting
    return pil_to_tensor(resize_shorter_side(tensor_to_pil(img), size, name))


@torch.no_grad()
def encode(extractor: Extractor, decoder: Decoder, images: torch.Tensor) -> torch.Tensor:
    """Features ``(B, *layout)`` of ``(B, 3, H, W)`` images, as the decoder expects them.

    Vector layouts, and decoders that need a fixed size, see the images resized to the decoder's
    training size.
    """
    device = next(decoder.parameters()).device
    images = images.to(device)
    train_size = decoder.config["image_size"]
    if decoder.layout.kind == "vector" and tuple(images.shape[-2:]) != (train_size, train_size):
        images = torch.nn.functional.interpolate(images, size=(train_size, train_size),
                                                 mode="bilinear", align_corners=False)
    return extractor.to(device)(images)


@torch.no_grad()
def decode(decoder: Decoder, features: torch.Tensor, size: tuple[int, int] | None = None
           ) -> torch.Tensor:
    """Images ``(B, 3, H, W)`` in [0, 1] from features; resized bilinearly to ``size`` (as the
    paper does) when given, else at the decoder's training size."""
    device = next(decoder.parameters()).device
    size = size or (decoder.config["image_size"],) * 2
    return decoder(features.to(device), size=tuple(size)).clamp(0, 1)


def reconstruct(extractor: Extractor, decoder: Decoder, images: torch.Tensor) -> torch.Tensor:
    """Decode the features of a batch ``(B, 3, H, W)``; output ``(B, 3, H, W)`` in [0, 1]."""
    return decode(decoder, encode(extractor, decoder, images), tuple(images.shape[-2:]))


def invert(images: Sequence | Iterable, feature: str | None = None,
           checkpoint: str | Path | None = None, device: str | None = None,
           size: int | None = None) -> list[torch.Tensor]:
    """Reconstruct each image from its features with a trained decoder.

    ``images``: paths, PIL images or ``(3, H, W)`` tensors in [0, 1]. ``checkpoint`` (a path)
    or ``feature`` (a name with a shipped decoder) selects the decoder. Each image is resized so
    its shorter side is ``size`` (default: the decoder's training size). Returns one
    ``(3, H', W')`` tensor per image.
    """
    if checkpoint is None and feature is None:
        raise FeatinvError("invert() needs a feature name or a checkpoint.")
    decoder = load_decoder(checkpoint or feature, device=pick_device(device), feature=feature)
    extractor = extractor_for(decoder)
    size = size or decoder.config["image_size"]
    return [reconstruct(extractor, decoder, prepare(img, size)[None])[0].cpu() for img in images]
