"""Pictures of features: what a representation sees in an image (``featinv show-features``).

``show_features(extractor, image)`` computes the features of one image and draws them with the
representation's own ``visualize`` (see ``FeatureSpec``) or, without one, with a generic view
that works for any layout. The drawing primitives the representations' ``visualize`` functions
share are in ``featinv.features.drawing``.

Pictures are NumPy arrays ``(H, W, 3)`` (or masks ``(H, W)``), float32 in [0, 1]. Coordinates
are ``(x, y)`` in pixels of the picture, x = column, y down; integer values are pixel centres.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ShapeError, pixel_size
from ..limits import DEFAULT_MAX_SIDE
from ..features.drawing import below, beside, display_scale, resize_nearest, upscale

__all__ = ["show_features", "feature_picture", "generic_view", "heat_colours", "pca_rgb"]


def heat_colours(values: np.ndarray) -> np.ndarray:
    """A black-red-yellow-white map: values in [0, 1] ``(...)`` -> RGB ``(..., 3)``."""
    v = np.clip(np.asarray(values, np.float32), 0, 1)[..., None]
    return np.clip(v * 3 - np.array([0.0, 1.0, 2.0], np.float32), 0, 1)


def _normalise(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; constant values become 0.5."""
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        return np.full(values.shape, 0.5, np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """First 3 principal components of the channels of ``(C, h, w)`` as colours ``(h, w, 3)``.

    Each component is scaled to [0, 1] on its own; fewer than 3 components leave gray.
    """
    c, h, w = features.shape
    x = features.reshape(c, h * w).T.astype(np.float64)
    x = x - x.mean(0)
    out = np.full((h * w, 3), 0.5, np.float32)
    if h * w > 1 and np.abs(x).max() > 0:
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        for i, axis in enumerate(vt[:3]):
            axis = axis * np.sign(axis[np.argmax(np.abs(axis))])  # deterministic sign
            out[:, i] = _normalise(x @ axis)
    return out.reshape(h, w, 3)


def generic_view(image: np.ndarray, features: np.ndarray) -> np.ndarray:
    """A picture of any features without knowing the representation.

    Grid ``(C, h, w)``: the image beside its first 3 principal components as RGB, upsampled
    (nearest) to the image. Vector ``(C,)``: the image above a heat strip of the values
    (min-max scaled, one band per value, left to right).
    """
    height, width = image.shape[:2]
    s = display_scale(height, width)
    shown = upscale(image, s)
    if features.ndim == 3:
        colours = pca_rgb(features)
        return beside(shown, resize_nearest(colours, height * s, width * s))
    strip_height = max(16, height * s // 8)
    strip = heat_colours(_normalise(features.astype(np.float64)))[None]  # (1, C, 3)
    return below(shown, resize_nearest(strip, strip_height, width * s))


def _device(module: torch.nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def show_features(extractor: Any, image: torch.Tensor) -> np.ndarray:
    """Picture of what ``extractor`` (an ``Extractor``) sees in one image.

    Args:
        extractor: a representation with its parameters bound (``featinv.get_feature``).
        image: ``(3, H, W)`` float tensor in [0, 1], at least the representation's minimum size.

    Returns:
        ``(H', W', 3)`` float32 array in [0, 1]: the representation's ``visualize`` if it has
        one, otherwise :func:`generic_view`. Small images are upscaled so that glyphs show.
    """
    if not isinstance(image, torch.Tensor):
        raise ShapeError(f"show_features: expected a torch.Tensor image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ShapeError(f"show_features: expected one image of shape (3, H, W), "
                         f"got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ShapeError(f"show_features: expected a float image in [0, 1], got {image.dtype}")
    if not bool(torch.isfinite(image).all()) or image.numel() and (
            float(image.min()) < 0 or float(image.max()) > 1):
        raise ShapeError("show_features: image values must be finite and in [0, 1]")
    with torch.no_grad():
        features = extractor(image[None].to(_device(extractor)))[0]
    from ..representation.extract import check_finite

    check_finite(extractor, features, "show_features")
    features = features.detach().float().cpu().numpy()
    pixels = image.detach().float().cpu().permute(1, 2, 0).numpy()
    spec = extractor.spec
    if spec.visualize is not None:
        from ..representation.guard import plugin_code

        where = f"{spec.name}'s visualize (plugin {spec.plugin})"
        with plugin_code(where):  # sys.exit in it: a PluginError, not the end of featinv
            picture = spec.visualize(pixels, features, **extractor.params)
    else:
        picture = generic_view(pixels, features)
        where = "generic_view"
    picture = np.asarray(picture)
    if picture.ndim != 3 or picture.shape[2] != 3 or 0 in picture.shape:
        raise ShapeError(f"{where} returned shape {picture.shape}, expected (H, W, 3)")
    if not np.issubdtype(picture.dtype, np.number) or not np.isfinite(picture).all():
        raise ShapeError(f"{where} returned non-finite or non-numeric values")
    return np.clip(picture.astype(np.float32), 0.0, 1.0)


def feature_picture(extractor: Any, image, size: int | None = None,
                    name: str | None = None, max_side: int | None = DEFAULT_MAX_SIDE
                    ) -> torch.Tensor:
    """``featinv show-features``: the picture of ``extractor``'s features of the image file (or
    ``skimage:NAME``) ``image``, its shorter side first resized to ``size`` (None: as is) and
    its longer side then capped at ``max_side`` (None: no cap), as a ``(3, H, W)`` tensor for
    ``save_png``. An image below the representation's smallest side is a ``FeatinvError`` that
    suggests a ``--size`` (``name``: the representation as the user wrote it; default
    ``extractor.name``)."""
    from ..errors import FeatinvError, printable
    from ..io.images import fitted_image, pil_to_tensor
    from ..wording import opt

    img = fitted_image(image, size or None, max_side)
    try:  # the advice invert gives: a --size, the --max-side it needs, or cropping a strip
        extractor.check_large_enough(img.height, img.width, "show")
    except FeatinvError as exc:
        raise FeatinvError(f"{printable(image)}: {exc}") from None
    smallest = extractor.rule.smallest_side
    if min(img.size) < smallest:
        raise FeatinvError(f"{printable(image)}: {pixel_size(img.width, img.height)} is too "
                           "small for "
                           f"'{name or extractor.name}', which needs at least {smallest} px on "
                           f"each side; pass {opt('size', smallest)} or more.")
    return torch.from_numpy(show_features(extractor, pil_to_tensor(img))).permute(2, 0, 1)
