"""Options shared by the command groups of the CLI."""
import math

import click

from ..limits import MAX_SIDE

device_option = click.option("--device", default="auto", show_default=True,
                             help="cpu, cuda, cuda:1, ... or auto (CUDA when available).")

# option types: an image side (1 to MAX_SIDE px) and a count of at least one
SIDE = click.IntRange(1, MAX_SIDE)
POSITIVE = click.IntRange(min=1)


class Finite(click.FloatRange):
    """A finite number within ``[min, max]`` (click's ``FloatRange`` lets NaN through: every
    comparison with it is false)."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super(click.FloatRange, self).convert(value, param, ctx)  # float() first
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class _SideOrNative(click.ParamType):
    """An image side (1 to MAX_SIDE px) or ``native`` (the image's own size)."""

    name = "N|native"

    def convert(self, value, param, ctx):
        if str(value).lower() == "native":
            return "native"
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a side in px (1 to {MAX_SIDE}) nor 'native'.",
                      param, ctx)
        return SIDE.convert(number, param, ctx)


SIDE_OR_NATIVE = _SideOrNative()

decoder_option = click.option(
    "--decoder", "decoder_name", metavar="VARIANT",
    help="Which of the decoders shipped for --feature to use ('featinv zoo' lists them), e.g. "
         "realistic; default: the one named default.")
