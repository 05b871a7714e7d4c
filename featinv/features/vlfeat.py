"""VLFeat's C library (``libvl``) through ctypes: the ``backend="vlfeat"`` of hog, lbp and sift.

The paper computed its shallow features with VLFeat's MATLAB toolbox; this module calls the same C
code the way the MATLAB functions do (``vl_hog(im, cell)``, ``vl_lbp(im, cell)``,
``[f, d] = vl_sift(im)``), so results can be checked against the implementation the paper used.
Nothing is compiled: Debian's ``libvlfeat1`` package is enough (``apt-get install libvlfeat1``),
or point ``VLFEAT_LIB`` at a ``libvl.so``.

MATLAB arrays are column-major, so the MATLAB functions hand the library the *transposed* buffer;
HOG and LBP then undo it with ``transposed=true``, SIFT by swapping x and y, mapping the angle to
``pi/2 - a`` and re-ordering the descriptor. Outputs here use image conventions: ``(C, h, w)``
arrays, 0-based pixel coordinates, x = column, y = row (down), angles clockwise on screen.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from ..errors import FeatinvError, printable

__all__ = ["available", "library", "version", "status", "hog", "lbp", "sift", "per_image"]

_HOG_UOCTTI = 1
_LBP_UNIFORM = 0
_floats = ctypes.POINTER(ctypes.c_float)
_doubles = ctypes.POINTER(ctypes.c_double)
_size = ctypes.c_uint64
_handle = ctypes.c_void_p


class _SiftKeypoint(ctypes.Structure):
    _fields_ = [("o", ctypes.c_int), ("ix", ctypes.c_int), ("iy", ctypes.c_int),
                ("is_", ctypes.c_int), ("x", ctypes.c_float), ("y", ctypes.c_float),
                ("s", ctypes.c_float), ("sigma", ctypes.c_float)]


class _SiftFilter(ctypes.Structure):
    """The public fields of ``struct _VlSiftFilt`` (vl/sift.h, 0.9.21; 192 bytes on x86-64)."""

    _fields_ = [("sigman", ctypes.c_double), ("sigma0", ctypes.c_double),
                ("sigmak", ctypes.c_double), ("dsigma0", ctypes.c_double),
                ("width", ctypes.c_int), ("height", ctypes.c_int), ("O", ctypes.c_int),
                ("S", ctypes.c_int), ("o_min", ctypes.c_int), ("s_min", ctypes.c_int),
                ("s_max", ctypes.c_int), ("o_cur", ctypes.c_int), ("temp", _handle),
                ("octave", _handle), ("dog", _handle), ("octave_width", ctypes.c_int),
                ("octave_height", ctypes.c_int), ("gaussFilter", _handle),
                ("gaussFilterSigma", ctypes.c_double), ("gaussFilterWidth", _size),
                ("keys", ctypes.POINTER(_SiftKeypoint)), ("nkeys", ctypes.c_int),
                ("keys_res", ctypes.c_int), ("peak_thresh", ctypes.c_double),
                ("edge_thresh", ctypes.c_double), ("norm_thresh", ctypes.c_double),
                ("magnif", ctypes.c_double), ("windowSize", ctypes.c_double),
                ("grad", _handle), ("grad_o", ctypes.c_int)]


def _declare(lib: ctypes.CDLL) -> None:
    sift_p = ctypes.POINTER(_SiftFilter)
    signatures = {
        "vl_get_version_string": (ctypes.c_char_p, []),
        "vl_hog_new": (_handle, [ctypes.c_int, _size, ctypes.c_int]),
        "vl_hog_delete": (None, [_handle]),
        "vl_hog_put_image": (None, [_handle, _floats, _size, _size, _size, _size]),
        "vl_hog_extract": (None, [_handle, _floats]),
        "vl_hog_get_width": (_size, [_handle]),
        "vl_hog_get_height": (_size, [_handle]),
        "vl_hog_get_dimension": (_size, [_handle]),
        "vl_lbp_new": (_handle, [ctypes.c_int, ctypes.c_int]),
        "vl_lbp_delete": (None, [_handle]),
        "vl_lbp_get_dimension": (_size, [_handle]),
        "vl_lbp_process": (None, [_handle, _floats, _floats, _size, _size, _size]),
        "vl_sift_new": (sift_p, [ctypes.c_int] * 5),
        "vl_sift_delete": (None, [sift_p]),
        "vl_sift_process_first_octave": (ctypes.c_int, [sift_p, _floats]),
        "vl_sift_process_next_octave": (ctypes.c_int, [sift_p]),
        "vl_sift_detect": (None, [sift_p]),
        "vl_sift_calc_keypoint_orientations": (ctypes.c_int, [sift_p, _doubles,
                                                              ctypes.POINTER(_SiftKeypoint)]),
        "vl_sift_calc_keypoint_descriptor": (None, [sift_p, _floats,
                                                    ctypes.POINTER(_SiftKeypoint),
                                                    ctypes.c_double]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes


@lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    tried, chosen = [], os.environ.get("VLFEAT_LIB")
    # a $VLFEAT_LIB that cannot be loaded is reported, not passed over for the system's libvl
    names = [chosen] if chosen else ["libvl.so.1", "libvl.so", ctypes.util.find_library("vl")]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            _declare(lib)
            return lib, ""
        except (OSError, AttributeError) as exc:
            tried.append(f"{name}: {exc}")
    if chosen:
        return None, f"$VLFEAT_LIB={chosen}: {tried[0].split(': ', 1)[-1] if tried else 'empty'}"
    return None, "; ".join(tried) or "no candidate library name"


def available() -> bool:
    """True when VLFeat's C library can be loaded."""
    return _load()[0] is not None


