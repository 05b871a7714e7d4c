"""``featinv describe NAME``: one representation's parameters, layout, input and backends."""
from __future__ import annotations

import click

from .common import echo_json
from .listing import layout_text
from .options import SIDE, parse_params
from ..errors import LINE_LIMIT, shown
from ..limits import format_bound


@click.command("describe")
@click.argument("name")
@click.option("--image-size", type=SIDE, default=128, show_default=True)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Show the layout for this parameter value (repeatable), e.g. -p cell_size=4.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def describe_cmd(name: str, image_size: int, params: tuple[str, ...], as_json: bool) -> None:
    """Parameters, layout formula, input, differentiability and backends of representation NAME."""
    from .listing import describe

    info = describe(name, image_size, parse_params(params))
    if as_json:
        echo_json(info)
        return
    click.echo(f"{info['name']}: {info['description']}")
    click.echo(f"  plugin:         {info['plugin']}")
    click.echo(f"  input:          {info['input']} image")
    click.echo(f"  differentiable: {'yes' if info['differentiable'] else 'no'}")
    click.echo(f"  layout:         {info['layout_formula']}  (H x W image)")
    click.echo(f"  {'at ' + str(image_size) + ' px:':<16}{layout_text(info['layout'])}")
    click.echo(f"  smallest image: {info['min_size']} px")
    click.echo(f"  decoder family: {info['decoder']}")
    click.echo("  parameters:" + ("" if info["params"] else " none"))
    for p in info["params"]:
        choices = f" (one of {shown(p['choices'], LINE_LIMIT)})" if p["choices"] else ""
        if p.get("range"):
            choices += " (from {} to {})".format(*map(format_bound, p["range"]))
        value = info["values"][p["name"]]
        default = f" (default {shown(p['default'], LINE_LIMIT)})" if value != p["default"] else ""
        click.echo(f"    {p['name']} = {shown(value, LINE_LIMIT)}{default}  {p['help']}{choices}")
    if info["backends"]:
        click.echo("  backends (-p backend=NAME):")
        for backend, status in info["backends"].items():
            click.echo(f"    {backend}: {status}")
    if info.get("members"):
        click.echo(f"  members ({len(info['members'])}):")
        for member in info["members"]:
            click.echo(f"    {member}")
