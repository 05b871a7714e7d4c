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


class DecoderOutputError(CheckpointError):
    """A decoder produced NaN or infinite values: every picture it makes would be blank, so the
    command stops (not one error per image)."""


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


# the most of a name a plugin (or a file) chose that a message shows: a class, plugin, entry
# point or representation name of 5 MB was printed whole
NAME_LIMIT = 100
# the most of a line of text a plugin chose (a description, a parameter's help) that is shown
LINE_LIMIT = 300


def clipped(text: str, limit: int = NAME_LIMIT) -> str:
    """A name or a line of text that a plugin chose, for a message: printable (``printable``)
    and at most ``limit`` characters, cut ones ending in "...". Runs none of the plugin's code
    (a ``str`` subclass's own methods are never called); what is not a ``str`` at all is named
    by its class."""
    if not isinstance(text, str):
        return f"(a {type_name(text)}, not text)"
    text = str.__str__(text)  # a plain copy of a str subclass's characters
    head = printable(text[:limit])
    return head if len(text) <= limit and len(head) <= limit else head[:limit] + "..."


def type_name(value: object) -> str:
    """The name of ``value``'s class (of an exception: its type), as messages show it: the
    class's own name, never what a metaclass of the plugin's says it is, ``clipped``."""
    name = type.__dict__["__name__"].__get__(type(value))  # runs no code of the class's
    return clipped(name)


def quoted(text: object) -> str:
    """``text`` in single quotes, escaped once (``printable``): ``repr`` of an escaped text
    would escape its backslashes again, ``'\\x1b[31m'`` beside the ``'\x1b[31m'`` of a
    ``repr`` escaped by the error line itself."""
    return f"'{printable(text)}'"


def pixel_size(width: int, height: int) -> str:
    """An image size as every message gives it, width first and labelled:
    ``2000x1 px (width x height)``."""
    return f"{width}x{height} px (width x height)"


class Interrupted(FeatinvError):
    """A run stopped on SIGINT/SIGTERM after saving what it had; ``exit_code`` is 128 + the
    signal number (130 for Ctrl-C, 143 for SIGTERM), as shells report a signalled process."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


def command_options() -> frozenset[str] | None:
    """The option names (``-c``, ``--checkpoint``, ...) of the ``featinv`` command running now,
    or None outside the command line (the Python API). Messages shared by several commands use
    it to advise only options the command at hand has (``--init-from`` was told to use ``-c``,
    which ``train`` does not take)."""
    import sys

    click = sys.modules.get("click")  # never imported here: the CLI has imported it already
    ctx = click.get_current_context(silent=True) if click is not None else None
    if ctx is None:
        return None
    return frozenset(opt for param in ctx.command.params
                     for opt in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
                     if opt.startswith("-"))


def param_advice(name: str, value: str) -> str:
    """How to give the representation parameter ``name`` the ``value`` in the command running
    now: ``-p NAME=VALUE`` (also outside the command line, as the documentation spells it),
    ``--NAME VALUE`` where the command has that option instead (``invert --weights``), else
    ``NAME=VALUE`` (a command with neither, e.g. a comparator's ``--comparator-param``)."""
    options = command_options()
    if options is None or "-p" in options:
        return f"-p {name}={value}"
    if f"--{name}" in options:
        return f"--{name} {value}"
    return f"{name}={value}"


def number_words(value) -> str:
    """A number for a message, short however large (``10**300`` is no 300-digit word)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        try:
            digits = str(len(str(abs(value))))
        except ValueError:  # past Python's limit for int-to-text conversion (4300 digits)
            digits = "more than 4300"
        return f"{'a negative' if value < 0 else 'a'} whole number of {digits} digits"
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def shown(value, width: int = 40) -> str:
    """Any value of a file for a one-line message: a whole number of 15 digits or more in
    words (``number_words``; its first 60 digits read as 1e59), anything else its ``repr``,
    printable, cut to ``width`` characters with "..." where cut."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return number_words(value)
    text = printable(repr(value))
    return text if len(text) <= width else text[:width] + "..."
