"""When a training run reads its loss, validates, checkpoints and stops: the bookkeeping of
``featinv.training.loop.Run.fit``, each piece a small object with one decision."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable

import torch

from ..errors import Interrupted
from .distributed import World, mean_over_ranks

VAL_SHARE = 0.05  # automatic validation takes at most this share of the run's time


class LossMeter:
    """Sums each loss term's tensors step by step without waiting for the device; ``read``
    averages them over the steps since the last read and over all processes (one sync), and
    ``end_epoch`` gives the epoch's means."""

    def __init__(self, world: World):
        self.world = world
        self.sums: dict[str, torch.Tensor] = {}
        self.pending = 0  # steps added since the last read
        self._epoch_sums: dict[str, float] = {}
        self._epoch_steps = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.pending += 1

    def read(self) -> dict[str, float]:
        """Each term's mean over the pending steps (all processes)."""
        means = mean_over_ranks(torch.stack(list(self.sums.values())) / self.pending,
                                self.world).tolist()
        values = dict(zip(self.sums, means))
        for name, value in values.items():
            self._epoch_sums[name] = self._epoch_sums.get(name, 0.0) + value * self.pending
        self._epoch_steps += self.pending
        self.sums, self.pending = {}, 0
        return values

    def end_epoch(self) -> dict[str, float]:
        """The means of every term over the epoch's read steps; starts the next epoch."""
        means = {k: v / max(self._epoch_steps, 1) for k, v in self._epoch_sums.items()}
        self._epoch_sums, self._epoch_steps = {}, 0
        return means


class SaveClock:
    """A checkpoint every ``minutes`` of wall time and, if set, every ``every`` steps."""

    def __init__(self, minutes: float, every: int = 0):
        self.minutes, self.every = minutes, every
        self.reset()

    def reset(self) -> None:
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        return bool(self.every and step % self.every == 0) or \
            time.monotonic() - self._last > self.minutes * 60


class ValidationPacer:
    """Whether to validate after an epoch: every ``every`` epochs if set, and always after the
    last. Otherwise automatically: after the first epoch (which measures what validation
    costs), then whenever the training since the last one took at least ``(1 - VAL_SHARE) /
    VAL_SHARE`` (19) times a validation, so that validation stays under 5 % of the run."""

    def __init__(self, every: int, n_val: int):
        self.every, self.n_val = every, n_val
        self.val_seconds: float | None = None
        self.trained_seconds = 0.0  # of training since the last validation

    def due(self, epoch: int, last: bool, seconds: float, images_per_second: float) -> bool:
        self.trained_seconds += seconds
        if last:
            return True
        if self.every:
            return (epoch + 1) % self.every == 0
        if self.val_seconds is None:  # not measured yet: a forward pass costs about 1/3 step
            return epoch == 0 or self.trained_seconds >= self._ratio() * self.n_val / (
                3 * images_per_second)
        return self.trained_seconds >= self._ratio() * self.val_seconds

    def validated(self, seconds: float) -> None:
        self.val_seconds, self.trained_seconds = seconds, 0.0

    @staticmethod
    def _ratio() -> float:
        return (1 - VAL_SHARE) / VAL_SHARE


STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # no SIGHUP on Windows


class StopRequest:
    """SIGINT, SIGTERM or SIGHUP (a closed terminal or SSH session) asking a run to stop, while
    ``install``-ed (main thread only): the first signal is remembered in ``signum`` (the run
    saves and exits at its next step), a second one ends the process at once, without saving,
    after one line on stderr saying what is kept (``kept()``, e.g. the run folder's
    ``killed_message``). A SIGHUP that is ignored (``nohup``) stays ignored."""

    def __init__(self, kept: Callable[[], str] | None = None):
        self.signum: int | None = None
        self._old: dict = {}
        self._kept = kept

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signum == getattr(signal, "SIGHUP", None) and \
                        signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # under nohup
                self._old[signum] = signal.signal(signum, self._on_signal)

    def uninstall(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old = {}

    def early(self) -> None:
        """Raise ``Interrupted`` if a signal asked to stop before training started (nothing to
        save); also called while the training images are decoded, which can take minutes."""
        if self.signum is not None:
            raise Interrupted(f"Interrupted by {signal.Signals(self.signum).name} before "
                              "training started; nothing was trained.", self.signum)

    def _on_signal(self, signum, _frame) -> None:
        if self.signum is not None:
            try:
                words = self._kept() if self._kept is not None else ""
            except Exception:  # noqa: BLE001 (the process ends anyway)
                words = ""
            try:
                sys.stderr.write(f"Stopped at once by a second {signal.Signals(signum).name}, "
                                 f"without saving{'; ' + words if words else '.'}\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # a closed terminal
                pass
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        self.signum = signum

    def agreed(self, world: World, device: torch.device, synced: bool) -> bool:
        """Whether to stop now; across processes only at steps where all of them ask (those
        that read the loss), so that they all stop at the same step."""
        if not world.distributed:
            return self.signum is not None
        if not synced:
            return False
        flag = torch.tensor(float(self.signum or 0), device=device)
        return bool(mean_over_ranks(flag, world).item() > 0)
