"""``call_first``: call a ``firstresult`` hook through pluggy and say which plugin answered it,
or name the one an exception came from (as ``PluginError``), so a failing third-party plugin is
blamed by name instead of surfacing as a bare traceback."""
from __future__ import annotations

import contextvars
import functools
from typing import Any

from ..errors import FeatinvError, PluginError
from .guard import PluginAborted, passes_as_is, plugin_code
from .plugins import describe_exception, get_plugin_manager


class _Call:
    """What one ``call_first`` learnt: the plugin whose answer pluggy returned, and the plugin
    an exception came from."""

    def __init__(self) -> None:
        self.answered: str | None = None
        self.error: BaseException | None = None
        self.failed: str | None = None


_current_call: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "featinv_hook_call", default=None)


def _blame(exc: BaseException, plugin_name: str) -> None:
    """Name the first implementation an exception came out of (a wrapper re-raising it keeps
    that name; one raising another exception is named instead)."""
    call = _current_call.get()
    if call is not None and call.error is not exc:
        call.error, call.failed = exc, plugin_name


def _traced(impl) -> Any:
    """``impl.function`` wrapped to record, during a ``call_first``, whether it answered or which
    exception came out of it. Wrapper implementations (``wrapper=True``, ``hookwrapper=True``)
    stay generators that pluggy drives as usual."""
    function, name = impl.function, impl.plugin_name
    if impl.wrapper or impl.hookwrapper:
        @functools.wraps(function)
        def traced(*args):
            try:
                return (yield from function(*args))
            except BaseException as exc:
                _blame(exc, name)
                raise
    else:
        @functools.wraps(function)
        def traced(*args):
            try:
                result = function(*args)
            except BaseException as exc:
                _blame(exc, name)
                raise
            call = _current_call.get()
            if call is not None and result is not None:
                call.answered = name
            return result
    traced.__featinv_traced__ = True
    return traced


def call_first(hook_name: str, required: bool = True, **kwargs: Any) -> tuple[str | None, Any]:
    """Call a ``firstresult`` hook through pluggy; return its answer and the name of the plugin
    that gave it. A ``FeatinvError`` (a clear error the plugin means the user to see) passes
    unchanged; any other exception becomes a ``PluginError`` naming the plugin it came from. When
    no implementation answers: a ``PluginError``, or ``(None, None)`` if not ``required``."""
    hook = getattr(get_plugin_manager().hook, hook_name)
    for impl in hook.get_hookimpls():  # also those registered on the manager directly
        if not getattr(impl.function, "__featinv_traced__", False):
            impl.function = _traced(impl)
    call = _Call()
    token = _current_call.set(call)
    try:
        with plugin_code(f"a plugin's {hook_name}"):  # sys.exit or GeneratorExit in the hook
            result = hook(**kwargs)
    except Exception as exc:
        if isinstance(exc, FeatinvError) and not isinstance(exc, PluginAborted) \
                and passes_as_is(exc):
            raise
        raise PluginError(f"Plugin '{call.failed or '?'}' failed in {hook_name}: "
                          f"{describe_exception(exc)}") from exc
    finally:
        _current_call.reset(token)
    if result is not None:
        return call.answered, result
    if not required:
        return None, None
    raise PluginError(f"No plugin answered {hook_name}.")
