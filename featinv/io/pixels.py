"""What the pixels of a picture that is not plain 8-bit mean, and the RGB picture they make.

Pillow's mode hides a file's number type (a signed 8-bit TIFF opens as 8-bit gray, signed 16-
and 32-bit and unsigned 32-bit TIFFs all as signed 32-bit): ``pixel_type`` reads it from the
TIFF's tags, and ``to_rgb`` rescales by it. Float pictures are read on a [0, 1] or 0-255
scale decided from their values, anything else refused (``ImageError``).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError


# Float pictures: which scale their values are on. [0, 1] allows resampling overshoot and a
# little highlight above 1 (clipped); 0-255 needs a brightest pixel of at least a tenth of 255
# (below that, a [0, 1] picture with strong highlights and a near-black 0-255 one look alike)
# and at most a tenth over 255. Anything else is refused rather than read on a guessed scale.
UNIT_SCALE = (-0.1, 1.5)  # lowest and highest value read as a [0, 1] picture
BYTE_SCALE = (-25.5, 25.5, 280.5)  # lowest value, least and most brightest value read as 0-255


def _float_to_8bit(arr: np.ndarray, name: str) -> np.ndarray:
    """A float picture on a 0-1 or 0-255 scale (``UNIT_SCALE``, ``BYTE_SCALE``; values beyond
    the scale's ends clipped) as uint8; anything else is an ``ImageError``."""
    if not np.isfinite(arr).all():
        raise ImageError(f"{name}: float image with NaN or infinite pixels; repair or re-export "
                         "it.")
    low, high = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    unit, byte = (tuple(float(np.float32(b)) for b in ends) for ends in (UNIT_SCALE, BYTE_SCALE))
    if unit[0] <= low and high <= unit[1]:  # the ends as a float32 file holds them (-0.1)
        scale = 255.0
    elif byte[0] <= low and byte[1] < high <= byte[2]:
        scale = 1.0
    else:
        raise ImageError(
            f"{name}: float image with values in [{low:g}, {high:g}]; featinv reads float images "
            f"in [0, 1] (from {UNIT_SCALE[0]:g} to {UNIT_SCALE[1]:g}, clipped) or 0-255 (the "
            f"brightest pixel from {BYTE_SCALE[1]:g} to {BYTE_SCALE[2]:g}), and this is neither. "
            "Rescale it to [0, 1] first.")
    return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)


_TIFF_SAMPLE_FORMAT, _TIFF_BITS = 339, 258  # TIFF tags: 1 unsigned, 2 signed, 3 float; bits
_I16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _tiff_type(img: Image.Image) -> tuple[int, int] | None:
    """``(sample format, bits per sample)`` of a TIFF's first sample, None for other files."""
    tags = getattr(img, "tag_v2", None)
    if img.format != "TIFF" or tags is None:
        return None
    try:
        fmt = tags.get(_TIFF_SAMPLE_FORMAT, (1,))
        bits = tags.get(_TIFF_BITS, (1,))
        fmt = fmt[0] if isinstance(fmt, tuple) else fmt
        bits = bits[0] if isinstance(bits, tuple) else bits
        return int(fmt), int(bits)
    except (TypeError, ValueError, IndexError):
        return None


def pixel_type(img: Image.Image) -> tuple[str, int] | None:
    """The number type of a one-band picture that is not plain 8-bit: ``("u" | "i" | "f",
    bits)`` (unsigned, signed, float), None for the modes Pillow converts to RGB itself.

    Pillow's mode alone hides it: a signed 8-bit TIFF opens as ``L`` (its bytes read as if
    unsigned), signed 16-bit, signed 32-bit and unsigned 32-bit TIFFs all as ``I`` (int32, the
    unsigned ones wrapped round), a 12-bit TIFF as ``I;16``. The TIFF's own tags tell them
    apart; PGM/PPM files of more than 8 bits are ``I`` scaled to 0-65535 by Pillow; ``I`` from
    any other format is taken as signed 32-bit."""
    tiff = _tiff_type(img)
    if img.mode == "F":
        return ("f", 32)
    if img.mode in _I16_MODES:
        bits = tiff[1] if tiff and 8 < tiff[1] < 16 else 16
        return ("u", bits)
    if img.mode == "I":
        if tiff and tiff[0] in (1, 2) and tiff[1] in (8, 16, 32):
            return ("u" if tiff[0] == 1 else "i", tiff[1])
        if img.format == "PPM":
            return ("u", 16)
        return ("i", 32)
    if img.mode == "L" and tiff == (2, 8):
        return ("i", 8)
    return None


def _integers_to_8bit(arr: np.ndarray, kind: str, bits: int, name: str) -> np.ndarray:
    """Integer pixels of type ``(kind, bits)`` (``pixel_type``) rescaled to uint8.

    8- to 16-bit types are rescaled by their type's range (a signed type by its positive half);
    32-bit ones by the range their values use (up to 255, 65535 or the type's top: 32-bit files
    often hold 8- or 16-bit data). Negative values are refused: a picture's pixel is a
    brightness from 0 up, and there is no one right way to map signed data to it."""
    if kind == "i" and bits == 8:
        arr = arr.view(np.int8)  # Pillow gave the signed bytes as unsigned
    elif kind == "u" and bits == 32:
        arr = arr.view(np.uint32)  # Pillow gave them as int32, the top half wrapped round
    low, high = int(arr.min(initial=0)), int(arr.max(initial=0))
    what = f"{'signed' if kind == 'i' else 'unsigned'} {bits}-bit integer image"
    if low < 0:
        raise ImageError(f"{name}: {what} with negative values ({low} to {high}); featinv reads "
                         "pixel values as brightness from 0 up and will not guess how to map "
                         "negatives. Shift and rescale it to unsigned 8 or 16 bits first.")
    top = float(2 ** (bits - (kind == "i")) - 1)
    if bits == 32:
        top = 255.0 if high <= 255 else 65535.0 if high <= 65535 else top
    out = np.asarray(arr, dtype=np.float64) / top * 255.0 + 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image, name: str = "image",
            kind: tuple[str, int] | None = None) -> Image.Image:
    """``img`` as an RGB picture: float, 16- and 32-bit, signed and unsigned one-band pictures
    rescaled by their type (``pixel_type``; ``kind``: that type, when taken before the image
    was transposed), transparency on white."""
    kind = kind or pixel_type(img)
    if kind is not None and kind[0] == "f":  # float TIFFs: [0, 1] or 0-255, not clipped to black
        img = Image.fromarray(_float_to_8bit(np.asarray(img, dtype=np.float64), name))
    elif kind is not None:
        img = Image.fromarray(_integers_to_8bit(np.asarray(img), kind[0], kind[1], name))
    if img.mode == "La":  # premultiplied gray and alpha: Pillow converts it only to LA
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent parts become white
    return img if img.mode == "RGB" else img.convert("RGB")
