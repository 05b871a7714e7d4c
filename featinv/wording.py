"""How a message names a setting: as the command line's option (``--max-side 2700``) when the
``featinv`` command runs, as the Python API's argument (``max_side=2700``) otherwise.

Code shared by both (image sizing, the memory checks, ``TrainConfig``'s checks) builds its
messages with ``opt``; ``featinv.cli.main`` runs every command inside ``cli_wording()``. No
import beyond the standard library.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

_CLI = [False]  # a process-wide switch (not a context variable: threads of a command see it)
_NO_VALUE = object()


def in_cli() -> bool:
    """Whether messages are for the command line now."""
    return _CLI[0]


def opt(name: str, value: Any = _NO_VALUE) -> str:
    """The setting ``name`` (the API's spelling, ``max_side``), with ``value`` if given, as the
    user gave it: ``--max-side`` / ``--max-side 2700`` on the command line, ``max_side`` /
    ``max_side=2700`` in Python (a string value quoted: ``loss='pixel'``)."""
    if _CLI[0]:
        flag = "--" + name.replace("_", "-")
        return flag if value is _NO_VALUE else f"{flag} {value}"
    if value is _NO_VALUE:
        return name
    return f"{name}={value!r}" if isinstance(value, str) else f"{name}={value}"


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Messages raised inside name the command line's options."""
    before, _CLI[0] = _CLI[0], True
    try:
        yield
    finally:
        _CLI[0] = before
