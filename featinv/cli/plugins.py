"""``featinv plugins``: the loaded plugins, their representations, and any that failed."""
from __future__ import annotations

import click

from .common import echo_json
from ..errors import printable


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, their representations, and any that failed."""
    from ..representation.plugins import plugin_infos

    infos = plugin_infos()
    if as_json:
        echo_json([p.to_json() for p in infos])
        return
    for p in infos:
        status = (f"ERROR: {p.error}" if p.error else ", ".join(p.features)
                  or f"(no representations; hooks: {', '.join(p.hooks) or 'none'})")
        click.echo(printable(f"{p.name}  [{p.source}]  {status}"))
