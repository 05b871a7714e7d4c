"""Every option (and option type) that more than one command of the CLI takes, with the parsing
of ``NAME=VALUE`` parameters they share (no torch at import)."""
from __future__ import annotations

import functools
import math

import click

from ..choices import METHODS, PRECISIONS
from ..limits import DEFAULT_MAX_SIDE, MAX_SIDE

device_option = click.option("--device", default="auto", show_default=True,
                             help="cpu, cuda, cuda:1, ... or auto (CUDA when available).")

# option types: an image side (1 to MAX_SIDE px), a count of at least one, a random seed (what
# torch and numpy both take; 10**23 was 'ValueError: Overflow when unpacking long long')
SIDE = click.IntRange(1, MAX_SIDE)
POSITIVE = click.IntRange(min=1)
SEED = click.IntRange(0, 2**32 - 1)


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
max_side_option = click.option(
    "--max-side", type=SIDE, default=DEFAULT_MAX_SIDE, show_default=True,
    help="Shrink images whose longer side (after --size) exceeds this many px: the work stays "
    "bounded for big photos.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace output files that "
                                "exist already (inputs are never replaced).")


def parse_params(items: tuple[str, ...], hint: str = "--param") -> dict[str, str]:
    """``NAME=VALUE`` strings -> a dict; anything else, or one name with two values, is a usage
    error (the last value would win unseen)."""
    params = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=hint)
        key, value = (part.strip() for part in item.split("=", 1))
        if params.get(key, value) != value:
            raise click.BadParameter(f"{key} is given twice ({params[key]!r} and {value!r}); "
                                     "give it once", param_hint=hint)
        params[key] = value
    return params


def params_with_weights(items, weights: str | None, hint: str = "--param") -> dict[str, str]:
    """``parse_params(items)``, with ``weights`` (when given) as the ``weights`` parameter."""
    params = parse_params(items, hint)
    if weights is not None:
        if params.get("weights", weights) != weights:
            raise click.BadParameter(f"weights={params['weights']!r} and the weights option "
                                     f"{weights!r} disagree; give one", param_hint=hint)
        params["weights"] = weights
    return params


def feature_params(command):
    """``--param NAME=VALUE`` (repeatable) and ``--weights``, handed on as one ``params`` dict."""

    @functools.wraps(command)
    def wrapper(*args, params=(), weights=None, **kwargs):
        return command(*args, params=params_with_weights(params, weights), **kwargs)

    wrapper = click.option("--weights", metavar="PATH|imagenet|random",
                           help="Network weights of a CNN representation: a .safetensors/.npz "
                           "file, imagenet (download/cache) or random; same as -p weights=...")(wrapper)
    return click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                        help="Representation parameter (repeatable), e.g. -p cell_size=8.")(wrapper)


