"""Load trained decoders and invert images in one call.

``load_decoder`` accepts a checkpoint path or the name of a representation with a shipped
decoder; ``invert`` goes image -> features -> decoder -> image.

Sizes: decoders of grid layouts are fully convolutional, so ``invert`` works at the image's own
size by default (longer side capped at ``DEFAULT_MAX_SIDE``); vector layouts work at the
decoder's training size. A side that the representation's cells do not divide is reflect-padded
at the bottom/right to the next side at which the decoder's output has exactly the padded size
(``fit_sides``), and the reconstruction is cropped back, so outputs always have the input's size
and their pixels stay aligned with the cells (no stretching).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from PIL import Image

from ..io import checkpoint
from ..io.checkpoint import ENCODER_PREFIX, decoder_metadata, save_decoder  # noqa: F401 (public here too)
from ..decoders.networks import Decoder, rebuild_decoder
from ..errors import CheckpointError, FeatinvError, ShapeError, UnknownFeatureError, printable
from ..io.images import (check_image_tensor, check_side, fitted_size, load_fitted, load_image,
                         pil_to_tensor, shorter_side_size, tensor_to_pil)
from ..limits import DEFAULT_MAX_SIDE, MAX_SIDE
from ..representation.layout import CellGrid, layout_from_json
from ..representation.registry import get_feature, get_spec
from ..representation.plugins import shipped_decoder
from ..representation.spec import Extractor
from .zoo import ZOO_DIR  # noqa: F401 (public here too)


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


def shipped_decoder_path(name: str, decoder: str | None = None) -> Path | None:
    """The file of decoder ``decoder`` (default: ``"default"``) shipped for ``name``, if any."""
    try:
        return shipped_decoder(name, decoder).file
    except FeatinvError:
        return None


def load_decoder(name_or_checkpoint: str | Path, device: str | torch.device | None = "cpu",
                 feature: str | None = None, decoder: str | None = None,
                 params: dict[str, Any] | None = None) -> Decoder:
    """A trained decoder (eval mode) from a reference (``featinv.inversion.sources``): a path
    (a ``Path``, or text with ``/``, a leading ``.`` or a ``.safetensors`` end), a shipped name,
    ``local-dir:PATH`` or ``hf-hub:ORG/NAME[@REVISION]``.

    For a name, ``decoder`` picks one of the decoders shipped for it (``featinv zoo``; default
    ``"default"``); ``"hog.realistic"`` names the same as ``"hog", decoder="realistic"``; a
    ``decoder`` with a scheme (``hf-hub:...``) loads that decoder for the name. A bare name never
    means a file of the current folder (write ``./hog``). ``decoder.meta`` holds the checkpoint's
    metadata. With ``feature`` (and ``params``), a decoder trained for another representation
    (or with other parameters) is refused, naming both.
    """
    from . import sources

    if sources.has_scheme(decoder):  # load_decoder("hog", decoder="hf-hub:org/name")
        feature = feature or sources.feature_of(name_or_checkpoint, decoder)
        name_or_checkpoint, decoder = decoder, None
    if feature is not None and decoder is None:  # feature="hog.realistic" asks for 'hog'
        feature = sources.split_variant(feature)[0]
    path = sources.decoder_file(name_or_checkpoint, decoder)
    label = sources.describe_ref(name_or_checkpoint) if sources.has_scheme(name_or_checkpoint) \
        else path
    wanted, tensors, meta = params, *checkpoint.load(path)
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
        raise CheckpointError(f"{label} is a decoder for '{name}', not '{feature}'. Pass a "
                              f"checkpoint trained with --feature {feature}.")
    try:
        spec = get_spec(name)
    except UnknownFeatureError:
        plugin = (meta["feature"].get("plugin") if isinstance(meta["feature"], dict) else None)
        raise CheckpointError(f"{path}: a decoder for '{name}', which no installed plugin "
                              f"provides (it was made with plugin '{plugin or 'unknown'}'); "
                              "install or enable that plugin ('featinv plugins' lists the "
                              "loaded ones).") from None
    if wanted is not None:
        _check_params(label, spec, params, wanted)
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
    _check_finite(path, tensors)
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


def _check_finite(path, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or infinite values: such a decoder reconstructs a black or
    blank picture for every input (training never saves them; an edited or damaged file
    can hold them)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{printable(path)}: {len(bad)} weight tensor(s) hold NaN or "
                              f"infinite values (e.g. {printable(bad[0])}); the decoder would "
                              "reconstruct nothing. Use an intact copy, or train it again.")


def _check_params(label, spec, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse a decoder trained with other parameters than ``wanted``, naming both."""
    def normal(params: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(spec.resolve_params(params), default=str))

    want = normal(wanted)
    try:
        have = normal(stored)
    except FeatinvError as exc:
        raise CheckpointError(f"{label}: its parameters no longer fit '{spec.name}' ({exc}).") \
            from None
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if differ:
        def text(params):
            return ", ".join(f"{k}={params.get(k)!r}" for k in differ)
        raise CheckpointError(f"{label} is a decoder for '{spec.name}' with {text(have)}, not "
                              f"'{spec.name}' with {text(want)}; pass a decoder trained with "
                              "those parameters.")


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


def extractor_for(decoder: Decoder, weights: str | None = None) -> Extractor:
    """The representation (with the same parameters) a loaded decoder was trained on.

    A decoder trained with a fine-tuned encoder brings the encoder's weights along; they replace
    the representation's own (which are then not downloaded). ``weights``: other network
    weights to compute the features with; a warning says so when they are not the ones the
    decoder was trained against (``featinv.inversion.encoder_weights``).
    """
    from .encoder_weights import encoder_for

    return encoder_for(decoder, weights)



