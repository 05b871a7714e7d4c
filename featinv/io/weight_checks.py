"""Weights no training makes, refused wherever a network's tensors are read: a decoder file
(``inversion.load``) and a training state resumed (``io.checkpoint.load_train_state``).

A weight of 1e38 overflowed to a black picture written with exit code 0; resumed from a
training state, the same weight (or a negative batch-norm variance) failed a step later with
"Loss became nan", blaming the learning rate.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import CheckpointError, printable
from .tensor_files import TYPE_NAMES

MAX_PARAMETER = 1e6  # trained decoders' weights and biases stay within about 10
# the feature statistics a decoder normalises its input with (``Decoder.set_feature_stats``
# floors a std at 1e-6; 5e-7 leaves room for float16 rounding in packed files)
FEATURE_MEAN, FEATURE_STD, MIN_FEATURE_STD = "feature_mean", "feature_std", 5e-7
DECODER_ADVICE = "Use an intact copy, or train it again."


def check_finite(path: str | Path, tensors: dict[str, torch.Tensor],
                 advice: str = DECODER_ADVICE) -> None:
    """Refuse tensors holding NaN or infinite values: such a decoder reconstructs a black or
    blank picture for every input (training never saves them; an edited or damaged file can
    hold them)."""
    bad = [k for k, v in tensors.items() if v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{printable(path)}: {len(bad)} weight tensor(s) hold NaN or "
                              f"infinite values (e.g. {printable(bad[0])}); the decoder would "
                              f"reconstruct nothing. {advice}")


def check_magnitudes(path: str | Path, tensors: dict[str, torch.Tensor], parameters: set[str],
                     advice: str = DECODER_ADVICE) -> None:
    """Refuse a parameter (a name in ``parameters``) beyond ``MAX_PARAMETER`` in magnitude, or
    a batch-norm variance (a ``running_var`` tensor) below 0 (its square root is NaN)."""
    for name, value in tensors.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        if name in parameters:
            top = float(value.detach().abs().max())
            if top > MAX_PARAMETER:
                raise CheckpointError(
                    f"{printable(path)}: weight tensor {printable(name)} holds values up to "
                    f"{top:.3g}, far beyond what training makes (at most {MAX_PARAMETER:g}): the "
                    f"file is corrupt or was trained with a diverging learning rate. {advice}")
        elif name.endswith("running_var") and bool((value < 0).any()):
            raise CheckpointError(f"{printable(path)}: {printable(name)} holds negative "
                                  "variances, which batch normalisation cannot have: the file "
                                  f"is corrupt. {advice}")
        elif name.endswith(FEATURE_STD) and not bool(((value >= MIN_FEATURE_STD)
                                                      & (value <= MAX_PARAMETER)).all()):
            raise CheckpointError(
                f"{printable(path)}: {printable(name)} holds {_outlier(value, 1.0):.3g}, "
                f"which training never sets (a feature's std is from {MIN_FEATURE_STD:g} to "
                f"{MAX_PARAMETER:g}): the file is corrupt. {advice}")
        elif name.endswith(FEATURE_MEAN) and float(value.abs().max()) > MAX_PARAMETER:
            raise CheckpointError(
                f"{printable(path)}: {printable(name)} holds {_outlier(value, 0.0):.3g}, far "
                f"beyond what training makes (at most {MAX_PARAMETER:g}): the file is corrupt. "
                f"{advice}")


def stored_type_error(path: str | Path, name: str, code: str, wanted, thing: str = "file",
                      advice: str = DECODER_ADVICE) -> CheckpointError:
    """The refusal of tensor ``name`` stored as ``code`` (a safetensors dtype: ``U8``,
    ``F8_E4M3``, ...) where featinv writes only the types ``wanted``: loaded by casting, uint8
    weights or an int64 ``feature_std`` gave flat pictures with exit code 0, and float8 an
    internal NotImplementedError (issue 24, round 11, E8)."""
    def words(c: str) -> str:
        return TYPE_NAMES.get(c, printable(c)[:20])
    return CheckpointError(f"{printable(path)}: tensor {printable(name)[:80]} is stored as "
                           f"{words(code)}, a type featinv never writes for it (only "
                           f"{' or '.join(words(c) for c in wanted)}); the {thing} was altered "
                           f"or damaged. {advice}")


def _outlier(value: torch.Tensor, centre: float) -> float:
    """The value of ``value`` farthest from ``centre`` on a log scale (for messages)."""
    flat = value.detach().double().flatten()
    score = (flat.abs().clamp_min(1e-300).log() - math.log(max(abs(centre), 1e-300))).abs() \
        if centre else flat.abs()
    return float(flat[int(score.argmax())])
