"""What a resumed training state must hold beyond well-formed tensors (issue 24, D7 and D8), and
metrics records that are always valid JSON.

``check_history``: the epoch records in a state's metadata are what training writes: objects
of numbers (a NaN, a string or a negative epoch was resumed, then written to ``metrics.jsonl``
as invalid JSON or echoed as the run's result). ``check_optimizer_state``: Adam's moments and
step count are what Adam can have produced (a negative ``exp_avg_sq`` or step resumed, then
failed at every step with "Loss became nan", blaming the learning rate).
``finite_record``/``metrics_line``: a record's non-finite numbers (the PSNR of a perfect
reconstruction is infinite) become ``null``, so that ``metrics.jsonl``, the state's history and
the printed result are strict JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, number_words, printable, shown  # noqa: F401 (public here)

MAX_COUNT = 2**50  # steps, epochs, images seen: far beyond any run (MAX_STEP, below, 2**40)
COUNTERS = ("epoch", "step", "images_seen")  # whole numbers from 0
# any other number of a record: a rate, a loss or a learning rate (at most 1e30, as --lr) is far
# below this; 1e300 printed a 300-digit table cell in a packed decoder's model card
MAX_NUMBER = 1e30
# a PSNR of pictures in [0, 1] in dB: 0 at least (a mean squared error of 1), 120 at most (the
# error is floored at 1e-12); earlier versions had no floor (float64: about 3000)
PSNR_RANGE = (0.0, 4000.0)
# the moments of Adam that are averages of squares (never negative)
SQUARES = ("exp_avg_sq", "max_exp_avg_sq")


RESUME_ADVICE = "Start a new run (--overwrite), or restore the state from a backup."


def _refuse_state(path, what: str, advice: str = RESUME_ADVICE, thing: str = "state"
                  ) -> CheckpointError:
    return CheckpointError(f"{printable(path)}: {what}; training never writes such a {thing}, so "
                           f"it was altered or damaged. {advice}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each NaN or infinite number replaced by None (JSON ``null``)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in record.items()}


def metrics_line(record: dict[str, Any]) -> str:
    """One line of ``metrics.jsonl``: strict JSON (``allow_nan=False``) of ``finite_record``."""
    return json.dumps(finite_record(record), allow_nan=False) + "\n"


def check_history(history, step: int, path: str | Path, advice: str = RESUME_ADVICE,
                  thing: str = "state", label: str = "history record {}") -> list[dict[str, Any]]:
    """The epoch records of a training state at ``step``, checked: a list of objects with text
    keys; ``epoch``, ``step`` and ``images_seen`` whole numbers from 0 (an epoch and a step at
    most the state's step, steps never decreasing); every other value a finite number or null
    (a PSNR stored as Infinity by earlier versions, for identical images, is read as null);
    ``lr`` and losses not negative. A ``CheckpointError`` in one line names the first fault
    (and ends with ``advice``; ``thing`` is the kind of file, ``label`` what record ``{}``
    is called there)."""
    def refuse(what: str) -> CheckpointError:
        return _refuse_state(path, what, advice, thing)

    if not isinstance(history, list):
        raise refuse(f"its history is {type(history).__name__}, not a list of records")
    if len(history) > step + 1:  # one record per epoch, and an epoch takes a step at least
        raise refuse(f"its history holds {len(history)} records for {step} steps")
    out, last = [], 0
    for i, record in enumerate(history):
        where = label.format(i + 1)
        if not isinstance(record, dict):
            raise refuse(f"{where} is {type(record).__name__}, not an object")
        clean = {}
        for key, value in record.items():
            name = f"{where}: {printable(key)[:40]}"
            if not isinstance(key, str) or not key:
                raise refuse(f"{where} has a key that is no name")
            if key.endswith("psnr") and value == math.inf:
                value = None  # written by earlier versions for a perfect reconstruction
            if value is None:
                if key in COUNTERS:
                    raise refuse(f"{name} is missing (null)")
                clean[key] = None
                continue
            if not _number(value):
                raise refuse(f"{name} is {shown(value)}, not a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise refuse(f"{name} is {value}, not a finite number")
            if key in COUNTERS or key.endswith("n_images"):  # val_n_images: a count too
                high = step if key in ("epoch", "step") else MAX_COUNT
                if not (isinstance(value, int) and 0 <= value <= high):
                    raise refuse(f"{name} is {number_words(value)}, not a whole number from 0 "
                                 f"to {high}")
            elif abs(value) > MAX_NUMBER:
                raise refuse(f"{name} is {number_words(value)}, beyond what training records "
                             f"(at most {MAX_NUMBER:g} in size)")
            elif key.endswith("psnr") and not PSNR_RANGE[0] <= value <= PSNR_RANGE[1]:
                raise refuse(f"{name} is {number_words(value)} dB, not from {PSNR_RANGE[0]:g} "
                             f"to {PSNR_RANGE[1]:g} (the PSNR of pictures in [0, 1])")
            elif (key == "lr" or key.endswith(("loss", "error")) or key.startswith("train_")) \
                    and value < 0:
                raise refuse(f"{name} is {value!r}, below 0")
            elif key.endswith("ssim") and not -1 <= value <= 1:
                raise refuse(f"{name} is {value!r}, not from -1 to 1")
            clean[key] = value
        if isinstance(clean.get("step"), int):
            if clean["step"] < last:
                raise refuse(f"{where}: step {clean['step']} comes after step {last}")
            last = clean["step"]
        out.append(clean)
    return out


def check_optimizer_state(opt: torch.optim.Optimizer, name: str, step: int,
                          path: str | Path) -> None:
    """Refuse an optimizer state Adam cannot have produced in ``step`` training steps: a state
    tensor not shaped like its parameter, NaN or infinite values, a negative average of squares
    (``exp_avg_sq``; its square root is NaN), or a step count that is no whole number from 1 to
    ``step`` (Adam divides by ``1 - beta ** count``: 0 divides by zero, a negative count or one
    beyond the run's steps gives no update Adam would make)."""
    def refuse(what: str) -> CheckpointError:
        return _refuse_state(path, what)

    for group in opt.param_groups:
        for param in group["params"]:
            state = opt.state.get(param)
            if not state:
                continue
            for key, value in state.items():
                what = f"its {name} state '{key}'"
                tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
                if key == "step":
                    count = tensor.double()
                    if count.numel() != 1 or not bool(torch.isfinite(count).all()):
                        raise refuse(f"{what} is not one finite number")
                    count = float(count)
                    if count != int(count) or not 1 <= count <= max(step, 1):
                        raise refuse(f"{what} is {count:g}, not a whole number from 1 to the "
                                     f"run's {step} steps")
                    continue
                if not tensor.is_floating_point():
                    raise refuse(f"{what} holds {tensor.dtype}, not floating point numbers")
                if tuple(tensor.shape) != tuple(param.shape):
                    raise refuse(f"{what} has shape {list(tensor.shape)[:6]}, not its "
                                 f"parameter's {list(param.shape)[:6]}")
                if not bool(torch.isfinite(tensor).all()):
                    raise refuse(f"{what} holds NaN or infinite values")
                if key in SQUARES and bool((tensor < 0).any()):
                    raise refuse(f"{what} holds negative values ({float(tensor.min()):.3g}), "
                                 "which an average of squares cannot")
            _check_moment_ratio(state, group.get("betas"), name, refuse)


def moment_bound(betas) -> float | None:
    """The largest ``|exp_avg| / sqrt(exp_avg_sq)`` Adam can reach with decays ``betas``
    (None when unbounded or unknown). Both moments start at 0 and sum the same gradients:
    ``m = sum (1-b1) b1^i g_i``, ``v = sum (1-b2) b2^i g_i^2``; by Cauchy-Schwarz
    ``|m| <= (1-b1) / sqrt((1-b2) (1 - b1^2/b2)) * sqrt(v)`` when ``b1^2 < b2`` (7.3 for the
    default 0.9, 0.999)."""
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        return None
    if not (0 <= b1 < 1 and 0 < b2 < 1 and b1 * b1 < b2):
        return None
    return (1 - b1) / math.sqrt((1 - b2) * (1 - b1 * b1 / b2))


def _check_moment_ratio(state: dict, betas, name: str, refuse) -> None:
    """Refuse an ``exp_avg`` larger than its ``exp_avg_sq`` allows (``moment_bound``): an
    average of gradients of 1e38 beside ordinary squares was resumed, and the first step sent
    the weights to infinity ("Loss became nan", blaming the learning rate)."""
    bound = moment_bound(betas)
    m, v = state.get("exp_avg"), state.get("exp_avg_sq")
    if bound is None or not isinstance(m, torch.Tensor) or not isinstance(v, torch.Tensor) \
            or m.shape != v.shape:
        return
    allowed = bound * 1.01 * v.double().clamp(min=0).sqrt() + 1e-12  # rounding's slack
    excess = m.double().abs() - allowed
    if bool((excess > 0).any()):
        i = int(excess.flatten().argmax())
        raise refuse(f"its {name} state 'exp_avg' holds {float(m.flatten()[i]):.3g} beside an "
                     f"average of squares of {float(v.flatten()[i]):.3g}, more than Adam can "
                     f"make (at most {bound:.3g} times its square root)")


# -- the metadata and optimizer groups of a state, read by io.checkpoint ---------------------------

MAX_STEP = 2**40  # far beyond any run (a step a microsecond for 12 days)


def check_state_meta(path: Path, meta: dict[str, Any]) -> None:
    """A training state's step, history and config are what featinv writes: a whole step from 0
    to ``MAX_STEP``, a list of epoch records at or before it, a config object."""
    step, history = meta.get("step"), meta.get("history", [])
    problem = None
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        problem = f"step {shown(step)}"
    elif not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        problem = "history"
    elif any(not isinstance(r.get("step", 0), int) or not 0 <= r.get("step", 0) <= step
             for r in history):
        problem = "history (records after the step)"
    elif not isinstance(meta.get("config", {}), dict):
        problem = "config"
    elif not isinstance(meta.get("param_groups", []), list):
        problem = "param_groups"
    if problem:
        raise CheckpointError(f"{path}: incomplete featinv metadata (missing or invalid "
                              f"{problem}); this training state was not written by featinv as "
                              "it is. Start a new run (--overwrite).")


def check_param_groups(groups, opt: torch.optim.Optimizer, built: list[dict[str, Any]]) -> None:
    """Stored param groups shaped as ``opt``'s: as many, each an object holding every setting
    ``opt`` has (a missing ``betas`` was taken for the run's own, then failed as a KeyError)
    and ``params``, the numbers torch's ``state_dict`` gives the run's parameters: from 0, in
    order over the groups (numbers beyond them, or negative, left their state unattached, an
    AttributeError at the first check)."""
    if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
        raise ValueError(f"its param_groups are not {len(opt.param_groups)} group(s)")
    start = 0
    for stored, group, want in zip(groups, opt.param_groups, built):
        if not isinstance(stored, dict):
            raise ValueError("a param group is no object")
        missing = [k for k in want if k != "params" and k not in stored]
        if missing:
            raise ValueError(f"a param group lacks '{missing[0]}'")
        ids, count = stored.get("params"), len(group["params"])
        if not (isinstance(ids, list) and all(type(i) is int for i in ids)
                and ids == list(range(start, start + count))):
            raise ValueError("its param group 'params' is not a list of distinct parameter "
                             f"numbers for the run's {count} parameters ({start} to "
                             f"{start + count - 1}, in order)")
        start += count
