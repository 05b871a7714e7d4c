"""Progress of long loops that fits both terminals and logs.

On a terminal (stderr is a tty) it is a tqdm bar; otherwise (a log file, a pipe, CI) a plain line
every ``interval`` seconds, and a last one at the end if any was written, so that logs stay
readable. ``FEATINV_PROGRESS=0`` turns both off.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

INTERVAL_S = 30.0


def _enabled() -> bool:
    return os.environ.get("FEATINV_PROGRESS", "1") not in ("0", "false", "no")


class Progress:
    """Progress of ``total`` steps of ``desc``: ``update(n, **info)`` after each; ``close()``
    (or a ``with`` block) at the end. ``info`` (e.g. ``objective="0.123"``) is shown with it."""

    def __init__(self, total: int, desc: str, unit: str = "it", file: TextIO | None = None,
                 interval: float = INTERVAL_S, leave: bool = True):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.file = file or sys.stderr
        self.n = 0
        self.info = ""
        self.lines = 0  # plain lines written
        self._shown = 0  # the count the last line showed
        self._start = self._last = time.monotonic()
        self._bar = None
        self._open = _enabled()
        isatty = getattr(self.file, "isatty", None)
        if self._open and isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, leave=leave,
                             dynamic_ncols=True)

    def update(self, n: int = 1, **info: Any) -> None:
        self.n += n
        if info:
            self.info = ", ".join(f"{k} {v}" for k, v in info.items())
        if self._bar is not None:
            if info:
                self._bar.set_postfix_str(self.info, refresh=False)
            self._bar.update(n)
        elif self._open and time.monotonic() - self._last >= self.interval:
            self._line()

    def _line(self) -> None:
        self._last = time.monotonic()
        percent = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        info = f", {self.info}" if self.info else ""
        self.file.write(f"{self.desc}: {self.n}/{self.total} {self.unit}{percent}{info}, "
                        f"{self._last - self._start:.0f} s\n")
        self.file.flush()
        self.lines += 1
        self._shown = self.n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._open and self.lines and self._shown != self.n:  # the log says it finished
            self._line()
        self._open = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StepProgress:
    """A ``progress(step, objective)`` callback, as ``featinv.inversion.optimize`` calls it, showing each
    run of ``total`` steps (one per image batch) as a ``Progress``."""

    def __init__(self, total: int, desc: str, file: TextIO | None = None,
                 interval: float = INTERVAL_S):
        self.total, self.desc, self.file, self.interval = total, desc, file, interval
        self._run: Progress | None = None
        self._step = 0

    def __call__(self, step: int, objective: float) -> None:
        if self._run is None or step <= self._step:  # a new run started
            self.close()
            self._run = Progress(self.total, self.desc, "steps", self.file, self.interval,
                                 leave=False)
            self._step = 0
        self._run.update(step - self._step, objective=f"{objective:.4f}")
        self._step = step
        if step >= self.total:
            self.close()

    def close(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None
