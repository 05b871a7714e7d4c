"""How large an image is worked at, and what an image file may cost: arithmetic on sizes read
from headers, before anything is decoded (no Pillow, no PyTorch). ``featinv.io.images`` applies
it to files."""
from __future__ import annotations

from ..errors import FeatinvError, ImageError, ShapeError, pixel_size, printable
from .. import limits
from ..limits import DEFAULT_MAX_SIDE, MAX_RESIZED_PIXELS, MAX_SIDE
from ..wording import opt


def max_file_bytes(width: int, height: int, pictures: int = 1) -> int:
    """The most bytes an image file of ``pictures`` pictures (frames, pages) of ``width x
    height`` px can need: 16 per pixel (a 32-bit float RGBA TIFF, uncompressed) plus 16 MB of
    metadata (EXIF, ICC, thumbnails)."""
    return 16 * width * height * pictures + 16 * 2**20


def decode_bytes(width: int, height: int) -> int:
    """Bytes decoding a ``width x height`` image may take at its peak: Pillow's 4 bytes per
    pixel, a second copy while converting its mode, and the 8-byte floats of a 16/32-bit
    image's rescaling."""
    return 16 * width * height


def check_decode_budget(width: int, height: int, name: str = "image") -> None:
    """Refuse (``ImageError``) an image whose full decoding (``decode_bytes``) would pass the
    memory budget, from its header."""
    need, budget = decode_bytes(width, height), limits.memory_budget()
    if need > budget:
        raise ImageError(f"{name}: {pixel_size(width, height)} take about "
                         f"{need / 2**30:.1f} GiB to "
                         f"decode, over featinv's memory budget of {budget / 2**30:.1f} GiB; "
                         "downscale it first.")


SMALL_DECODE = 64 * 2**20  # bytes of decoding not worth a look at the free memory


def check_decode_room(width: int, height: int, name: str = "image",
                      image_format: str | None = None) -> None:
    """Refuse (``ImageError``) decoding ``width x height`` px, the size Pillow is about to decode
    at, when ``decode_bytes`` is more than the memory free now (``limits.memory_available``).
    Pillow decodes a JPEG at a reduced scale (``open_fitted``), but a PNG or any other format
    only in full: one just under Pillow's 89-megapixel guard takes about 1.4 GB, however small
    the size it is wanted at."""
    need = decode_bytes(width, height)
    free = limits.memory_available() if need > SMALL_DECODE else None
    if free is not None and need > free:
        kind = image_format or "file of this format"
        how = "" if image_format == "JPEG" else \
            f" (featinv decodes a {kind} in full, only a JPEG at a reduced scale)"
        raise ImageError(f"{name}: decoding {pixel_size(width, height)} takes about "
                         f"{need / 1e9:.1f} GB, "
                         f"more than the {free / 1e9:.1f} GB of memory free now{how}; downscale "
                         "it first.")


