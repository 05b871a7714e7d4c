"""Options shared by the command groups of the CLI."""
import click

from .limits import MAX_SIDE

device_option = click.option("--device", default="auto", show_default=True,
                             help="cpu, cuda, cuda:1, ... or auto (CUDA when available).")

# option types: an image side (1 to MAX_SIDE px) and a count of at least one
SIDE = click.IntRange(1, MAX_SIDE)
POSITIVE = click.IntRange(min=1)
