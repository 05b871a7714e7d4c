"""What the commands of the CLI print the same way: one-line errors, JSON, the optimisation
baseline's progress. (The shared options are in ``featinv.cli.options``; ``parse_params``,
``params_with_weights`` and ``feature_params`` still import from here.)"""
from __future__ import annotations

import click

from ..errors import printable
from ..io import json_text
from .options import feature_params, parse_params, params_with_weights  # noqa: F401


def echo_error(message, path=None) -> None:
    """``Error: MESSAGE`` on stderr, on one line; prefixed by ``path`` unless it names it."""
    text = printable(message)
    if path is not None and printable(path) not in text:
        text = f"{printable(path)}: {text}"
    click.echo(f"Error: {text}", err=True)


def echo_json(data) -> None:
    """``data`` as strict JSON: a NaN or infinite number is ``null`` (bare ``NaN`` is no JSON)."""
    click.echo(json_text.dumps(data, indent=2))


def optimize_progress(cfg, name: str):
    """The optimisation baseline's progress: a bar on a terminal, a line now and then in logs."""
    from ..progress import StepProgress

    return StepProgress(cfg.steps, f"optimising {name}")