def library() -> ctypes.CDLL:
    """The loaded ``libvl``; a ``FeatinvError`` saying how to install it when it is missing."""
    lib, why = _load()
    if lib is None:
        if why.startswith("$VLFEAT_LIB="):
            raise FeatinvError(printable(f"backend 'vlfeat': {why}; set VLFEAT_LIB to the path "
                                         "of VLFeat's libvl.so, or unset it to use the one "
                                         "installed."))
        raise FeatinvError("backend 'vlfeat' needs VLFeat's C library, which could not be loaded "
                           f"({why}): install it with 'apt-get install libvlfeat1' or set "
                           "VLFEAT_LIB to the path of libvl.so.")
    return lib


def version() -> str | None:
    """VLFeat's version string (e.g. ``'0.9.21'``), or None without the library."""
    lib, _ = _load()
    return lib.vl_get_version_string().decode() if lib is not None else None


def status() -> str:
    """One line for ``featinv describe``: the version found, or how to install the library."""
    found = version()
    return (f"VLFeat {found} (libvl via ctypes)" if found else
            "not available: apt-get install libvlfeat1 (or set VLFEAT_LIB)")


def _as_image(image: np.ndarray) -> np.ndarray:
    im = np.ascontiguousarray(image, dtype=np.float32)
    if im.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {im.shape}")
    return im


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_floats)


def _buffer(im: np.ndarray, matlab: bool) -> tuple[np.ndarray, int, int]:
    """The buffer handed to the library with its width and height.

    ``matlab=True``: the column-major (transposed) buffer, as the MEX files pass a MATLAB array.
    """
    h, w = im.shape
    return (np.ascontiguousarray(im.T), h, w) if matlab else (im, w, h)


def hog(image: np.ndarray, cell_size: int = 8, num_orientations: int = 9,
        matlab: bool = True) -> np.ndarray:
    """``vl_hog(im, cell_size)`` (UoCTTI) of an ``(H, W)`` image: ``(3*O+4, Hc, Wc)`` float32.

    ``matlab=False`` calls the library on the row-major buffer instead (same result to ~2e-7).
    """
    lib, im = library(), _as_image(image)
    buf, bw, bh = _buffer(im, matlab)
    obj = lib.vl_hog_new(_HOG_UOCTTI, num_orientations, int(matlab))
    try:
        lib.vl_hog_put_image(obj, _ptr(buf), bw, bh, 1, cell_size)
        dims = (lib.vl_hog_get_dimension(obj), lib.vl_hog_get_height(obj),
                lib.vl_hog_get_width(obj))
        out = np.zeros(dims, np.float32)
        lib.vl_hog_extract(obj, _ptr(out))
    finally:
        lib.vl_hog_delete(obj)
    return np.ascontiguousarray(out.transpose(0, 2, 1)) if matlab else out


