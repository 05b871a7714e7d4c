"""Reading, cropping and writing images. Every failure is an ``ImageError`` naming the file.

Tensors are float ``(3, H, W)`` in [0, 1] (or ``(B, 3, H, W)`` batches); files are read with
Pillow, EXIF orientation applied, any mode converted to RGB.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, FeatinvError, ImageError, ShapeError, pixel_size, printable
from ..limits import MAX_RESIZED_PIXELS
from . import frames
from .decode_output import PIL_DIR, is_tiff, stderr_held
from .examples import (EXAMPLE_LOADERS, EXAMPLE_PREFIX, EXAMPLES,  # noqa: F401 (public here)
                       example_image)
from .files import file_kind, write_output
from .marks import png_info
from .pixels import (BYTE_SCALE, UNIT_SCALE, pixel_type,  # noqa: F401 (public here)
                     to_rgb as _to_rgb)
from .sizes import (MAX_ASPECT, MAX_ENLARGE, MIN_WORK_SIDE, check_side,  # noqa: F401 (public here)
                    check_decode_budget, check_decode_room, check_square, decode_bytes,
                    fitted_size, max_file_bytes, shorter_side_size)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
MAX_PIXELS = 40_000 * 40_000 // 4  # 400 megapixels: beyond this, refuse (decompression bombs)


def _check_file(path: Path) -> int:
    """The size in bytes of the image file ``path``; an ``ImageError`` for a folder, a missing,
    empty or unreadable file, and anything that is not a regular file (a FIFO would block, a
    link to ``/dev/zero`` never ends)."""
    if path.is_dir():
        from .marks import featinv_output

        files = find_images(path)  # a folder whose PNGs featinv wrote all were left out
        if files and all(featinv_output(f) for f in files):
            raise ImageError(f"{printable(path)}: holds only pictures featinv wrote "
                             "(reconstructions, skipped), no photos; pass the photos' folder, "
                             "or name a picture's file to read it on purpose.")
        raise ImageError(f"{printable(path)}: is a directory, not an image file.")
    if not path.exists():
        raise ImageError(f"{printable(path)}: no such file.")
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{printable(path)}: {file_kind(st.st_mode)}, not an image file; "
                         "featinv reads only regular files.")
    if st.st_size == 0:
        if str(path.resolve()).startswith(("/proc/", "/sys/")):  # the kernel's, sized 0
            raise ImageError(f"{printable(path)}: a file of the kernel ({path.resolve().parts[1]}"
                             "), not an image file; featinv reads only regular files.")
        raise ImageError(f"{printable(path)}: empty file (0 bytes).")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{printable(path)}: cannot read file (Permission denied); fix its "
                         "permissions.")
    return st.st_size


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of an image file; ``ImageError`` if it is missing, empty, unreadable or
    longer than ``limit`` bytes (see ``max_file_bytes``)."""
    path = Path(path)
    size = _check_file(path)
    if limit is not None and size > limit:
        raise ImageError(f"{printable(path)}: {size} bytes, far more than its picture needs "
                         f"(data appended to the image?); re-save the image.")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{printable(path)}: cannot read file ({exc.strerror or exc}).") from None


