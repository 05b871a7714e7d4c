"""Plugin code that ends with a ``BaseException`` that is not an ``Exception``: ``SystemExit``
(a module that parses ``sys.argv`` at import, or calls ``sys.exit``), ``GeneratorExit``, a
``KeyboardInterrupt`` raised by the code itself, or a class of its own. Left alone, such an
exception passes every ``except Exception`` that isolates a broken plugin and ends featinv, with
no word or with a traceback, even when the command never needed that plugin.

``plugin_code(who)`` turns it into ``PluginAborted``, a ``PluginError``, so it is one more plugin
failure. The user's own signals are told apart: when SIGINT (Ctrl-C), SIGTERM or SIGHUP arrives
while the plugin code runs, the exception its handler raised passes unchanged. Only the main
thread receives signals, so in any other thread every such exception is the plugin's.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from ..errors import PluginError

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, name))


class PluginAborted(PluginError):
    """Plugin code raised ``original``, a ``BaseException`` that is not an ``Exception``."""

    def __init__(self, who: str, original: BaseException):
        self.original = original
        super().__init__(f"{who} failed: {exception_text(original)} (plugin code must raise an "
                         "exception, not end the process); fix or uninstall the plugin.")


# the most of a plugin exception's message shown (one 50 MB message would fill the terminal)
MESSAGE_LIMIT = 500


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (of the exception a ``PluginAborted`` stands for), the message
    cut to ``MESSAGE_LIMIT`` characters. Formatting runs the plugin's code once more (its
    ``__str__``), guarded: whatever that raises, ``KeyboardInterrupt`` or a class of its own
    included, leaves a placeholder, unless the user's signal arrived meanwhile."""
    exc = exc.original if isinstance(exc, PluginAborted) else exc
    message = message_text(exc)
    try:
        name = str.__str__(type(exc).__name__)
    except BaseException:  # a metaclass's __name__ of its own
        name = "exception"
    return f"{name}: {message}" if message else name


def message_text(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """``str(exc)`` stripped and cut to ``limit`` characters (ending in '...'), run guarded: a
    ``__str__`` that raises anything, or returns a ``str`` subclass with methods of its own,
    gives a placeholder instead. A signal of the user's (Ctrl-C) that arrives meanwhile passes."""
    watch = _SignalWatch()
    try:
        raw = str(exc)
        message = str.strip(str.__str__(raw))  # a str subclass's own strip() never runs
    except BaseException:
        if watch.arrived:
            raise
        message = "(its message cannot be shown: its __str__ failed)"
    finally:
        watch.close()
    return message if len(message) <= limit else message[:limit] + "..."


def passes_as_is(exc: BaseException) -> bool:
    """Whether a ``FeatinvError`` that plugin code raised may reach the user unchanged: its
    message can be shown and is at most ``MESSAGE_LIMIT`` characters (else it is wrapped in a
    ``PluginError`` whose text ``exception_text`` made)."""
    watch = _SignalWatch()
    try:
        raw = str(exc)
        return type(raw) is str and len(raw) <= MESSAGE_LIMIT
    except BaseException:
        if watch.arrived:
            raise
        return False
    finally:
        watch.close()


class _SignalWatch:
    """While open, notes whether a watched signal arrived (its handler still runs as before)."""

    def __init__(self) -> None:
        self.arrived = False
        self._previous: dict[int, Callable] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            if callable(previous):  # SIG_IGN and SIG_DFL raise nothing into this code
                self._previous[signum] = previous
                signal.signal(signum, self._relay(previous))

    def _relay(self, previous: Callable) -> Callable:
        def relay(signum, frame):
            self.arrived = True
            return previous(signum, frame)
        return relay

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _compiling() -> bool:
    """Whether torch.compile is tracing this code (never when torch is not even imported: the
    plugin listing runs without it)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.compiler.is_compiling()


class plugin_code:
    """``with plugin_code(who):`` runs plugin code (``who`` names it in messages, e.g.
    ``"plugin 'x'"``); a ``BaseException`` it raises that is neither an ``Exception`` nor the
    doing of a signal leaves the block as ``PluginAborted``."""

    def __init__(self, who: str) -> None:
        self.who = who

    def __enter__(self) -> "plugin_code":
        # under torch.compile (a compiled training step) the watch would break the graph, and
        # no Python handler runs inside it anyway
        self._watch = None if _compiling() else _SignalWatch()
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if self._watch is None:
            return False
        self._watch.close()
        if exc is None or isinstance(exc, Exception) or self._watch.arrived:
            return False  # nothing, an ordinary failure, or the user's Ctrl-C or SIGTERM
        raise PluginAborted(self.who, exc) from exc
