"""The example photos bundled with scikit-image, read as ``skimage:NAME`` wherever an image
file is (``featinv.io.images`` re-exports these names)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ImageError, printable
from .pixels import to_rgb as _to_rgb

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