@contextlib.contextmanager
def _opened(path: Path, data: bytes | None = None, file_bytes: int | None = None):
    """``Image.open`` (header read, pixels not yet decoded), every failure an ``ImageError``.

    Refused from the header: more pixels than ``MAX_PIXELS`` (or Pillow's bomb guard), pixels
    whose decoding would take more than the memory budget, and a file far longer than its
    picture needs (``file_bytes``, see ``max_file_bytes``: data appended to an image would be
    read into memory whole by the training loaders)."""
    try:
        # Pillow's own notes on a file it reads anyway ("Tag data larger than file. Skipping
        # tag ...", "Truncated File Read") are dropped: the file is read or refused in one line
        with warnings.catch_warnings(record=True) as noted:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{printable(path)}: {pixel_size(img.width, img.height)} "
                                     "is too large "
                                     f"(limit {MAX_PIXELS // 1_000_000} megapixels); "
                                     "downscale it first.")
                check_decode_budget(img.width, img.height, printable(path))
                size = len(data) if data is not None else file_bytes
                frames.check_length(img, size, printable(path))
                if frames.several(img):  # the first is read, of any format (io.frames)
                    frames.note_first_only(printable(path), img)
                yield img
        for note in noted:  # others' warnings go on as they came
            if not note.filename.startswith(PIL_DIR):
                warnings.warn_explicit(note.message, note.category, note.filename, note.lineno)
    except ImageError:
        raise
    except UnidentifiedImageError:
        if is_tiff(path, data):  # a pixel type Pillow has no reader for, or a damaged one
            raise ImageError(f"{printable(path)}: a TIFF file Pillow cannot read: damaged, or of "
                             "a pixel type it lacks (64-bit or 16-bit float, 64-bit integer, "
                             "signed or float colour); re-save it as an 8- or 16-bit unsigned "
                             "TIFF or PNG.") from None
        raise ImageError(f"{printable(path)}: not an image file Pillow can read.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{printable(path)}: image is too large (decompression-bomb guard); "
                         "downscale it first.") from None
    except PermissionError:
        raise ImageError(f"{printable(path)}: cannot read file (Permission denied); fix its "
                         "permissions.") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(f"{printable(path)}: cannot decode image ({printable(exc)}).") from None


