"""The one place a device is chosen: ``pick_device`` turns what the user asked for ("auto",
"cpu", "cuda:1", None) into a ``torch.device`` or one clear line; ``as_device`` keeps a device
already chosen, so that a pipeline picks once at its entry and passes the result down."""
from __future__ import annotations

import torch

from ..errors import FeatinvError, printable


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; anything else as given, refused
    with one line when it is not a device name or this machine has no such device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise FeatinvError(f"--device {printable(device)}: not a device name; use cpu, cuda, "
                           "cuda:N or auto.") from None
    return check_device(dev, device)


def check_device(dev: torch.device, device: str | torch.device | None = None) -> torch.device:
    """``dev`` when this machine has it, else one line naming ``device`` (what was asked)."""
    device = dev if device is None else device
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FeatinvError(f"--device {device}: this machine has no CUDA GPU that PyTorch "
                               "can use (no driver, or a CPU-only PyTorch); use --device cpu "
                               "or auto.")
        if dev.index is not None and dev.index >= count:
            raise FeatinvError(f"--device {device}: this machine has {count} CUDA GPU(s), "
                               f"cuda:0 to cuda:{count - 1}.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise FeatinvError(f"--device {device}: Apple's MPS is not available here; use --device "
                           "cpu or auto.")
    elif dev.type not in ("cpu", "cuda", "mps"):  # meta, xpu, hpu, ...: nothing runs there
        raise FeatinvError(f"--device {printable(device)}: featinv runs on cpu, cuda, cuda:N "
                           "or mps; use one of them or auto.")
    return dev


def as_device(device: str | torch.device | None) -> torch.device:
    """``device`` when it is already a ``torch.device`` (chosen upstream; still checked to exist
    here, as ``pick_device`` checks), else ``pick_device(device)``."""
    return check_device(device) if isinstance(device, torch.device) else pick_device(device)
