"""Mixed precision for decoders: the dtype names users pass, and the autocast context."""
from __future__ import annotations

import torch

from .errors import FeatinvError

# the dtype of each name in featinv.choices.PRECISIONS (None: full precision, no autocast)
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = PRECISION_DTYPES  # deprecated alias: featinv.choices.PRECISIONS is the tuple of names


def autocast(device: torch.device, precision: str):
    """The mixed-precision context for a decoder's forward pass (a no-op for fp32)."""
    dtype = PRECISION_DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run."""
    if precision not in PRECISION_DTYPES:
        raise FeatinvError(f"Unknown --precision '{precision}' (fp32, bf16, fp16).")
    if precision == "fp16" and device.type != "cuda":
        raise FeatinvError("--precision fp16 needs a CUDA device; use bf16 on the CPU.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FeatinvError("This GPU has no bfloat16 support; use --precision fp16.")