def check_side(size: int, what: str = "--size") -> int:
    """``size`` if it is a usable image side (1 to ``MAX_SIDE``), else a ``FeatinvError``."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIDE:
        raise FeatinvError(f"{what} {printable(size)}: an image side must be a whole number of "
                           f"px from 1 to {MAX_SIDE}.")
    return size


def shorter_side_size(width: int, height: int, size: int, name: str = "image") -> tuple[int, int]:
    """``(width, height)`` after resizing the shorter side to ``size`` px (aspect ratio kept);
    an ``ImageError`` when that would enlarge the image beyond ``MAX_RESIZED_PIXELS``."""
    scale = size / min(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new[0] * new[1] > max(width * height, MAX_RESIZED_PIXELS):
        raise ImageError(f"{name}: resizing {pixel_size(width, height)} to a shorter side of "
                         f"{size} px "
                         f"gives {new[0]}x{new[1]} px, over the limit of "
                         f"{MAX_RESIZED_PIXELS // 1_000_000} megapixels; crop the image to a "
                         f"less elongated shape or use a smaller {opt('size')}.")
    return new


MAX_ENLARGE = 16  # a square crop is enlarged at most this many times (a 1 px strip is no photo)
MAX_ASPECT = 100  # a square is cropped only from an image at most this elongated
MIN_WORK_SIDE = 4  # no representation works on an image with a side below this


def check_square(width: int, height: int, size: int, name: str = "image") -> None:
    """Refuse an image whose centred square (or a training crop of its shorter side) cannot
    stand for it at ``size`` px: enlarged more than ``MAX_ENLARGE`` times, or cut from an image
    more than ``MAX_ASPECT`` times longer than wide (a 1 x 80,000,000 px strip would be decoded
    whole for one pixel). From the header, before decoding."""
    side = min(width, height)
    if size > side * MAX_ENLARGE:
        raise ImageError(f"{name}: {pixel_size(width, height)} is too small or too elongated "
                         "to use "
                         f"at {size} px: its centred square ({side}x{side} px) would be "
                         f"enlarged {size / side:.0f} times (at most {MAX_ENLARGE}).")
    if max(width, height) > side * MAX_ASPECT:
        raise ImageError(f"{name}: {pixel_size(width, height)} is too elongated to cut a "
                         "square from "
                         f"({ratio_text(max(width, height), side, MAX_ASPECT)}:1, at most "
                         f"{MAX_ASPECT}:1); crop it first.")


def ratio_text(longer: int, shorter: int, limit: int) -> str:
    """``longer / shorter`` with as many decimals as show it beyond ``limit`` (2049 / 2 is
    '1024.5', not '1024', when at most 1024 is allowed)."""
    ratio = longer / shorter
    for decimals in range(7):
        text = f"{ratio:.{decimals}f}"
        if ratio <= limit or float(text) > limit:
            return text
    return text


def crop_advice(longer: int, shorter: int, smallest: int) -> str:
    """Advice for a strip whose shorter side reaches ``smallest`` px only when its longer side
    passes ``MAX_SIDE``: crop it (no --max-side can help)."""
    limit = MAX_SIDE // smallest
    return (f"crop it to a less elongated shape (it is {ratio_text(longer, shorter, limit)}:1; "
            f"at most {limit}:1 can be used)")


def check_large_enough(width: int, height: int, smallest: int, what: str, verb: str) -> None:
    """Refuse (``ShapeError``) an image worked at ``width x height`` px that is smaller than
    ``smallest``, the side a representation (``what``: its name and layout) needs, saying how to
    ``verb`` it ('invert', 'extract') at a size that works: a larger --size, with the
    --max-side that leaves its shorter side that large, or cropping when none does."""
    if min(width, height) >= smallest:
        return
    longer, shorter = max(width, height), min(width, height)
    need = -(-smallest * longer // shorter)  # the longer side once the shorter is `smallest`
    if need > MAX_SIDE:
        advice = crop_advice(longer, shorter, smallest)
    else:
        advice = f"{verb} it at a larger size, e.g. {opt('size', smallest)}"
        if need > DEFAULT_MAX_SIDE:
            advice += (f", with {opt('max_side', need)} or more: at {smallest} px its longer "
                       f"side is {need} px; or crop it")
    raise ShapeError(f"at {pixel_size(width, height)} the image is too small: {what} needs at "
                     f"least {smallest}x{smallest} px; {advice}.")


def fitted_size(width: int, height: int, size: int | None, max_side: int | None = None,
                crop: bool = False, name: str = "image") -> tuple[int, int]:
    """``(w, h)`` an image of ``width x height`` px is worked at (see ``load_fitted``).

    Refused (``ImageError``): enlarging beyond ``MAX_RESIZED_PIXELS`` (``shorter_side_size``),
    a centred square that cannot stand for the image (``check_square``), and a resize to a side under ``MIN_WORK_SIDE`` (a 1 x
    80,000,000 px strip, its longer side capped, would be 1 x 1024 px)."""
    if crop:
        target = min(width, height) if size is None else size
        check_square(width, height, target, name)
        new = (target, target)
    else:
        new = (width, height) if size is None else shorter_side_size(width, height, size, name)
    if max_side is not None and max(new) > max_side:
        scale = max_side / max(new)
        new = tuple(max_side if s == max(new) else max(1, round(s * scale)) for s in new)
    if min(new) < MIN_WORK_SIDE and new != (width, height):  # shrunk to nothing
        raise ImageError(f"{name}: image of {pixel_size(width, height)} is too small to use: at "
                         f"this size it would be {new[0]}x{new[1]} px, and featinv needs at least "
                         f"{MIN_WORK_SIDE} px on each side; {_thin_advice(width, height, size)}.")
    return new


def _thin_advice(width: int, height: int, size: int | None) -> str:
    """What makes a strip usable: sides that give its shorter side ``MIN_WORK_SIDE`` px, when
    ``--max-side`` can reach its longer side then, else cropping it."""
    longer, shorter = max(width, height), min(width, height)
    need = -(-MIN_WORK_SIDE * longer // shorter)  # the longer side once the shorter is 4 px
    if need > MAX_SIDE:
        return crop_advice(longer, shorter, MIN_WORK_SIDE)
    grow = (size is not None and size < MIN_WORK_SIDE) or (size is None and shorter < MIN_WORK_SIDE)
    return (f"use {opt('max_side', need)} or more"
            + (f" with {opt('size', MIN_WORK_SIDE)} or more" if grow else "") + ", or crop it")
