"""An exponential moving average of a decoder's weights (``--ema``), the network that is
validated and saved while the live one trains."""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage(nn.Module):
    """``module``: a copy of ``model`` whose floating-point weights and buffers follow
    ``ema <- d * ema + (1 - d) * live`` after each step, with ``d = min(decay, (1 + step) /
    (10 + step))`` so that early steps are not averaged in for long; integer buffers (batch-norm
    counters) are copied. Its ``state_dict`` is what a training state stores to resume exactly."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = float(decay)
        self.module = copy.deepcopy(model).requires_grad_(False)
        self._live = [model]  # in a list: not a submodule, not in this state_dict
        self._pair()

    def _pair(self) -> None:
        # state_dict() tensors share storage with the modules', so these lists stay valid while
        # the optimizer and load_state_dict update both in place
        ours, theirs = self.module.state_dict(), self._live[0].state_dict()
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        self._ema = [ours[k] for k in floats]
        self._cur = [theirs[k] for k in floats]
        self._copied = [(ours[k], theirs[k]) for k in ours if k not in set(floats)]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Average in the live weights after optimizer step number ``step`` (from 0)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._ema, self._cur, 1.0 - decay)
        for ours, theirs in self._copied:
            ours.copy_(theirs)
