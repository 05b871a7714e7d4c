"""An optimizer's state in a training state file: flat tensors ``<prefix><param>.<key>`` and
JSON param groups on save, checked and put back on ``--resume`` (``io.checkpoint`` stores
them; ``io.state_checks`` checks the groups' shape and the values Adam can have made).

Every fault of a stored state that would make the optimizer fail later (issue 24, round 11,
E5) is a ``ValueError`` here, which ``load_train_state`` words as "the optimizer state does not
fit this run": parameter numbers that are not the run's (beyond its parameters, negative, or
out of order), a parameter whose state lacks a tensor the optimizer keeps (Adam's
``exp_avg``: a ``KeyError`` at the first step), and kernel flags that are no setting of the
run (``differentiable: true``: a ``RuntimeError`` from fused Adam). The kernel flags stored are
those of the machine that saved: after loading, the optimizer gets this run's own back (a GPU
run's ``capturable`` fails on the CPU).

Round 12 (D7): states that resumed and then quietly trained otherwise than the run they claim
to continue: a state with a parameter's moments removed (Adam restarts them in the middle of
the schedule, a fresh optimizer at a decayed learning rate), and an ``exp_avg_sq`` so large
that the resumed run stops learning (``MAX_SQUARE``).
"""
from __future__ import annotations

from collections.abc import Collection

import torch

from .state_checks import SQUARES, check_param_groups, shown

MAX_LR = 1e30  # train's bound on --lr (training.config.MAX_LR)

OPTIMIZER_PREFIX = "opt."  # the decoder's optimizer (io.checkpoint.STATE_PREFIXES)
# optimizer group entries that are no setting of the run: the parameters, the learning rate
# (set by the schedule at each step) and how the update is computed (``KERNEL_FLAGS``)
KERNEL_FLAGS = ("foreach", "fused", "capturable", "differentiable")
_OPTIMIZER_RUNTIME = frozenset({"params", "lr", "initial_lr", *KERNEL_FLAGS})
# The largest average of squared gradients (Adam's ``exp_avg_sq``) a stored state may hold: the
# square of a gradient of 1e6. featinv's losses are means over pixels in [0, 1] (or distances
# normalised by the target's), its decoders' inputs are normalised by the feature statistics
# and their layers by batch norm: in some 30 short runs of the built-in representations and
# presets the largest was 0.016, and a run diverging at --lr 1 reached 1e7. Beyond the bound
# the state was altered or its run blew up; either way Adam, which divides each update by the
# square root and forgets it by beta2 = 0.999 a step, would leave that parameter still for
# some 40000 steps (3e38: 100000) after the resume.
MAX_SQUARE = 1e12


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = OPTIMIZER_PREFIX
                      ) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer's state as flat tensors ``<prefix><param>.<key>``, and its param groups
    (JSON): safetensors holds no Python objects."""
    sd = opt.state_dict()
    tensors = {f"{prefix}{pid}.{key}": torch.as_tensor(value)
               for pid, state in sd["state"].items() for key, value in state.items()}
    return tensors, sd["param_groups"]


def _check_runtime(groups: list) -> None:
    """The stored learning rates are numbers from 0, the kernel flags what torch writes
    (``foreach`` and ``fused`` true, false or null; ``capturable`` a flag); ``differentiable``
    is false: featinv never trains through the optimizer's update."""
    for group in groups:
        for key in ("lr", "initial_lr"):
            value = group.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= MAX_LR:  # exact for 10**400, False for NaN
                raise ValueError(f"its {key} {shown(value)} is no learning rate")
        for key in KERNEL_FLAGS:
            value = group.get(key, False)
            allowed = (True, False) if key == "capturable" else (False,) \
                if key == "differentiable" else (True, False, None)
            if not any(value is a for a in allowed):
                raise ValueError(f"its {key} {shown(value)} is no setting featinv trains with")


def _state_keys(opt: torch.optim.Optimizer, group: dict) -> frozenset[str] | None:
    """The state tensors ``opt``'s kind keeps per parameter with ``group``'s settings (Adam:
    step, exp_avg, exp_avg_sq, and max_exp_avg_sq with amsgrad), found by one step of such an
    optimizer on a parameter of one zero; None where that cannot be built."""
    settings = {k: v for k, v in group.items() if k not in _OPTIMIZER_RUNTIME}
    param = torch.zeros(1, requires_grad=True)
    try:
        probe = type(opt)([param], lr=0.0, **settings)
        param.grad = torch.zeros(1)
        probe.step()
    except Exception:  # an optimizer of a plugin's that is built otherwise: not checked
        return None
    return frozenset(probe.state[param])