def _as_tensor(image) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return check_image_tensor(image if image.ndim == 3 else image.squeeze(0))
    if isinstance(image, Image.Image):
        return pil_to_tensor(image.convert("RGB"))
    return load_image(image)


def work_size(width: int, height: int, size: int | None, max_side: int | None = None,
              name: str = "image") -> tuple[int, int]:
    """``(width, height)`` to work at: the shorter side resized to ``size`` (None: as is), then
    shrunk, aspect ratio kept, so the longer side is at most ``max_side`` (None: no cap).
    Enlarging beyond ``MAX_RESIZED_PIXELS`` is refused as in ``shorter_side_size``, and so is a
    result with a side under ``MIN_WORK_SIDE`` (``featinv.io.images.fitted_size``)."""
    return fitted_size(width, height, size, max_side, name=name)


def prepare(image, size: int | None, max_side: int | None = None) -> torch.Tensor:
    """``(3, H, W)`` at ``work_size``: the shorter side resized to ``size`` (None: the image's
    own), the longer side at most ``max_side`` (Pillow's bicubic, as for training). A file is
    sized from its header before its pixels are decoded (``load_fitted``)."""
    if not isinstance(image, (torch.Tensor, Image.Image)):
        return load_fitted(image, size, max_side)
    img = _as_tensor(image)
    height, width = img.shape[-2:]
    new = work_size(width, height, size, max_side)  # refuses absurd sizes first
    if new == (width, height):
        return img
    return pil_to_tensor(tensor_to_pil(img).resize(new, Image.BICUBIC))


def fit_sides(extractor: Extractor, decoder: Decoder, height: int, width: int
              ) -> tuple[int, int]:
    """The smallest ``(H', W') >= (height, width)`` at which ``decoder`` reconstructs exactly
    ``H' x W'`` pixels from ``extractor``'s features: for cell grids (HOG, LBP, SIFT) decoded
    by a built-in network, the next sides with ``cells(side) * r == side`` (multiples of the
    cell for HOG, LBP and SIFT). ``(height, width)`` itself where no padding applies (vector
    layouts, other layout rules, plugin networks: their output is resized instead). An image
    smaller than the representation accepts is refused here, as unpadded."""
    rule, r = extractor.rule, decoder.output_factor()
    if r is None or not isinstance(rule, CellGrid):
        return height, width
    try:  # "too small" is refused before any padding
        rule(height, width)
    except ShapeError as exc:
        raise ShapeError(f"{exc}; invert it at a larger --size (size= in Python), e.g. "
                         f"{rule.smallest_side}.") from None

    def fit(side: int) -> int:
        for padded in range(side, side + 2 * r + 1):
            cells = rule(padded, padded).height  # square cells: each side on its own
            if cells * r == padded:
                return padded
        return side  # no such side nearby: the output is resized to this one

    return fit(height), fit(width)


def pad_images(images: torch.Tensor, sides: tuple[int, int]) -> torch.Tensor:
    """``(B, 3, H, W)`` reflect-padded at the bottom and right to ``sides`` (replicated where
    a side is too short to reflect)."""
    pad_h, pad_w = sides[0] - images.shape[-2], sides[1] - images.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return images
    short = pad_h >= images.shape[-2] or pad_w >= images.shape[-1]
    return torch.nn.functional.pad(images, (0, pad_w, 0, pad_h),
                                   mode="replicate" if short else "reflect")


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
    """Decode the features of a batch ``(B, 3, H, W)``; output ``(B, 3, H, W)`` in [0, 1].

    Sides the cells do not divide are padded first and cropped back after (``fit_sides``)."""
    height, width = images.shape[-2:]
    sides = fit_sides(extractor, decoder, height, width)
    out = decode(decoder, encode(extractor, decoder, pad_images(images, sides)), sides)
    return out[..., :height, :width]


def default_size(decoder: Decoder) -> int | None:
    """The shorter side ``invert`` works at by default: None (the image's own) for grid
    layouts, the training size for vector layouts."""
    return None if decoder.layout.kind == "grid" else int(decoder.config["image_size"])


def invert(images: Sequence | Iterable, feature: str | None = None,
           checkpoint: str | Path | None = None, device: str | None = None,
           size: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
           decoder: str | None = None) -> list[torch.Tensor]:
    """Reconstruct each image from its features with a trained decoder.

    ``images``: paths, PIL images or ``(3, H, W)`` tensors in [0, 1]. ``checkpoint`` (a path,
    or ``hf-hub:``/``local-dir:``/``zoo:`` reference) or ``feature`` (a name with a shipped
    decoder; ``decoder`` picks one of several, e.g. ``"realistic"``) selects the decoder. Each image is resized so
    its shorter side is ``size`` (default: its own size for grid layouts such as HOG, SIFT, LBP
    and CNN conv layers; the decoder's training size for vector layouts), then shrunk so its
    longer side is at most ``max_side`` (None: no cap). Returns one ``(3, H', W')`` tensor per
    image, of the size it was worked at (``size=128``: the decoders' training scale).
    """
    if checkpoint is None and feature is None:
        raise FeatinvError("invert() needs a feature name or a checkpoint.")
    if size is not None:
        check_side(size, "size")
    if max_side is not None:
        check_side(max_side, "max_side")
    from .sources import checkpoint_ref, shipped_ref

    source = checkpoint_ref(checkpoint) if checkpoint is not None else shipped_ref(feature)
    net = load_decoder(source, device=pick_device(device), feature=feature, decoder=decoder)
    extractor = extractor_for(net)
    size = size or default_size(net)
    return [reconstruct(extractor, net, prepare(img, size, max_side)[None])[0].cpu()
            for img in images]
