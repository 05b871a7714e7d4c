"""Old spellings of renamed public names, kept so code written against them still works.

Each use warns once per call site (``DeprecationWarning``) and names the new spelling. Two
kinds: module attributes (``module_aliases`` gives a PEP 562 ``__getattr__``) and dataclass
fields (``renamed_fields``: the old keyword is accepted and the old attribute read).
"""
from __future__ import annotations

import functools
import sys
import warnings
from typing import Any, Callable


def warn(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)


def module_aliases(module: str, renamed: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves each old name in ``renamed`` (old -> new) as the new
    one, warning; any other missing name is the usual ``AttributeError``."""
    def __getattr__(name: str) -> Any:
        if name in renamed:
            warn(f"{module}.{name}", f"{module}.{renamed[name]}")
            return getattr(sys.modules[module], renamed[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__


def renamed_fields(renamed: dict[str, str]) -> Callable[[type], type]:
    """Class decorator, applied above ``@dataclass``: ``cls(old=value)`` means
    ``cls(new=value)`` and ``obj.old`` reads ``obj.new``, each with a warning."""
    def decorate(cls: type) -> type:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{cls.__name__}() got both {old}= (deprecated) and "
                                        f"{new}=")
                    warn(f"{cls.__name__}({old}=...)", f"{new}=")
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        for old, new in renamed.items():
            def read(self: Any, old: str = old, new: str = new) -> Any:
                warn(f"{type(self).__name__}.{old}", f".{new}", stacklevel=3)
                return getattr(self, new)
            setattr(cls, old, property(read, doc=f"Deprecated spelling of ``{new}``."))
        return cls
    return decorate
