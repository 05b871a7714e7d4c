"""Options shared by the command groups of the CLI."""
import click

device_option = click.option("--device", default="auto", show_default=True,
                             help="cpu, cuda, cuda:1, ... or auto (CUDA when available).")
