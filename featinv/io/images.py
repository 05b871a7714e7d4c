"""Reading, cropping and writing images. Every failure is an ``ImageError`` naming the file.

Tensors are float ``(3, H, W)`` in [0, 1] (or ``(B, 3, H, W)`` batches); files are read with
Pillow, EXIF orientation applied, any mode converted to RGB.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError, FeatinvError, ImageError, ShapeError, printable
from ..limits import MAX_RESIZED_PIXELS, MAX_SIDE
from .files import write_output

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
MAX_PIXELS = 40_000 * 40_000 // 4  # 400 megapixels: beyond this, refuse (decompression bombs)


def _float_to_8bit(arr: np.ndarray, name: str) -> np.ndarray:
    """A float picture in [0, 1] (or 0-255) as uint8; anything else is an ``ImageError``."""
    if not np.isfinite(arr).all():
        raise ImageError(f"{name}: float image with NaN or infinite pixels; repair or re-export "
                         "it.")
    low, high = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if low < 0 or high > 255:
        raise ImageError(f"{name}: float image with values in [{low:g}, {high:g}]; featinv reads "
                         "float images in [0, 1] (or 0-255). Rescale it to [0, 1] first.")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    if img.mode == "F":  # 32-bit float gray (float TIFFs): [0, 1] or 0-255, not clipped to black
        img = Image.fromarray(_float_to_8bit(np.asarray(img, dtype=np.float64), name))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit gray: rescale, don't clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent parts become white
    return img.convert("RGB")


EXAMPLE_PREFIX = "skimage:"
EXAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
# the loaders of skimage.data that return an 8-bit picture bundled with scikit-image (no
# download); skimage:NAME calls nothing else
EXAMPLE_LOADERS = frozenset({
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "text"})


def example_image(name: str) -> Image.Image:
    """A photo bundled with scikit-image (``astronaut``, ``coffee``, ... : ``EXAMPLE_LOADERS``)
    as RGB."""
    if name.startswith(EXAMPLE_PREFIX):
        name = name[len(EXAMPLE_PREFIX):]
    if name not in EXAMPLE_LOADERS:
        raise ImageError(f"{EXAMPLE_PREFIX}{printable(name)}: scikit-image has no example image "
                         f"'{printable(name)}'; try "
                         f"{', '.join(EXAMPLE_PREFIX + n for n in EXAMPLES)}.")
    from skimage import data

    try:
        arr = np.asarray(getattr(data, name)())
    except (OSError, ImportError, ValueError) as exc:  # a damaged scikit-image install
        raise ImageError(f"{EXAMPLE_PREFIX}{name}: scikit-image cannot load it ({exc}); "
                         "reinstall scikit-image.") from None
    if arr.ndim not in (2, 3) or arr.dtype != np.uint8:
        raise ImageError(f"{EXAMPLE_PREFIX}{name}: not an 8-bit picture.")
    return _to_rgb(Image.fromarray(arr))


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ImageError(f"{printable(path)}: is a directory, not an image file.")
    if not path.exists():
        raise ImageError(f"{printable(path)}: no such file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{printable(path)}: empty file (0 bytes).")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{printable(path)}: cannot read file (Permission denied); fix its "
                         "permissions.")


def read_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; ``ImageError`` if it is missing, empty or unreadable."""
    path = Path(path)
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{printable(path)}: cannot read file ({exc.strerror or exc}).") from None


@contextlib.contextmanager
def _opened(path: Path, data: bytes | None = None):
    """``Image.open`` (header read, pixels not yet decoded), every failure an ``ImageError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{printable(path)}: {img.width}x{img.height} px is too large "
                                     f"(limit {MAX_PIXELS // 1_000_000} megapixels); "
                                     "downscale it first.")
                yield img
    except ImageError:
        raise
    except UnidentifiedImageError:
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
    path = Path(path)
    _check_file(path)
    with _opened(path) as img:
        return img.size


def open_rgb(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open an image file as an RGB ``PIL.Image`` with EXIF orientation applied.

    ``skimage:NAME`` opens an example photo bundled with scikit-image instead. ``data``: the
    file's bytes, when the caller has read them already.
    """
    if str(path).startswith(EXAMPLE_PREFIX):
        return example_image(str(path))
    path = Path(path)
    if data is None:
        _check_file(path)
    with _opened(path, data) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
        return _to_rgb(img, printable(path))


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
    return pil_to_tensor(open_rgb(path))


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
    ``(3, size, size)`` in [0, 1]."""
    return pil_to_tensor(center_crop_resize(open_rgb(path), size))


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
        raise ImageError(f"{name}: resizing {width}x{height} px to a shorter side of {size} px "
                         f"gives {new[0]}x{new[1]} px, over the limit of "
                         f"{MAX_RESIZED_PIXELS // 1_000_000} megapixels; crop the image to a "
                         "less elongated shape or use a smaller --size.")
    return new


def resize_shorter_side(img: Image.Image, size: int, name: str = "image") -> Image.Image:
    """Resize so the shorter side is ``size`` px, keeping the aspect ratio (bounded as
    ``shorter_side_size``; ``name`` goes into its error message)."""
    new = shorter_side_size(img.width, img.height, size, name)
    return img if new == img.size else img.resize(new, Image.BICUBIC)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write float ``(3, H, W)`` as PNG (atomically), creating parent folders; a
    ``FeatinvError`` when the file cannot be written."""
    picture = tensor_to_pil(image)
    return write_output(path, lambda tmp: picture.save(tmp, format="PNG"))


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
    one folder) is searched once. A sub-folder that cannot be listed is a ``DataError``: leaving
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
        found += [Path(folder, f) for f in files if os.path.splitext(f)[1].lower()
                  in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, f))]
    return sorted(found)


