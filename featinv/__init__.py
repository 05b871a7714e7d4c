"""featinv: reconstruct images from feature representations with trained up-convolutional decoders.

Python API (the CLI is a thin layer over it)::

    import featinv
    featinv.list_features()                      # ['hog', ...]
    hog = featinv.get_feature("hog")             # nn.Module: (B, 3, H, W) in [0, 1] -> (B, 31, h, w)
    decoder = featinv.load_decoder("run/decoder.safetensors")
    images = featinv.invert(["photo.jpg"], checkpoint="run/decoder.safetensors")

Plugins load on the first query, not at import.

"""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import (CheckpointError, DataError, FeatinvError, ImageError, PluginError,  # noqa: F401
                     ShapeError, UnknownFeatureError)
from .hookspecs import hookimpl  # noqa: F401
from .layout import CellGrid, ComputedGrid, FixedVector, GridLayout, VectorLayout  # noqa: F401
from .registry import get_feature, get_spec, list_features  # noqa: F401
from .spec import Extractor, FeatureSpec, Param  # noqa: F401
from .decoders import build_decoder  # noqa: F401,E402
from .evaluate import evaluate  # noqa: F401,E402
from .inversion import invert, load_decoder  # noqa: F401,E402
from .train import TrainConfig, train  # noqa: F401,E402
