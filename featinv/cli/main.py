"""The ``featinv`` command line: a thin layer over the Python API.

Errors a user can fix are one line on stderr and exit code 1 (2 for usage errors); ``--debug``
shows the traceback instead.
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import click

from .analyze import analyze
from .audit import audit_cmd
from .common import echo_error as _echo_error, echo_json as _echo_json, parse_params as _parse_params
from .compare import compare_cmd
from .evaluate import evaluate_cmd
from .extract import extract_cmd
from .invert import invert_cmd
from .options import POSITIVE, SIDE, device_option
from .pack import pack_cmd
from .share import push_cmd
from .show_features import show_features_cmd
from .train import train_cmd
from ..errors import FeatinvError, Interrupted, printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="featinv")
def cli(debug: bool) -> None:
    """Reconstruct images from feature representations with trained decoders."""


@cli.command("list-features")
@click.argument("pattern", default="*")
@click.option("--image-size", type=SIDE, default=128, show_default=True,
              help="Show each layout for a square image of this size.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_features_cmd(pattern: str, image_size: int, as_json: bool) -> None:
    """List the registered representations (optionally matching a glob PATTERN), with the
    decoders shipped for each."""
    from ..representation.listing import rows as listing_rows, shipped_names, zoo

    rows, problems = listing_rows(pattern, image_size)
    shipped = shipped_names(zoo(_shipped))  # the zoo's cache: no plugin loaded when warm
    for r in rows:
        r["shipped_decoders"] = shipped.get(r["name"], [])
    if as_json:
        _echo_json(rows)
        return
    if not rows:
        click.echo("No representations registered." if pattern == "*" else
                   f"No representation matches '{pattern}'.")
        return
    header = ("name", "plugin", "input", f"layout@{image_size}", "diff.", "shipped",
              "description")
    table = [header] + [(r["name"], r["plugin"], r["input"],
                         _layout_text(r["layout"]) if r["layout"] else "too small",
                         "yes" if r["differentiable"] else "no",
                         ",".join(r["shipped_decoders"]) or "-", r["description"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    for p in problems:
        click.echo(printable(f"Warning: plugin '{p['name']}' {p['error']}"), err=True)


def _layout_text(layout: dict) -> str:
    if layout["kind"] == "vector":
        return str(layout["channels"])
    return f"{layout['channels']}x{layout['height']}x{layout['width']}"


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(as_json: bool) -> None:
    """List loaded plugins, their representations, and any that failed."""
    from ..representation.plugins import plugin_infos

    infos = plugin_infos()
    if as_json:
        _echo_json([p.to_json() for p in infos])
        return
    for p in infos:
        status = (f"ERROR: {p.error}" if p.error else ", ".join(p.features)
                  or f"(no representations; hooks: {', '.join(p.hooks) or 'none'})")
        click.echo(printable(f"{p.name}  [{p.source}]  {status}"))


@cli.command("describe")
@click.argument("name")
@click.option("--image-size", type=SIDE, default=128, show_default=True)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Show the layout for this parameter value (repeatable), e.g. -p cell_size=4.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def describe_cmd(name: str, image_size: int, params: tuple[str, ...], as_json: bool) -> None:
    """Parameters, layout formula, input, differentiability and backends of representation NAME."""
    from ..representation.listing import describe

    info = describe(name, image_size, _parse_params(params))
    if as_json:
        _echo_json(info)
        return
    click.echo(f"{info['name']}: {info['description']}")
    click.echo(f"  plugin:         {info['plugin']}")
    click.echo(f"  input:          {info['input']} image")
    click.echo(f"  differentiable: {'yes' if info['differentiable'] else 'no'}")
    click.echo(f"  layout:         {info['layout_formula']}  (H x W image)")
    click.echo(f"  {'at ' + str(image_size) + ' px:':<16}{_layout_text(info['layout'])}")
    click.echo(f"  smallest image: {info['min_size']} px")
    click.echo(f"  decoder family: {info['decoder']}")
    click.echo("  parameters:" + ("" if info["params"] else " none"))
    for p in info["params"]:
        choices = f" (one of {p['choices']})" if p["choices"] else ""
        value = info["values"][p["name"]]
        default = f" (default {p['default']!r})" if value != p["default"] else ""
        click.echo(f"    {p['name']} = {value!r}{default}  {p['help']}{choices}")
    if info["backends"]:
        click.echo("  backends (-p backend=NAME):")
        for backend, status in info["backends"].items():
            click.echo(f"    {backend}: {status}")
    if info.get("members"):
        click.echo(f"  members ({len(info['members'])}):")
        for member in info["members"]:
            click.echo(f"    {member}")


@cli.command("demo")
@click.option("--train-data", type=click.Path(), help="Folder of photos to train a small "
              "decoder on when no shipped decoder exists.")
@click.option("--out", "-o", default="demo", show_default=True, type=click.Path())
@click.option("--feature", "-f", default="hog", show_default=True)
@click.option("--epochs", type=POSITIVE, default=3, show_default=True)
@click.option("--limit", type=POSITIVE, default=3000, show_default=True, help="Training images used.")
@device_option
def demo_cmd(train_data, out, feature, epochs, limit, device) -> None:
    """Invert bundled example images (training a small decoder first if none is shipped)."""
    from .demo import run_demo

    for path in run_demo(feature, Path(out), train_data, epochs, limit, device,
                         log=lambda m: click.echo(printable(m), err=True)):
        click.echo(printable(path))


@cli.command("zoo")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def zoo_cmd(as_json: bool) -> None:
    """List the decoders shipped with featinv and its plugins (used when no --checkpoint is
    given; pick one with --feature NAME and, for one other than the default, --decoder), then
    those cached from the Hugging Face Hub (load them with -c hf-hub:ORG/NAME)."""
    from ..inversion.zoo import hub_cached
    from ..representation.listing import zoo

    entries = zoo(_shipped) + hub_cached()  # the Hub's cache is read each time (no download)
    if as_json:
        _echo_json(entries)
        return
    if not entries:
        click.echo("No decoders are shipped with this installation.")
        return
    header = ("feature", "MB", "decoder", "network", "params", "size", "val error", "PSNR",
              "SSIM", "plugin", "description")
    rows = [header]
    for e in entries:
        if "error" in e:
            _echo_error(e["error"])
            continue
        rows.append((e["feature"], f"{e['megabytes']:.1f}", e.get("decoder") or "default",
                     f"{e['preset']} x{e['width']:g}",
                     f"{(e['parameters'] or 0) / 1e6:.2f} M", f"{e['image_size']} px",
                     _fmt(e["val_normalized_error"], ".3f"), _fmt(e["val_psnr"], ".2f"),
                     _fmt(e["val_ssim"], ".3f"), e.get("plugin") or "-",
                     e.get("description") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo(printable("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()))


def _shipped() -> list[dict]:
    from ..inversion.shipped import shipped

    return shipped()


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """featinv's own warnings as one ``Warning: ...`` line on stderr; others as Python shows
    them."""
    if category.__module__.startswith("featinv."):
        click.echo(printable(f"Warning: {message}"), err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors unless ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FEATINV_DEBUG", "") not in ("", "0")
    try:
        with warnings.catch_warnings():
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
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except FeatinvError as exc:
        if debug:
            raise
        _echo_error(exc)
        sys.exit(1)
    except MemoryError:  # what the header checks could not foresee (a plugin's appetite)
        if debug:
            raise
        _echo_error("out of memory: this work needs more memory than the machine has left; use "
                    "a smaller --size, --max-side, --image-size, --batch-size or --limit.")
        sys.exit(1)
    except Exception as exc:  # a bug or an environment problem: still one line by default
        if debug:
            raise
        _echo_error(f"{type(exc).__name__}: {exc} (run 'featinv --debug ...' for the "
                    "traceback)")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
