"""The ``featinv`` command line: a thin layer over the Python API. This module holds the group
and ``main()``; each command lives in its own module of ``featinv.cli``.

Errors a user can fix are one line on stderr and exit code 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import errno
import io
import os
import signal
import sys
import threading
import warnings

import click

from .analyze import analyze
from .audit import audit_cmd
from .common import echo_error as _echo_error
from .options import options_once
from .compare import compare_cmd
from .demo import demo_cmd
from .describe import describe_cmd
from .evaluate import evaluate_cmd
from .extract import extract_cmd
from .invert import invert_cmd
from .list_features import list_features_cmd
from .pack import pack_cmd
from .plugins import plugins_cmd
from .share import push_cmd
from .show_features import show_features_cmd
from .train import train_cmd
from .zoo import zoo_cmd
from ..errors import FeatinvError, Interrupted, printable
from ..wording import cli_wording


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="featinv")
def cli(debug: bool) -> None:
    """Reconstruct images from feature representations with trained decoders."""
    from ..limits import memory_budget

    # messages name options as --max-side (also when a test runs the group itself)
    click.get_current_context().with_resource(cli_wording())
    memory_budget()  # a malformed $FEATINV_MEMORY_BUDGET: one refusal, not one per image


cli.add_command(list_features_cmd)
cli.add_command(plugins_cmd)
cli.add_command(describe_cmd)
cli.add_command(demo_cmd)
cli.add_command(zoo_cmd)
cli.add_command(extract_cmd)
cli.add_command(invert_cmd)
cli.add_command(evaluate_cmd)
cli.add_command(pack_cmd)
cli.add_command(push_cmd)
cli.add_command(show_features_cmd)
cli.add_command(analyze)
cli.add_command(compare_cmd)
cli.add_command(audit_cmd)
cli.add_command(train_cmd)
options_once(cli)  # a repeated option of one value is refused, not silently replaced


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """featinv's own warnings as one ``Warning: ...`` line on stderr; others as Python shows
    them (without the source line). Either is cut at ``WARNING_LIMIT`` characters, and a
    warning's text is made as a plugin's exception's is (``guard.message_text``): a plugin's
    warning of 5 MB, or one whose ``__str__`` never returns, cannot fill or stop the command."""
    from ..errors import clipped
    from ..representation.guard import message_text

    text = clipped(message_text(message, WARNING_LIMIT) if isinstance(message, BaseException)
                   else message, WARNING_LIMIT)  # escaped, then cut: at most the limit
    module = type.__dict__["__module__"].__get__(category)  # never a metaclass's own answer
    if isinstance(module, str) and module.startswith("featinv."):
        click.echo(printable(f"Warning: {text}"), err=True)
    else:
        name = clipped(type.__dict__["__name__"].__get__(category))
        sys.stderr.write(printable(f"{filename}:{lineno}: {name}: {text}") + "\n")


WARNING_LIMIT = 20000


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the command is, as Ctrl-C raises ``KeyboardInterrupt``:
    an output being written is removed (``io.files.atomic_write``) instead of left behind as a
    temporary file, and per-image ``except Exception`` handlers do not swallow it. ``train``
    replaces the handler while a run lives (it saves the run first)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def _terminate_here(main_pid: int):
    def handler(signum, _frame) -> None:
        if os.getpid() != main_pid:  # a forked loader process: end as SIGTERM ends it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise _Terminated(signum)
    return handler


# SIGHUP (a closed terminal or SSH session) ends a command as SIGTERM does; ignored under nohup
_END_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class _ClosedPipeSafe(io.RawIOBase):
    """Standard output that a closed reader (``featinv invert ... | head -1``) cannot stop: once
    the pipe is closed, what is printed goes nowhere and the command finishes its work (click
    would end it with exit code 1 and no word, after the first line)."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def write(self, data) -> int:
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)  # also for whatever writes to the descriptor itself
            os.close(null)
            return len(data)


def _guard_stdout() -> None:
    """Put ``_ClosedPipeSafe`` under ``sys.stdout`` when it is the process's own output to a
    pipe or socket (not under test runners' captures)."""
    import stat

    out = sys.stdout
    try:
        if out is not sys.__stdout__:
            return
        mode = os.fstat(out.fileno()).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return
        out.flush()
    except (AttributeError, OSError, ValueError):
        return
    raw = _ClosedPipeSafe(out.fileno())
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=out.encoding,
                                  errors=out.errors, line_buffering=True)


SIZING = ("--size", "--max-side", "--image-size", "--batch-size", "--limit")


def _out_of_memory(args: list[str]) -> None:
    """Say so, naming the options of the command in ``args`` that size its work."""
    command = next((cli.commands[a] for a in args if a in cli.commands), None)
    have = {o for p in (command.params if command else ()) for o in getattr(p, "opts", ())}
    names = [o for o in SIZING if o in have] or list(SIZING)
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    _echo_error("out of memory: this work needs more memory than the machine has left; use "
                f"a smaller {listed}.")
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FEATINV_DEBUG", "") not in ("", "0")
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _END_SIGNALS:
            if signum != signal.SIGTERM and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # nohup
            old_handlers[signum] = signal.signal(signum, _terminate_here(os.getpid()))
    _guard_stdout()
    try:
        with warnings.catch_warnings(), cli_wording():  # messages name options as --max-side
            warnings.showwarning = _show_warning
            code = cli.main(args=args, prog_name="featinv", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except _Terminated as exc:
        name = signal.Signals(exc.signum).name
        click.echo(f"Terminated ({name}); the outputs written so far are kept.", err=True)
        sys.exit(128 + exc.signum)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except FeatinvError as exc:
        if debug:
            raise
        from ..representation.guard import message_text  # a plugin's own error class, guarded

        _echo_error(message_text(exc, limit=20000))
        sys.exit(1)
    except MemoryError:  # what the header checks could not foresee (a plugin's appetite)
        if debug:
            raise
        _out_of_memory(args)
    except Exception as exc:  # a bug or an environment problem: still one line by default
        if debug:
            raise
        from ..limits import allocation_failure

        if allocation_failure(exc):  # PyTorch's words for it: RuntimeError, OutOfMemoryError
            _out_of_memory(args)
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a path of the user's
            from ..errors import printable

            _echo_error(f"{printable(exc.filename)[:60]}...: a file or folder name in this path "
                        "is longer than the file system allows (255 bytes); shorten it.")
            sys.exit(1)
        from ..representation.guard import exception_text  # a plugin's exception, guarded

        _echo_error(f"{exception_text(exc)} (run 'featinv --debug ...' for the traceback)")
        sys.exit(1)
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