def _check_updated(opt: torch.optim.Optimizer, state: dict[int, dict], step: int,
                   updated: Collection[torch.Tensor], skips: bool) -> None:
    """After ``step`` >= 1 steps Adam holds a state for each parameter it updated: for some
    parameter at least (unless the run may have ``skips``: fp16's GradScaler skips every step
    whose gradients overflow, so its first steps may update nothing), and for each of
    ``updated`` (the parameters every step updates) once it holds any. A parameter that never
    receives a gradient (a plugin's network may hold some its output does not use) has none."""
    if step < 1 or (not state and skips):
        return
    params = [p for group in opt.param_groups for p in group["params"]]
    if not state:
        raise ValueError(f"it holds no state for any of the run's {len(params)} parameters "
                         f"after {step} steps, where Adam keeps one for each parameter it "
                         "updated")
    wanted = {id(p) for p in updated}
    missing = [pid for pid, p in enumerate(params) if id(p) in wanted and pid not in state]
    if missing:
        raise ValueError(f"parameter {missing[0]} has no state after {step} steps; "
                         f"{len(missing)} of the {len(wanted)} parameters that every step "
                         "updates lack one")


def _check_squares(state: dict[int, dict[str, torch.Tensor]]) -> None:
    """No average of squared gradients beyond ``MAX_SQUARE`` (see there)."""
    for pid, tensors in sorted(state.items()):
        for key in SQUARES:
            value = tensors.get(key)
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
                top = float(value.detach().max())
                if top > MAX_SQUARE:
                    raise ValueError(
                        f"the {key} of parameter {pid} holds {top:.3g}, the mean square of "
                        f"gradients of {top ** 0.5:.3g}, where featinv's stay far below "
                        f"{MAX_SQUARE ** 0.5:g}: the state was altered, or its run diverged, "
                        "and Adam would leave that parameter still for many thousand steps")


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list,
                   prefix: str = OPTIMIZER_PREFIX, step: int = 0,
                   updated: Collection[torch.Tensor] = (), skips: bool = False) -> None:
    """Inverse of ``optimizer_tensors``. The stored settings (Adam's betas, eps, weight decay)
    must be the ones ``opt`` was built with, which the run's configuration fixes: a state whose
    betas are [5, 5] was not written by featinv (a ``ValueError``; its learning rate is not
    compared, the schedule sets it at every step). ``step``: the run's step count, after which
    each parameter of ``updated`` must have a state (``_check_updated``; ``skips``: the run
    may have skipped steps). See the module's description for the other faults refused."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix):].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    built = [{k: v for k, v in group.items() if k not in _OPTIMIZER_RUNTIME}
             for group in opt.param_groups]
    check_param_groups(groups, opt, built)
    _check_runtime(groups)
    _check_updated(opt, state, step, updated, skips)
    _check_squares(state)
    start = 0
    for group in opt.param_groups:
        wanted = _state_keys(opt, group)
        for pid in range(start, start + len(group["params"])):
            have = frozenset(state.get(pid, ()))
            if have and wanted is not None and have != wanted:
                fault = (f"lacks '{min(wanted - have)}'" if wanted - have
                         else f"holds '{min(have - wanted)}'")
                raise ValueError(f"the state of parameter {pid} {fault} (the optimizer keeps "
                                 f"{', '.join(sorted(wanted))})")
        start += len(group["params"])
    own = [{k: group[k] for k in KERNEL_FLAGS if k in group} for group in opt.param_groups]
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"its state cannot be loaded ({type(exc).__name__}: {exc})") from None
    for group, flags, want in zip(opt.param_groups, own, built):
        group.update(flags)  # how this machine computes the update
        for key, value in want.items():
            stored = group[key]
            same = (list(stored) == list(value) if isinstance(value, (list, tuple))
                    and isinstance(stored, (list, tuple)) else stored == value
                    and isinstance(stored, bool) == isinstance(value, bool))  # false is no 0
            if not same:
                raise ValueError(f"its {key} {stored!r} is not this run's {value!r}; it was not "
                                 "written by featinv as it is")
    # Saved tensors come back contiguous; fused and foreach kernels expect each state tensor laid
    # out like its parameter (channels_last decoders), so give them the parameter's strides.
    for param, param_state in opt.state.items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                param_state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
