"""Pieces every command of the CLI shares: JSON output and the representation's parameters."""
from __future__ import annotations

import functools
import json

import click

from ..errors import printable


def echo_error(message, path=None) -> None:
    """``Error: MESSAGE`` on stderr, on one line; prefixed by ``path`` unless it names it."""
    text = printable(message)
    if path is not None and printable(path) not in text:
        text = f"{printable(path)}: {text}"
    click.echo(f"Error: {text}", err=True)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def parse_params(items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE`` strings -> a dict; anything else is a usage error."""
    params = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--param")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def params_with_weights(items, weights: str | None) -> dict[str, str]:
    """``parse_params(items)``, with ``weights`` (when given) as the ``weights`` parameter."""
    params = parse_params(items)
    if weights is not None:
        params["weights"] = weights
    return params


def feature_params(command):
    """``--param NAME=VALUE`` (repeatable) and ``--weights``, handed on as one ``params`` dict."""

    @functools.wraps(command)
    def wrapper(*args, params=(), weights=None, **kwargs):
        return command(*args, params=params_with_weights(params, weights), **kwargs)

    wrapper = click.option("--weights", metavar="PATH|imagenet|random",
                           help="Network weights of a CNN representation: a .safetensors/.npz "
                           "file, imagenet (download/cache) or random; same as -p weights=...")(wrapper)
    return click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                        help="Representation parameter (repeatable), e.g. -p cell_size=8.")(wrapper)