def typed(names) -> set[str]:
    """The parameters of ``names`` the user gave (command line or environment), not defaults."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return set()
    return {name for name in names
            if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)}


def refuse_idle(options: dict[str, str], needs: str) -> None:
    """Refuse the options of ``options`` (parameter name -> flag) that the user typed although
    they have no effect in this command (what they need: ``needs``); defaults never count."""
    from ..errors import FeatinvError

    given = [flag for name, flag in options.items() if name in typed(options)]
    if given:
        raise FeatinvError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                           f"{needs}; add it or drop {given[0]} (it would be ignored).")


def method_options(command):
    """``--method decoder|optimize`` and the optimisation baseline's settings, handed on as
    ``method`` and ``optimize`` (an ``OptimizeConfig``)."""
    from ..inversion.optimize import OptimizeConfig

    defaults = OptimizeConfig()

    @functools.wraps(command)
    def wrapper(*args, steps, step_size, lambda_tv, lambda_alpha, **kwargs):
        if kwargs.get("method") != "optimize":
            refuse_idle({"steps": "--steps", "step_size": "--step-size", "lambda_tv":
                         "--lambda-tv", "lambda_alpha": "--lambda-alpha"}, "--method optimize")
        cfg = OptimizeConfig(steps=steps, lr=step_size, lambda_tv=lambda_tv,
                             lambda_alpha=lambda_alpha)
        return command(*args, optimize=cfg, **kwargs)

    options = [
        click.option("--method", type=click.Choice(METHODS), default="decoder",
                     show_default=True, help="decoder: a trained decoder, one forward pass; "
                     "optimize: the optimisation baseline (Mahendran & Vedaldi), no training, "
                     "differentiable representations only."),
        click.option("--steps", type=POSITIVE, default=defaults.steps, show_default=True,
                     help="optimize: gradient steps."),
        click.option("--step-size", type=float, default=defaults.lr, show_default=True,
                     help="optimize: step size (per pixel)."),
        click.option("--lambda-tv", type=float, default=defaults.lambda_tv, show_default=True,
                     help="optimize: weight of the total-variation prior."),
        click.option("--lambda-alpha", type=float, default=defaults.lambda_alpha,
                     show_default=True, help="optimize: weight of the alpha-norm prior."),
        click.option("--precision", type=click.Choice(PRECISIONS), default="fp32",
                     show_default=True, help="decoder: run it in mixed precision (bf16: 2-3x "
                     "faster on CPUs with AVX-512 BF16; fp16: CUDA only)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def realism_options(comparator_default: str, weights_default: str | None):
    """``--comparator``, ``--comparator-param``/``--comparator-weights`` and
    ``--perceptual-weights``, handed on as ``comparator``, ``comparator_params`` (a dict) and
    ``perceptual_weights``."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, comparator_params=(), comparator_weights=None, **kwargs):
            return command(*args, comparator_params=params_with_weights(
                comparator_params, comparator_weights, "--comparator-param"),
                           **kwargs)

        options = [
            click.option("--comparator", default=comparator_default, show_default=True,
                         metavar="NAME|auto|none",
                         help="Representation whose feature-space error is reported "
                         "(||Φ(y)-Φ(x)||²/||Φ(x)||², mean over images); auto: the inverted "
                         "one when it is differentiable."),
            click.option("--comparator-param", "comparator_params", multiple=True,
                         metavar="NAME=VALUE", help="Parameter of the comparator (repeatable), "
                         "e.g. weights=PATH for squeezenet.fire5."),
            click.option("--comparator-weights", metavar="PATH|imagenet|random",
                         help="Weights of a CNN comparator (as train's option); same as "
                         "--comparator-param weights=..."),
            click.option("--perceptual-weights", default=weights_default,
                         show_default=weights_default is not None, metavar="PATH|auto|none",
                         help="SqueezeNet 1.0 weights (.npz/.safetensors): adds the perceptual "
                         "distance (LPIPS-style, unlearned weights) and the top-1 class "
                         "agreement; auto: $FEATINV_PERCEPTUAL_WEIGHTS, else the copy "
                         "shipped with featinv (deepcompression)."),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


# what to do instead of repeating an option that takes one value, where more can be said
REPEAT_HINTS = {"loss": "; put several loss terms in one --loss, e.g. --loss pixel,feature=0.05"}


def refuse_repeats(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """A usage error for an option of one value given more than once: click keeps the last
    value without a word (``--loss pixel=1e-30 --loss feature=5e-5`` trained with the second
    alone). Repeatable options (``-p``, ``-c``) and plain flags (``--overwrite`` twice says the
    same) pass."""
    if ctx.resilient_parsing:
        return
    _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    seen: set[str] = set()
    for param in order:
        if not isinstance(param, click.Option) or param.multiple or param.count \
                or (param.is_flag and not param.secondary_opts):
            continue
        if param.name in seen:
            flag = max(param.opts, key=len)
            times = sum(p is param for p in order)
            raise click.UsageError(f"{flag} is given {times} times, and only the last would "
                                   f"count; give it once{REPEAT_HINTS.get(param.name, '')}.", ctx)
        seen.add(param.name)


_ONCE_CLASSES: dict[type, type] = {}


def options_once(command: click.Command) -> None:
    """Make ``command`` and every command below it refuse a repeated option of one value
    (``refuse_repeats``) when it parses its arguments."""
    base = type(command)
    if base in _ONCE_CLASSES.values():
        return
    if base not in _ONCE_CLASSES:
        def parse_args(self, ctx, args):
            refuse_repeats(self, ctx, args)
            return base.parse_args(self, ctx, args)

        _ONCE_CLASSES[base] = type(f"Once{base.__name__}", (base,), {"parse_args": parse_args})
    command.__class__ = _ONCE_CLASSES[base]
    for sub in getattr(command, "commands", {}).values():
        options_once(sub)
