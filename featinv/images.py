"""Reading, cropping and writing images. Every failure is an ``ImageError`` naming the file.

Tensors are float ``(3, H, W)`` in [0, 1] (or ``(B, 3, H, W)`` batches); files are read with
Pillow, EXIF orientation applied, any mode converted to RGB.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
MAX_PIXELS = 40_000 * 40_000 // 4  # 400 megapixels: beyond this, refuse (decompression bombs)


def _to_rgb(img: Image.Image) -> Image.Image:
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


def example_image(name: str) -> Image.Image:
    """A photo bundled with scikit-image (``astronaut``, ``coffee``, ...) as RGB."""
    from skimage import data

    if name.startswith(EXAMPLE_PREFIX):
        name = name[len(EXAMPLE_PREFIX):]
    loader = getattr(data, name, None)
    if name.startswith("_") or not callable(loader):
        raise ImageError(f"{EXAMPLE_PREFIX}{name}: scikit-image has no example image '{name}'; "
                         f"try {', '.join(EXAMPLE_PREFIX + n for n in EXAMPLES)}.")
    arr = np.asarray(loader())
    if arr.ndim not in (2, 3) or arr.dtype != np.uint8:
        raise ImageError(f"{EXAMPLE_PREFIX}{name}: not an 8-bit picture.")
    return _to_rgb(Image.fromarray(arr))


def image_stem(path: str | Path) -> str:
    """A file name stem for outputs: ``photo`` for ``dir/photo.jpg`` and ``skimage:photo``."""
    text = str(path)
    return text[len(EXAMPLE_PREFIX):] if text.startswith(EXAMPLE_PREFIX) else Path(text).stem


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file.")
    if not path.exists():
        raise ImageError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes).")


def read_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; ``ImageError`` if it is missing, empty or unreadable."""
    path = Path(path)
    _check_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc}).") from None


@contextlib.contextmanager
def _opened(path: Path, data: bytes | None = None):
    """``Image.open`` (header read, pixels not yet decoded), every failure an ``ImageError``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(f"{path}: {img.width}x{img.height} px is too large "
                                     f"(limit {MAX_PIXELS // 1_000_000} megapixels); "
                                     "downscale it first.")
                yield img
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is too large (decompression-bomb guard); "
                         "downscale it first.") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageError(f"{path}: cannot decode image ({exc}).") from None


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
        return _to_rgb(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB ``PIL.Image`` -> float ``(3, H, W)`` in [0, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


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


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` px, keeping the aspect ratio."""
    w, h = img.size
    scale = size / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if new == (w, h) else img.resize(new, Image.BICUBIC)


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write float ``(3, H, W)`` as PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(image).save(path)
    return path


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
    """Image files below ``root`` (recursive, by extension), sorted."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.is_file())


def iter_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into the images below them; keep files as given.

    A folder without images stays in the list, so that reading it reports it ("is a directory").
    """
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend((find_images(p) or [p]) if p.is_dir() else [p])  # skimage:NAME stays as is
    return out