def probe_image(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding the pixels;
    ``ImageError`` for anything that is not a readable image of a sane size."""
    return _probe(path)[0]


def _probe(path: str | Path) -> tuple[tuple[int, int], int]:
    """``probe_image``, and the most bytes the file may have (``io.frames.file_bound``)."""
    path = Path(path)
    size = _check_file(path)
    with _opened(path, file_bytes=size) as img:
        return img.size, frames.file_bound(img)


def open_rgb(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open an image file as an RGB ``PIL.Image`` with EXIF orientation applied.

    ``skimage:NAME`` opens an example photo bundled with scikit-image instead. ``data``: the
    file's bytes, when the caller has read them already.
    """
    return open_fitted(path, data=data)


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` once the EXIF orientation is applied, from what the header holds
    (Pillow's ``getexif`` of a PNG decodes the whole image to look for a late eXIf chunk)."""
    try:
        if img.format in ("JPEG", "MPO", "TIFF", "WEBP"):
            orientation = img.getexif().get(0x0112, 1)
        elif isinstance(img.info.get("exif"), bytes):
            exif = Image.Exif()
            exif.load(img.info["exif"])
            orientation = exif.get(0x0112, 1)
        else:
            orientation = 1
    except Exception:  # a damaged EXIF block: Pillow's exif_transpose ignores it too
        orientation = 1
    return (img.height, img.width) if orientation in (5, 6, 7, 8) else img.size


DRAFT_PIXELS = MAX_RESIZED_PIXELS  # JPEGs with more pixels are decoded at a reduced scale


def open_fitted(path: str | Path, fit: Callable[[int, int], tuple[int, int]] | None = None,
                data: bytes | None = None) -> Image.Image:
    """An image file (or ``skimage:NAME``) as an RGB ``PIL.Image``, EXIF orientation applied.

    ``fit(width, height) -> (w, h)``, given the oriented size from the header, says the size
    the caller will resize to (and may refuse it before anything is decoded); a JPEG of more
    than ``DRAFT_PIXELS`` is then decoded at the smallest of Pillow's 1/2, 1/4, 1/8 scales
    that covers it. Not resized here. ``data``: the file's bytes, if read already."""
    if str(path).startswith(EXAMPLE_PREFIX):
        img = example_image(str(path))
        if fit is not None:
            fit(*img.size)
        return img
    path = Path(path)
    size = len(data) if data is not None else _check_file(path)
    with _opened(path, data, size) as img:
        if fit is not None:
            width, height = _oriented_size(img)
            want = fit(width, height)
            if img.format == "JPEG" and width * height > DRAFT_PIXELS:
                scale = max(want[0] / width, want[1] / height)
                img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        check_decode_room(img.width, img.height, printable(path), img.format)
        kind = pixel_type(img)  # from the header's tags, before the image is transposed
        try:
            said: list[str] = []
            try:
                with stderr_held(said, img.format == "TIFF"):  # libtiff writes to fd 2
                    img.load()
            except OSError as exc:
                if said:  # what libtiff said is the reason; Pillow's is a code ("error -2")
                    raise OSError(said[0].rstrip(".")) from exc
                raise
            ImageOps.exif_transpose(img, in_place=True)  # no copy of a big image
            return _to_rgb(img, printable(path), kind)
        except MemoryError:
            raise ImageError(f"{printable(path)}: not enough memory to decode it "
                             f"({pixel_size(img.width, img.height)}); downscale it first."
                             ) from None


def load_fitted(path: str | Path, size: int | None = None, max_side: int | None = None,
                crop: bool = False, name: str | None = None) -> torch.Tensor:
    """An image file (or ``skimage:NAME``) as float ``(3, H, W)`` in [0, 1] at the size the
    commands work at (``fitted_size``: the shorter side resized to ``size``, ``crop``: the
    centred square, the longer side capped at ``max_side``), sized from the header, decoded
    reduced where the format allows and resized while 8-bit: bounded by the output."""
    return pil_to_tensor(fitted_image(path, size, max_side, crop, name))


def fitted_image(path: str | Path, size: int | None = None, max_side: int | None = None,
                 crop: bool = False, name: str | None = None,
                 data: bytes | None = None) -> Image.Image:
    """``load_fitted`` as an RGB ``PIL.Image`` (``data``: the file's bytes, when read)."""
    name = name or printable(path)
    plan: dict[str, tuple[int, int]] = {}

    def fit(width: int, height: int) -> tuple[int, int]:
        plan["size"] = fitted_size(width, height, size, max_side, crop, name)
        if crop:  # the square that is cropped, at the file's scale
            return (math.ceil(width * plan["size"][0] / min(width, height)),) * 2
        return plan["size"]

    img = open_fitted(path, fit, data)
    new = plan["size"]
    if not crop and (img.width > img.height) != (new[0] > new[1]) and new[0] != new[1]:
        # an EXIF block after the pixels (seen only once decoded) rotated the image
        new = fitted_size(img.width, img.height, size, max_side, crop, name)
    if crop:
        side = min(img.size)
        img = img.crop(square_crop_box(img.width, img.height, side))
    return img if img.size == new else img.resize(new, Image.BICUBIC)


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file, read once its header shows a sane image and the file no
    longer than that needs (``max_file_bytes``: gigabytes appended are refused, not read)."""
    return read_bytes(path, _probe(path)[1])


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> float ``(3, H, W)`` in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def check_image_tensor(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """``image`` if it is a float ``(3, H, W)`` (or ``(B, 3, H, W)``) tensor of finite values in
    [0, 1], else a ``ShapeError`` that says what to change (e.g. 0-255 values: divide by 255).
    One reduction and host sync: for API entry points, not per training step."""
    if not isinstance(image, torch.Tensor):
        raise ShapeError(f"{what}: expected a tensor, got {type(image).__name__}.")
    if image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise ShapeError(f"{what}: expected an RGB tensor of shape (3, H, W) or (B, 3, H, W), "
                         f"got {tuple(image.shape)}.")
    if not image.is_floating_point():
        raise ShapeError(f"{what}: expected float values in [0, 1], got {image.dtype} (for 8-bit "
                         "pixels: image.float() / 255).")
    if image.numel() == 0:
        raise ShapeError(f"{what}: the tensor is empty ({tuple(image.shape)}).")
    if not bool(torch.isfinite(image).all()):
        raise ShapeError(f"{what}: the image contains NaN or infinite values.")
    low, high = float(image.min()), float(image.max())
    if low < -1e-4 or high > 1 + 1e-4:
        hint = " (0-255 pixels: divide by 255)" if high > 1.5 else ""
        raise ShapeError(f"{what}: expected float values in [0, 1], got values in "
                         f"[{low:g}, {high:g}]{hint}.")
    return image


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """float ``(3, H, W)`` (clamped to [0, 1]) -> RGB ``PIL.Image``."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(image.shape)}")
    arr = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as float ``(3, H, W)`` in [0, 1]."""
    return load_fitted(path)


def square_crop_box(width: int, height: int, side: int, left: int | None = None,
                    top: int | None = None) -> tuple[int, int, int, int]:
    """Box of a ``side`` square, centred unless ``left``/``top`` are given."""
    left = (width - side) // 2 if left is None else left
    top = (height - side) // 2 if top is None else top
    return (left, top, left + side, top + side)


def center_crop_resize(img: Image.Image, size: int) -> Image.Image:
    """Largest centred square, resized to ``size x size`` (Pillow's antialiased bicubic)."""
    side = min(img.size)
    return img.crop(square_crop_box(img.width, img.height, side)).resize(
        (size, size), Image.BICUBIC)


def load_square(path: str | Path, size: int) -> torch.Tensor:
    """The largest centred square of an image file (or ``skimage:NAME``), resized to ``size``:
    ``(3, size, size)`` in [0, 1] (refused from the header as ``fitted_size``)."""
    return load_fitted(path, size, crop=True)


def resize_shorter_side(img: Image.Image, size: int, name: str = "image") -> Image.Image:
    """Resize so the shorter side is ``size`` px, keeping the aspect ratio (bounded as
    ``shorter_side_size``; ``name`` goes into its error message)."""
    new = shorter_side_size(img.width, img.height, size, name)
    return img if new == img.size else img.resize(new, Image.BICUBIC)


def save_png(image: torch.Tensor, path: str | Path, about: str | None = None) -> Path:
    """Write float ``(3, H, W)`` as PNG (atomically), creating parent folders, marked as
    featinv's (``io.marks``; ``about``: what it is); a ``FeatinvError`` when it cannot be."""
    picture, info = tensor_to_pil(image), png_info(about)
    return write_output(path, lambda tmp: picture.save(tmp, format="PNG", pnginfo=info))


def make_grid(rows: Sequence[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Tile rows of equally sized images ``[(N, 3, H, W), ...]`` into one ``(3, H', W')`` image."""
    n_rows, n_cols = len(rows), max(r.shape[0] for r in rows)
    h, w = rows[0].shape[-2:]
    out = torch.ones(3, n_rows * (h + pad) + pad, n_cols * (w + pad) + pad)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[:, y:y + h, x:x + w] = img.detach().float().clamp(0, 1).cpu()
    return out


def find_images(root: str | Path) -> list[Path]:
    """Image files below ``root`` (recursive, by extension), sorted.

    Symbolic links to folders are followed; a folder reached twice (a link loop, or two links to
    one folder) is searched once. Entries that are not regular files (FIFOs, links to devices,
    dangling links) are listed too, for the reader to report. A sub-folder that cannot be listed is a ``DataError``: leaving
    it out would silently use a subset.
    """
    root = Path(root)

    def unreadable(exc: OSError) -> None:
        where = "" if Path(exc.filename or root) == root else f" below '{printable(root)}'"
        raise DataError(f"Folder '{printable(exc.filename)}'{where} cannot be read "
                        f"({exc.strerror or exc}); fix its permissions or move it out.")

    found, seen = [], set()
    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort(key=lambda d: (os.path.islink(os.path.join(folder, d)), d))  # real ones first
        # every entry named like an image, regular or not: a FIFO, a link to /dev/zero or a
        # dangling link is then reported by whoever reads it, not left out without a word
        found += [Path(folder, f) for f in files if os.path.splitext(f)[1].lower()
                  in IMAGE_EXTENSIONS]
    return sorted(found)


