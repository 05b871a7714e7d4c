"""VLFeat for the feature tests: the stored reference vectors and libvl (through featinv.features.vlfeat).

Tests that need the C library use ``needs_libvl`` and skip, saying why, where Debian's libvlfeat1
is not installed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featinv.features import vlfeat

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


needs_libvl = pytest.mark.skipif(not vlfeat.available(), reason="VLFeat's libvl.so.1 cannot be "
                                 "loaded (apt-get install libvlfeat1, or set VLFEAT_LIB)")


def vl_hog(image: np.ndarray, cell_size: int, num_orientations: int = 9, matlab: bool = True):
    """VLFeat's HOG of an (H, W) image as an (Hc, Wc, D) array, the reference files' axis order."""
    return vlfeat.hog(image, cell_size, num_orientations, matlab=matlab).transpose(1, 2, 0)


def vl_lbp(image: np.ndarray, cell_size: int = 16, matlab: bool = True) -> np.ndarray:
    """VLFeat's LBP of an (H, W) image as an (Hc, Wc, 58) array, the reference files' axis order."""
    return vlfeat.lbp(image, cell_size, matlab=matlab).transpose(1, 2, 0)
