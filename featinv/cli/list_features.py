"""``featinv list-features``: the registered representations, with the decoders shipped for each."""
from __future__ import annotations

import click

from .common import echo_json
from .listing import layout_text
from .options import SIDE
from ..errors import printable


@click.command("list-features")
@click.argument("pattern", default="*")
@click.option("--image-size", type=SIDE, default=128, show_default=True,
              help="Show each layout for a square image of this size.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_features_cmd(pattern: str, image_size: int, as_json: bool) -> None:
    """List the registered representations (optionally matching a glob PATTERN), with the
    decoders shipped for each."""
    from .listing import rows as listing_rows, shipped_names, zoo

    rows, problems = listing_rows(pattern, image_size)
    shipped = shipped_names(zoo())  # the zoo's cache: no plugin loaded when warm
    for r in rows:
        r["shipped_decoders"] = shipped.get(r["name"], [])
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No representations registered." if pattern == "*" else
                   f"No representation matches '{pattern}'.")
        return
    header = ("name", "plugin", "input", f"layout@{image_size}", "diff.", "shipped",
              "description")
    table = [header] + [(r["name"], r["plugin"], r["input"],
                         layout_text(r["layout"]) if r["layout"] else "too small",
                         "yes" if r["differentiable"] else "no",
                         ",".join(r["shipped_decoders"]) or "-", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for p in problems:
        click.echo(printable(f"Warning: plugin '{p['name']}' {p['error']}"), err=True)
