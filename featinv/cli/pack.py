"""``featinv pack``: a trained decoder as one file for shipping, or a folder to share."""
from __future__ import annotations

import click

from .options import overwrite_option, refuse_idle
from ..errors import printable


@click.command("pack")
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="Output: a .safetensors "
              "file, or a folder to share (model.safetensors, config.json, README.md model "
              "card, reconstruction.png).")
@click.option("--recipe", help="The command that trained it (stored in the metadata).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default: float16).")
@click.option("--no-size-limit", "unlimited", is_flag=True,
              help="Allow a file over the 8 MiB a shipped decoder may take (to share it; "
              "folders have no limit).")
@click.option("--license", "license_", default="mit", show_default=True,
              help="Folder: the licence of the weights in the model card (a Hub identifier).")
@overwrite_option
def pack_cmd(source, out, recipe, full, unlimited, license_, overwrite) -> None:
    """Pack a trained decoder (checkpoint, training folder or packed folder) as one file for
    shipping, or as a folder with a model card for sharing ('featinv push' uploads one)."""
    from ..inversion.share import is_folder_target, pack_folder
    from ..inversion.shipped import MAX_SHIPPED_BYTES, pack

    if not is_folder_target(out):
        refuse_idle({"license_": "--license"}, "a folder output (-o FOLDER, with a model card)")
    if is_folder_target(out):
        from ..io.tensor_files import utf8_path

        # the model card (UTF-8 text) names the folder: one whose name is no UTF-8, escaped
        name = None if utf8_path(out) else f"local-dir:{printable(out)}"
        folder = pack_folder(source, out, recipe=recipe, half=not full, overwrite=overwrite,
                             license=license_, name=name)
        size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        click.echo(f"{printable(folder)} ({size / 1e6:.2f} MB; load it with -c "
                   f"local-dir:{printable(folder)})")
        return
    path = pack(source, out, recipe=recipe, half=not full, overwrite=overwrite,
                max_bytes=None if unlimited else MAX_SHIPPED_BYTES)
    click.echo(f"{printable(path)} ({path.stat().st_size / 1e6:.2f} MB)")
