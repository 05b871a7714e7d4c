"""The check every decoder output passes before it becomes a picture: finite, and (for the
reconstruction of images) mostly within reach of [0, 1]. ``pipeline``, ``probes``, ``pack``
and ``train``'s save check all judge a decoder by it."""
from __future__ import annotations

import torch

from ..errors import DecoderOutputError

NON_FINITE = ("the decoder produced non-finite values: the checkpoint is corrupt or was trained "
              "with a diverging learning rate")
# A trained decoder's raw output stays near [0, 1]: the shipped ones give -0.09 to 1.12 on photos,
# black and white pictures and noise features, untrained ones 0.3 to 0.7. Forged weights within
# the load checks' bounds (a last-layer weight of 1e5, a batch-norm variance of 0 where the
# activations vary, a running mean of 9e5) put 8 to 100% of the values beyond [-1, 2]: clamped,
# that was saturated noise written with exit code 0.
FAR_RANGE, FAR_SHARE = (-1.0, 2.0), 0.01
NAN_FAULT = "NaN or infinite values"


class FarFromRange(UserWarning):
    """A sound decoder's reconstruction of an input lies far outside [0, 1]: the input is
    unlike its training data (a black square for a decoder of document scans); clamped."""


def output_fault(out: torch.Tensor, in_range: bool = True) -> str | None:
    """What makes ``out``, a decoder's raw output, no picture: ``NAN_FAULT``, or
    (with ``in_range``) more than ``FAR_SHARE`` of its values beyond ``FAR_RANGE``; None if
    it is one."""
    if not bool(torch.isfinite(out).all()):
        return NAN_FAULT
    if not in_range or not out.numel():
        return None
    low, high = FAR_RANGE
    far = float(((out < low) | (out > high)).float().mean())
    if far > FAR_SHARE:
        return (f"{far:.0%} of the values beyond [{low:g}, {high:g}], up to "
                f"{float(out.abs().max()):.3g}")
    return None


def check_output(out: torch.Tensor, precision: str = "fp32", in_range: bool = True
                 ) -> torch.Tensor:
    """``out``, a decoder's raw output, if ``output_fault`` finds nothing wrong with it; else a
    ``DecoderOutputError``. Checked before clamping to [0, 1]: NaN stays NaN there, and
    infinities or values far out of range become flat or saturated pictures."""
    fault = output_fault(out, in_range)
    if fault is None:
        return out
    hint = ("; or its activations overflow in fp16: try --precision fp32 (or bf16)"
            if precision == "fp16" else "; use an intact copy, or train it again")
    if fault == NAN_FAULT:
        raise DecoderOutputError(NON_FINITE + hint + ".")
    raise DecoderOutputError(
        f"the decoder's output lies far outside the image range [0, 1] ({fault}; trained "
        "decoders stay within it): the checkpoint is corrupt or was trained with a "
        f"diverging learning rate{hint}.")
