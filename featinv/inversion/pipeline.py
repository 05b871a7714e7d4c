"""The inversion pipeline: one ``Inverter`` (a representation, a decoder trained on it, the device
both run on) turns images into features and features back into images. The CLI (through
``methods.decoder_method``), ``featinv.invert``, evaluate, the demo, the figures and the model
card all invert through it.

``Inverter.load(reference)`` loads a decoder (``featinv.inversion.load``), builds the
representation it was trained on and puts both on one device, chosen once.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import torch

from ..decoders.networks import Decoder
from ..errors import FeatinvError
from ..io.images import check_side
from ..limits import DEFAULT_MAX_SIDE
from ..precision import autocast, check_precision
from ..representation.extract import check_finite
from ..representation.spec import Extractor
from .device import as_device
from .load import extractor_for, read_decoder
from .output_checks import FarFromRange, check_output, output_fault  # noqa: F401
from .sizing import default_size, fit_sides, pad_images, prepare


class Inverter:
    """Images ``(B, 3, H, W)`` in [0, 1] -> features -> reconstructions of the same shape.

    ``extractor``: the representation (default: the one ``decoder`` was trained on, with
    ``weights`` instead of its own network weights when given). ``device``: a ``torch.device``
    is used as chosen; anything else goes through ``pick_device`` (None: the decoder's own
    device). ``precision="bf16"``/``"fp16"`` decodes under autocast with channels-last
    activations (features stay fp32).
    """

    def __init__(self, decoder: Decoder, extractor: Extractor | None = None,
                 device: str | torch.device | None = None, precision: str = "fp32",
                 weights: str | None = None):
        self.device = as_device(device if device is not None
                                else next(decoder.parameters()).device)
        check_precision(precision, self.device)
        self.precision = precision
        self.decoder = decoder.to(self.device)
        if precision != "fp32":
            self.decoder.to(memory_format=torch.channels_last)
        self.extractor = (extractor if extractor is not None
                          else extractor_for(decoder, weights)).to(self.device)
        self._own_fault: str | None = None  # probes.own_features_fault, once needed

    @classmethod
    def load(cls, source: str | Path, feature: str | None = None, decoder: str | None = None,
             device: str | torch.device | None = None, precision: str = "fp32",
             weights: str | None = None) -> "Inverter":
        """The decoder of ``source`` (arguments as ``featinv.load_decoder``'s) with its
        representation, on ``device`` (moved there once; None/"auto": CUDA when available)."""
        dev = as_device(device)
        check_precision(precision, dev)  # before anything loads
        net = read_decoder(source, feature=feature, decoder=decoder)
        inverter = cls(net, device=dev, precision=precision, weights=weights)
        inverter.check_statistics(source)
        return inverter

    def check_statistics(self, label) -> None:
        """Refuse a decoder that featinv cannot have trained or built as it is
        (``decoder_checks.check_decoder``, on this device): batch-norm counts reset, pictures
        that do not or hardly depend on the features (forged weights drew one flat picture for
        every photo), or stored feature statistics that cannot be its representation's
        (``probes.statistics_fault`` on fixed test pictures). Its pictures of features like its
        training data's are kept for ``_far_from_range``."""
        from .decoder_checks import check_decoder
        from .probes import own_features_output

        out = own_features_output(self.decoder)
        self._own_fault = output_fault(out) or ""
        check_decoder(self.decoder, label, self.extractor, self.device, out)

    @property
    def feature(self) -> str:
        """The name of the representation inverted."""
        return self.decoder.meta["feature"]["name"] if getattr(self.decoder, "meta", None) \
            else self.extractor.name

    @property
    def image_size(self) -> int:
        """The decoder's training size (the scale it works at)."""
        return int(self.decoder.config["image_size"])

    @property
    def any_size(self) -> bool:
        """True when it inverts images at their own size (decoders of grid layouts)."""
        return self.decoder.layout.kind == "grid"

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, *layout)`` of ``(B, 3, H, W)`` images, as the decoder expects them
        (vector layouts see the images resized to the training size). NaN or infinite features
        (a plugin's bug) are refused here, once per batch."""
        images = images.to(self.device)
        size = self.image_size
        if self.decoder.layout.kind == "vector" and tuple(images.shape[-2:]) != (size, size):
            images = torch.nn.functional.interpolate(images, size=(size, size),
                                                     mode="bilinear", align_corners=False)
        features = self.extractor(images)
        check_finite(self.extractor, features, f"a batch of {len(images)} image(s)")
        return features

    @torch.no_grad()
    def decode(self, features: torch.Tensor, size: tuple[int, int] | None = None,
               in_range: bool = False) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] (fp32) from features, resized bilinearly to
        ``size`` (as the paper does) when given, else at the training size. ``in_range``: also
        judge an output far outside [0, 1] (``_far_from_range``), as ``reconstruct`` does;
        edited features (perturbed, interpolated, top-k) may take a decoder there."""
        size = tuple(size or (self.image_size,) * 2)
        with autocast(self.device, self.precision):
            out = self.decoder(features.to(self.device), size=size)
        out = check_output(out, self.precision, in_range=False)  # NaN: always refused
        fault = output_fault(out) if in_range else None
        if fault:
            self._far_from_range(out, fault)
        return out.clamp(0, 1).float()

    def _far_from_range(self, out: torch.Tensor, fault: str) -> None:
        """An output far outside [0, 1]: the decoder's fault (``DecoderOutputError``) when it
        draws features like its training data's far outside too (``probes``), else the
        input's: a ``FarFromRange`` warning, and the picture is clamped."""
        if self._own_fault is None:
            from .probes import own_features_fault

            self._own_fault = own_features_fault(self.decoder) or ""
        if self._own_fault:
            check_output(out, self.precision, in_range=True)  # raises, naming the fault
        warnings.warn(FarFromRange(
            f"the reconstruction lies far outside the image range [0, 1] ({fault}), though the "
            "decoder draws features like its training data's within it: the image is unlike "
            "what it was trained on; the picture is clamped."), stacklevel=3)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> reconstructions ``(B, 3, H, W)`` on the device. Sides the cells
        do not divide are padded first and cropped back after (``sizing.fit_sides``). An output
        far outside [0, 1] is refused as the decoder's fault when it draws features like its
        training data's far outside too (corrupt: its pictures would be saturated noise), else
        clamped with a ``FarFromRange`` warning (``_far_from_range``)."""
        height, width = images.shape[-2:]
        sides = fit_sides(self.extractor, self.decoder, height, width)
        features = self.encode(pad_images(images.to(self.device), sides))
        return self.decode(features, sides, in_range=True)[..., :height, :width]

    __call__ = reconstruct

    def invert(self, images: Sequence | Iterable, size: int | None = None,
               max_side: int | None = DEFAULT_MAX_SIDE) -> list[torch.Tensor]:
        """One ``(3, H', W')`` CPU tensor per image (a path, PIL image or ``(3, H, W)``
        tensor), worked at ``sizing.prepare(image, size or default_size, max_side)``."""
        size = size or default_size(self.decoder)
        return [self.reconstruct(prepare(img, size, max_side)[None])[0].cpu() for img in images]


def encode(extractor: Extractor, decoder: Decoder, images: torch.Tensor) -> torch.Tensor:
    """``Inverter(decoder, extractor).encode(images)``, on the decoder's device."""
    return Inverter(decoder, extractor).encode(images)


