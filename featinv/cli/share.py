"""``featinv push``: upload a trained decoder to the Hugging Face Hub (``pack`` is in
``featinv.cli.pack``; the group is in ``featinv.cli.main``)."""
from __future__ import annotations

import click

from ..errors import printable


@click.command("push")
@click.argument("source", type=click.Path())
@click.argument("repo")
@click.option("--private", is_flag=True, help="Create the repository as private (when it does "
              "not exist yet).")
@click.option("--revision", help="Branch to upload to (created from main if missing; "
              "default: main).")
@click.option("--recipe", help="The command that trained it (stored in the card and metadata).")
@click.option("--float32", "full", is_flag=True, help="Keep float32 weights (default: float16).")
@click.option("--license", "license_", default="mit", show_default=True,
              help="The licence of the weights in the model card (a Hub identifier).")
def push_cmd(source, repo, private, revision, recipe, full, license_) -> None:
    """Pack SOURCE (checkpoint, training folder or packed folder) with a model card and upload
    it to the model repository REPO (ORG/NAME) on the Hugging Face Hub; prints the name to load
    it by. The token comes from HF_TOKEN (or 'hf auth login')."""
    from ..inversion.share import push

    ref = push(source, repo, private=private, revision=revision, recipe=recipe,
               half=not full, license=license_)
    click.echo(f"uploaded to https://huggingface.co/{printable(ref.repo_id)}", err=True)
    click.echo(printable(ref))
