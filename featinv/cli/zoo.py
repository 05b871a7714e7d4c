"""``featinv zoo``: the decoders shipped with featinv and its plugins, then those cached from the
Hugging Face Hub."""
from __future__ import annotations

import click

from .common import echo_error, echo_json
from ..errors import printable


@click.command("zoo")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def zoo_cmd(as_json: bool) -> None:
    """List the decoders shipped with featinv and its plugins (used when no --checkpoint is
    given; pick one with --feature NAME and, for one other than the default, --decoder), then
    those cached from the Hugging Face Hub (load them with -c hf-hub:ORG/NAME)."""
    from ..inversion.zoo import hub_cached
    from .listing import zoo

    entries = zoo() + hub_cached()  # the Hub's cache is read each time (no download)
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("No decoders are shipped with this installation.")
        return
    header = ("feature", "MB", "decoder", "network", "params", "size", "val error", "PSNR",
              "SSIM", "plugin", "description")
    rows = [header]
    for e in entries:
        if "error" in e:
            echo_error(e["error"])
            continue
        width = "" if e.get("width") is None else f" x{e['width']:g}"
        rows.append((e["feature"], _fmt(e.get("megabytes"), ".1f"),
                     e.get("decoder") or "default", f"{e.get('preset') or '-'}{width}",
                     f"{(e.get('parameters') or 0) / 1e6:.2f} M",
                     "-" if e.get("image_size") is None else f"{e['image_size']} px",
                     _fmt(e["val_normalized_error"], ".3f"), _fmt(e["val_psnr"], ".2f"),
                     _fmt(e["val_ssim"], ".3f"), e.get("plugin") or "-",
                     e.get("description") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo(printable("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()))


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