def decode(decoder: Decoder, features: torch.Tensor, size: tuple[int, int] | None = None
           ) -> torch.Tensor:
    """Images from features with ``decoder`` alone (no representation needed), on its device:
    ``Inverter.decode`` in fp32."""
    device = next(decoder.parameters()).device
    size = tuple(size or (decoder.config["image_size"],) * 2)
    with torch.no_grad():
        return check_output(decoder(features.to(device), size=size), in_range=False).clamp(0, 1)


def reconstruct(extractor: Extractor, decoder: Decoder, images: torch.Tensor) -> torch.Tensor:
    """``Inverter(decoder, extractor).reconstruct(images)``, on the decoder's device."""
    return Inverter(decoder, extractor).reconstruct(images)


def invert(images: Sequence | Iterable, feature: str | None = None,
           checkpoint: str | Path | None = None, device: str | None = None,
           size: int | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
           decoder: str | None = None) -> list[torch.Tensor]:
    """Reconstruct each image from its features with a trained decoder.

    ``images``: paths, PIL images or ``(3, H, W)`` tensors in [0, 1]. ``checkpoint`` (a path,
    or ``hf-hub:``/``local-dir:``/``zoo:`` reference) or ``feature`` (a name with a shipped
    decoder; ``decoder`` picks one of several, e.g. ``"realistic"``) selects the decoder. Each
    image is resized so its shorter side is ``size`` (default: its own size for grid layouts
    such as HOG, SIFT, LBP and CNN conv layers; the decoder's training size for vector
    layouts), then shrunk so its longer side is at most ``max_side`` (None: no cap). Returns
    one ``(3, H', W')`` tensor per image, of the size it was worked at (``size=128``: the
    decoders' training scale).
    """
    if checkpoint is None and feature is None:
        raise FeatinvError("invert() needs a feature name or a checkpoint.")
    if size is not None:
        check_side(size, "size")
    if max_side is not None:
        check_side(max_side, "max_side")
    from .sources import checkpoint_ref, shipped_ref

    source = checkpoint_ref(checkpoint) if checkpoint is not None else shipped_ref(feature)
    inverter = Inverter.load(source, feature=feature, decoder=decoder, device=device)
    return inverter.invert(images, size, max_side)
