"""Exceptions featinv raises for things a user can fix.

Every ``FeatinvError`` carries a one-line message that says what is wrong and what to do; the CLI
prints it without a traceback.
"""
from __future__ import annotations


class FeatinvError(Exception):
    """A user-facing error: one line, what went wrong and what to do."""


class UnknownFeatureError(FeatinvError, KeyError):
    """No representation of that name is registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginError(FeatinvError):
    """A plugin failed to load, raised in a hook, or registered something invalid."""


class ShapeError(FeatinvError, ValueError):
    """A tensor does not have the shape a contract requires (expected vs actual)."""


class CheckpointError(FeatinvError):
    """A checkpoint is missing, corrupt, foreign, or does not match the representation."""


class ImageError(FeatinvError):
    """An image file cannot be read or is unusable."""


class DataError(FeatinvError):
    """A data folder is empty, missing or unreadable."""


def printable(text: object) -> str:
    """``str(text)`` with control and other unprintable characters escaped (``\\n``,
    ``\\x1b``, ...), so that a file name can never add a line or a terminal code to a message.

    Idempotent: an escaped text comes back unchanged.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Interrupted(FeatinvError):
    """A run stopped on SIGINT/SIGTERM after saving what it had; ``exit_code`` is 128 + the
    signal number (130 for Ctrl-C, 143 for SIGTERM), as shells report a signalled process."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number
