"""VLFeat for the feature tests: the stored reference vectors and libvl through ctypes.

``LIBVL`` is None where Debian's libvlfeat1 is not installed; tests that need it use
``needs_libvl`` and skip, saying why.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared/reference/vlfeat"
REFERENCE_FILES = sorted(REFERENCE.glob("*.npz")) if REFERENCE.is_dir() else []
NO_REFERENCE = f"VLFeat reference vectors not found in {REFERENCE}"


def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth structure plus noise, quantised to 8 bits like a decoded photo (many exact ties)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 1, max(h // 6, 2), max(w // 6, 2)), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic",
                                             align_corners=False)[0, 0].numpy()
    x = np.clip(0.85 * smooth + 0.15 * rng.random((h, w), dtype=np.float32), 0, 1)
    return (np.round(x * 255) / 255).astype(np.float32)


def _load_libvl():
    names = [os.environ.get("VLFEAT_LIB"), "libvl.so.1", "libvl.so", ctypes.util.find_library("vl")]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        size_t, handle = ctypes.c_uint64, ctypes.c_void_p
        floats = ctypes.POINTER(ctypes.c_float)
        lib.vl_hog_new.restype = handle
        lib.vl_hog_new.argtypes = [ctypes.c_int, size_t, ctypes.c_int]
        lib.vl_hog_delete.argtypes = [handle]
        lib.vl_hog_put_image.argtypes = [handle, floats, size_t, size_t, size_t, size_t]
        lib.vl_hog_extract.argtypes = [handle, floats]
        for fn in ("vl_hog_get_width", "vl_hog_get_height", "vl_hog_get_dimension",
                   "vl_lbp_get_dimension"):
            getattr(lib, fn).restype = size_t
            getattr(lib, fn).argtypes = [handle]
        lib.vl_lbp_new.restype = handle
        lib.vl_lbp_new.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.vl_lbp_delete.argtypes = [handle]
        lib.vl_lbp_process.argtypes = [handle, floats, floats, size_t, size_t, size_t]
        return lib
    return None


LIBVL = _load_libvl()
UOCTTI = 1
VL_LBP_UNIFORM = 0
needs_libvl = pytest.mark.skipif(LIBVL is None, reason="VLFeat's libvl.so.1 cannot be loaded "
                                 "(apt-get install libvlfeat1, or set VLFEAT_LIB)")


def vl_hog(image: np.ndarray, cell_size: int, num_orientations: int = 9, matlab: bool = True):
    """VLFeat's HOG of an (H, W) image as an (Hc, Wc, D) array.

    ``matlab=True`` does what ``vl_hog(im, cell)`` does with a column-major array: the library gets
    the transposed buffer and ``transposed=true``; otherwise the row-major buffer directly.
    """
    im = np.ascontiguousarray(image, dtype=np.float32)
    h, w = im.shape
    buf, bw, bh = (np.ascontiguousarray(im.T), h, w) if matlab else (im, w, h)
    obj = LIBVL.vl_hog_new(UOCTTI, num_orientations, int(matlab))
    try:
        LIBVL.vl_hog_put_image(obj, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                               bw, bh, 1, cell_size)
        dims = (LIBVL.vl_hog_get_dimension(obj), LIBVL.vl_hog_get_height(obj),
                LIBVL.vl_hog_get_width(obj))
        out = np.zeros(dims, np.float32)
        LIBVL.vl_hog_extract(obj, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    finally:
        LIBVL.vl_hog_delete(obj)
    out = out.transpose(1, 2, 0)
    return np.ascontiguousarray(out.transpose(1, 0, 2) if matlab else out)


def vl_lbp(image: np.ndarray, cell_size: int = 16, matlab: bool = True) -> np.ndarray:
    """VLFeat's LBP of an (H, W) image as an (Hc, Wc, 58) array.

    ``matlab=True`` does what ``vl_lbp(im, cell)`` does with a column-major array: the library gets
    the transposed buffer and ``transposed=true``; otherwise the row-major buffer directly.
    """
    im = np.ascontiguousarray(image, dtype=np.float32)
    h, w = im.shape
    buf, bw, bh = (np.ascontiguousarray(im.T), h, w) if matlab else (im, w, h)
    obj = LIBVL.vl_lbp_new(VL_LBP_UNIFORM, int(matlab))
    try:
        dim = LIBVL.vl_lbp_get_dimension(obj)
        out = np.zeros((dim, bh // cell_size, bw // cell_size), np.float32)
        LIBVL.vl_lbp_process(obj, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                             buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), bw, bh, cell_size)
    finally:
        LIBVL.vl_lbp_delete(obj)
    out = out.transpose(1, 2, 0)
    return np.ascontiguousarray(out.transpose(1, 0, 2) if matlab else out)
