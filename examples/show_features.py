"""Regenerate docs/images/show_{hog,lbp,sift}.png: what each representation sees in a photo.

The photo is scikit-image's astronaut, cropped to the face and resized to 160 px.

    python examples/show_features.py [OUT_DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

import featinv
from featinv.io.images import pil_to_tensor
from featinv.analysis.visualize import show_features

SIZE = 160
OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def astronaut() -> torch.Tensor:
    """The astronaut's face, ``(3, 160, 160)`` in [0, 1]."""
    photo = Image.fromarray(skimage.data.astronaut()).crop((120, 20, 376, 276))
    return pil_to_tensor(photo.resize((SIZE, SIZE), Image.BICUBIC))


def main(out: Path = OUT) -> None:
    image = astronaut()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("hog", "lbp", "sift"):
        picture = show_features(featinv.get_feature(name), image)
        path = out / f"show_{name}.png"
        Image.fromarray(np.rint(picture * 255).astype(np.uint8)).save(path, optimize=True)
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