def lbp(image: np.ndarray, cell_size: int = 16, matlab: bool = True) -> np.ndarray:
    """``vl_lbp(im, cell_size)`` of an ``(H, W)`` image: ``(58, H//cell, W//cell)`` float32.

    ``matlab=False`` calls the library on the row-major buffer instead (bit-identical).
    """
    lib, im = library(), _as_image(image)
    buf, bw, bh = _buffer(im, matlab)
    obj = lib.vl_lbp_new(_LBP_UNIFORM, int(matlab))
    try:
        out = np.zeros((lib.vl_lbp_get_dimension(obj), bh // cell_size, bw // cell_size),
                       np.float32)
        lib.vl_lbp_process(obj, _ptr(out), _ptr(buf), bw, bh, cell_size)
    finally:
        lib.vl_lbp_delete(obj)
    return np.ascontiguousarray(out.transpose(0, 2, 1)) if matlab else out


def _descriptor_transpose_index() -> np.ndarray:
    """``d_image = d_library[index]``: ``transpose_descriptor()`` of toolbox/sift/vl_sift.c.

    Swapping x and y mirrors the orientation bins (t -> -t) and the spatial bins along y.
    """
    index = np.empty(128, np.int64)
    for by in range(4):
        for bx in range(4):
            for t in range(8):
                index[(-t) % 8 + 8 * bx + 32 * (3 - by)] = t + 8 * bx + 32 * by
    return index


_TRANSPOSE = _descriptor_transpose_index()


def sift(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[f, d] = vl_sift(im)`` with VLFeat's defaults on an ``(H, W)`` image.

    Returns:
        frames: ``(N, 4)`` float64 ``[x, y, sigma, angle]``, 0-based pixel coordinates, angle in
            radians clockwise on screen from +x (MATLAB's frames minus 1 on x and y).
        descriptors: ``(N, 128)`` float32 with unit L2 norm (MATLAB's ``d`` is
            ``uint8(min(512*descr, 255))``), element ``t + 8*bx + 32*by``.
    """
    lib, im = library(), _as_image(image)
    buf, bw, bh = _buffer(im, matlab=True)
    filt = lib.vl_sift_new(bw, bh, -1, 3, 0)
    if not filt:
        raise FeatinvError(f"VLFeat could not set up SIFT for a {bh}x{bw} image")
    frames, descriptors = [], []
    angles = (ctypes.c_double * 4)()
    descr = np.zeros(128, np.float32)
    try:
        status = lib.vl_sift_process_first_octave(filt, _ptr(buf))
        while status == 0:
            lib.vl_sift_detect(filt)
            keys = filt.contents.keys
            for i in range(filt.contents.nkeys):
                key = ctypes.pointer(keys[i])
                for q in range(lib.vl_sift_calc_keypoint_orientations(filt, angles, key)):
                    lib.vl_sift_calc_keypoint_descriptor(filt, _ptr(descr), key, angles[q])
                    k = key.contents
                    frames.append((k.y, k.x, k.sigma, math.pi / 2 - angles[q]))
                    descriptors.append(descr[_TRANSPOSE])
            status = lib.vl_sift_process_next_octave(filt)
    finally:
        lib.vl_sift_delete(filt)
    return (np.asarray(frames, np.float64).reshape(-1, 4),
            np.asarray(descriptors, np.float32).reshape(-1, 128))


def per_image(fn: Callable[[np.ndarray], np.ndarray], gray: torch.Tensor) -> torch.Tensor:
    """Apply a NumPy function ``(H, W) -> (C, h, w)`` to each image of ``(B, 1, H, W)``.

    Returns the stacked float32 results on ``gray``'s device (no gradient).
    """
    out = np.stack([fn(im) for im in gray.detach()[:, 0].float().cpu().numpy()])
    return torch.from_numpy(out.astype(np.float32, copy=False)).to(gray.device)
