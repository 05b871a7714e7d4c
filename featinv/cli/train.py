"""``featinv train``: its options are generated from ``TrainConfig``'s fields (names, types,
defaults, help and choices), so the command line and the API cannot drift apart."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import click

from .common import echo_json, feature_params
from .options import typed
from ..errors import printable


def _option(f: dataclasses.Field, hints: dict) -> typing.Callable | None:
    meta = f.metadata
    if meta.get("hidden"):
        return None
    flag = "--" + meta.get("name", f.name.replace("_", "-"))
    names = [flag] + ([meta["short"]] if "short" in meta else [])
    required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    default = None if required else (f.default if f.default is not dataclasses.MISSING
                                     else f.default_factory())
    kind = typing.get_args(hints[f.name]) or (hints[f.name],)
    kwargs: dict = {"help": meta["help"], "required": required}
    if meta.get("flag"):
        if default is None:  # tri-state: --x / --no-x / unset (auto)
            return click.option(f"{flag}/--no-{flag[2:]}", default=None, help=meta["help"])
        return click.option(*names, is_flag=True, default=default, help=meta["help"])
    if "choices" in meta:
        kwargs["type"] = click.Choice(list(meta["choices"]), case_sensitive=False)
    elif meta.get("path"):
        kwargs["type"] = click.Path()
    elif float in kind:
        kwargs["type"] = float
    elif int in kind:
        kwargs["type"] = int
    if isinstance(default, tuple):  # a range given by its lower end (--crop-scale)
        default = default[0]
    if default is not None and not required:
        kwargs.update(default=default, show_default=True)
    return click.option(*names, **kwargs)


def train_options(command):
    """Decorate ``command`` with one option per ``TrainConfig`` field."""
    from ..training.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in reversed(dataclasses.fields(TrainConfig)):
        decorator = _option(f, hints)
        if decorator is not None:
            command = decorator(command)
    return command


@click.command("train")
@train_options
@feature_params
@click.option("--resume", is_flag=True, help="Continue from OUT/train_state.safetensors.")
def train_cmd(resume: bool, **options) -> None:
    """Train a decoder that inverts FEATURE; writes OUT/decoder.safetensors.

    The defaults are the recipe that reached the lowest validation error per training image in
    featinv's recipe benchmark (docs/recipe.md): a residual decoder at width 0.25, batches of 32,
    a one-cycle learning rate peaking at 0.005, the first half of the steps at half the image
    size, random crops of 80-100 % of the shorter side, 120,000 images (--budget).

    Under torchrun (torchrun --nproc_per_node N -m featinv train ...) the processes train one
    decoder together; --batch-size is the global batch, split over the processes. Ctrl-C or
    SIGTERM saves the run and exits (130 / 143); --resume continues it.
    """
    from ..training.distributed import world_from_env
    from ..training.loop import train
    from ..training.config import TrainConfig

    from ..training.config import check_config, check_given_options

    given = typed(options)  # typed by the user (or set in the environment)
    options["crop_scale"] = (options["crop_scale"], 1.0)
    cfg = TrainConfig(**options)
    check_config(cfg)  # what the values are, first
    check_given_options(cfg, given)  # then an option given at its default value with no effect
    metrics = train(cfg, resume=resume, log=lambda m: click.echo(m, err=True))
    if world_from_env().is_main:  # under torchrun, one process reports
        click.echo(f"wrote {printable(Path(cfg.out) / 'decoder.safetensors')}")  # any name
        if metrics:
            echo_json(metrics)
