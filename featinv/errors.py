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
