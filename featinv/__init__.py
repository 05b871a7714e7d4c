"""featinv: reconstruct images from feature representations with trained up-convolutional decoders.

Python API (the CLI is a thin layer over it)::

    import featinv
    featinv.list_features()                      # ['hog', ...]
    hog = featinv.get_feature("hog")             # nn.Module: (B, 3, H, W) in [0, 1] -> (B, 31, h, w)
    decoder = featinv.load_decoder("run/decoder.safetensors")
    images = featinv.invert(["photo.jpg"], checkpoint="run/decoder.safetensors")

``import featinv`` loads neither PyTorch nor any plugin: the names below that need them are
imported on first access, plugins on the first query.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import (CheckpointError, DataError, FeatinvError, ImageError, Interrupted,  # noqa: F401
                     PluginError, ShapeError, UnknownFeatureError)
from .representation.hookspecs import ShippedDecoder, hookimpl  # noqa: F401
from .representation.layout import CellGrid, ComputedGrid, FixedVector, GridLayout, VectorLayout  # noqa: F401
from .version import __version__  # noqa: F401 (written in featinv/version.py)

# public name -> the module defining it, imported on first access (these import PyTorch)
_LAZY = {"get_feature": "representation.registry", "get_spec": "representation.registry",
         "list_features": "representation.registry", "Extractor": "representation.spec",
         "FeatureSpec": "representation.spec", "Param": "representation.spec",
         "build_decoder": "decoders.networks", "evaluate": "analysis.evaluate",
         "invert": "inversion.pipeline", "load_decoder": "inversion.load",
         "TrainConfig": "training.loop", "train": "training.loop"}

__all__ = ["CellGrid", "CheckpointError", "ComputedGrid", "DataError", "FeatinvError",
           "FixedVector", "GridLayout", "ImageError", "PluginError", "ShapeError",
           "ShippedDecoder", "UnknownFeatureError", "VectorLayout", "__version__", "hookimpl",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'featinv' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
