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
import types
from typing import Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

from .errors import (CheckpointError, DataError, FeatinvError, ImageError, Interrupted,  # noqa: F401
                     PluginError, ShapeError, UnknownFeatureError)
from .hookspecs import hookimpl  # noqa: F401
from .layout import CellGrid, ComputedGrid, FixedVector, GridLayout, VectorLayout  # noqa: F401

# public name -> the module defining it, imported on first access (these import PyTorch)
_LAZY = {"get_feature": "registry", "get_spec": "registry", "list_features": "registry",
         "Extractor": "spec", "FeatureSpec": "spec", "Param": "spec",
         "build_decoder": "decoders", "evaluate": "evaluate", "invert": "inversion",
         "load_decoder": "inversion", "TrainConfig": "train", "train": "train"}

__all__ = ["CellGrid", "CheckpointError", "ComputedGrid", "DataError", "FeatinvError",
           "FixedVector", "GridLayout", "ImageError", "PluginError", "ShapeError",
           "UnknownFeatureError", "VectorLayout", "__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'featinv' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps ``featinv.evaluate`` and ``featinv.train`` the functions when their submodules
    are imported (the import system would otherwise set the attribute to the module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if _LAZY.get(name) == name and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


import sys  # noqa: E402

sys.modules[__name__].__class__ = _Package
del sys
