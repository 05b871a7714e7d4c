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

from ..errors import PluginError, UnknownFeatureError, type_name

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
# how long turning a plugin's exception into text may take: a legitimate __str__ returns in
# microseconds (a 50 MB text in milliseconds); one that has not returned by then never will
TEXT_TIMEOUT = 2.0
FAILED = "(its message cannot be shown: its __str__ failed)"
HUNG = "(its message cannot be shown: its __str__ did not return)"
# how many threads still running a __str__ that could not be stopped are left at that: past
# them every message that would need another is the placeholder (each takes a share of the CPU)
MAX_STUCK = 2


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (of the exception a ``PluginAborted`` stands for), the type's
    own name ``clipped`` (a class name of 5 MB was printed whole) and the message cut to
    ``MESSAGE_LIMIT`` characters (``message_text``)."""
    exc = exc.original if isinstance(exc, PluginAborted) else exc
    message = message_text(exc)
    name = type_name(exc)
    return f"{name}: {message}" if message else name


def message_text(exc: BaseException, limit: int = MESSAGE_LIMIT) -> str:
    """``str(exc)`` stripped and cut to ``limit`` characters (ending in '...'). An exception
    whose text runs no code of a plugin's (featinv's and Python's own classes, with plain
    arguments) is formatted here; any other in a thread of its own (``_text_in_thread``), so
    that a ``__str__`` that raises anything, returns something other than text, or never
    returns gives a placeholder instead. A signal of the user's (Ctrl-C) still ends the wait."""
    raw = _plain_text(exc)
    if raw is None:
        raw = _text_in_thread(exc)
    message = str.strip(raw)
    return message if len(message) <= limit else message[:limit] + "..."


def passes_as_is(exc: BaseException) -> bool:
    """Whether a ``FeatinvError`` that plugin code raised may reach the user unchanged: its text
    runs none of the plugin's code (no ``__str__`` of its own, plain arguments) and is at most
    ``MESSAGE_LIMIT`` characters (else it is wrapped in a ``PluginError`` whose text
    ``exception_text`` made; later code may format it again, unguarded)."""
    raw = _plain_text(exc)
    return raw is not None and raw not in (FAILED, HUNG) and len(raw) <= MESSAGE_LIMIT


_PLAIN_ARGS = (str, int, float, bool, type(None))


def _plain_text(exc: BaseException) -> str | None:
    """``str(exc)`` when computing it runs no code of a plugin's: its class formats with
    ``BaseException``'s, ``KeyError``'s or ``UnknownFeatureError``'s ``__str__`` (found without
    asking the class, whose metaclass could answer anything) and its arguments are plain
    strings, numbers or None; None otherwise."""
    method = None
    for klass in type.__dict__["__mro__"].__get__(type(exc)):
        method = type.__dict__["__dict__"].__get__(klass).get("__str__")
        if method is not None:
            break
    args = BaseException.__dict__["args"].__get__(exc)
    if method not in _SAFE_STR or not all(type(a) in _PLAIN_ARGS for a in args):
        return None
    try:
        return method(exc)
    except Exception:  # UnknownFeatureError() without a message; an int of 5000 digits
        return FAILED


_SAFE_STR = (BaseException.__dict__["__str__"], KeyError.__dict__["__str__"],
             UnknownFeatureError.__dict__["__str__"])


class _Stop(BaseException):
    """Raised into a thread whose ``__str__`` did not return (``_stop``)."""


_hung: set[type] = set()  # classes whose __str__ did not return: never asked again
_stuck: list[threading.Thread] = []


def _text_in_thread(exc: BaseException) -> str:
    """``str(exc)`` as a plain ``str``, computed in a daemon thread that may take
    ``TEXT_TIMEOUT`` seconds; a placeholder when it raised anything, returned something that is
    no ``str``, or did not return. A thread that does not return is stopped with an exception
    raised into it (a loop of Python code ends there); one that catches that, or waits in C
    code, is left running: a daemon thread keeps no process from exiting, and Python hands the
    interpreter lock over to the main thread every few milliseconds (a hang in C code that holds
    that lock cannot be helped)."""
    _stuck[:] = [t for t in _stuck if t.is_alive()]
    if type(exc) in _hung or len(_stuck) >= MAX_STUCK:
        return HUNG
    box: list[str | None] = []
    lock, stopped = threading.Lock(), []

    def run() -> None:
        try:  # a _Stop sent as the text was done is caught here too, never in threading's code
            try:
                text = str.__str__(str(exc))  # TypeError for anything but text
            except BaseException:  # its own KeyboardInterrupt or SystemExit too: no signal here
                text = None
            with lock:
                if not stopped:
                    box.append(text)
        except BaseException:
            pass

    worker = threading.Thread(target=run, name="featinv-exception-text", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no new thread at interpreter shutdown
        return FAILED
    worker.join(TEXT_TIMEOUT)
    with lock:  # the stop is sent only while the text is not done
        if not box:
            stopped.append(True)
            _stop(worker)
    if box:
        return FAILED if box[0] is None else box[0]
    _hung.add(type(exc))
    worker.join(0.5)
    if worker.is_alive():
        _stuck.append(worker)
    return HUNG


def _stop(worker: threading.Thread) -> None:
    """Raise ``_Stop`` in ``worker`` at its next line of Python code (CPython only)."""
    try:
        import ctypes

        if worker.is_alive() and worker.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                       ctypes.py_object(_Stop))
    except (ImportError, AttributeError, OSError):  # not CPython: it stays a daemon thread
        pass


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
