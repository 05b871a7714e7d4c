"""Checks of ``featinv train``'s options that ``featinv.training.config`` applies: numbers
(finite, in range, named as not finite when they are not), ``--loss`` and its weights, and the
options that act only with another (refused when given without it, not ignored). Importable
without PyTorch. ``cfg`` is a ``featinv.training.config.TrainConfig`` throughout (not
imported: that module imports this one)."""
from __future__ import annotations

import math
from typing import Any

from ..choices import LOSSES
from ..errors import FeatinvError
from ..wording import in_cli, opt

LOSS_WEIGHT_RANGE = (1e-30, 1e30)  # beyond it a loss weight is 0 or inf in float32
# Adam's steps depend on the weights' ratios only while the gradients stay far above its eps
# (1e-8). Measured (HOG, 32 px, 134 steps, train loss / weight): pixel=1 0.01365, 1e-3 0.01365,
# 1e-5 0.01386, 1e-7 0.01699 (little learned); the 1e-30 learned nothing with exit 0
MIN_LARGEST_WEIGHT = 1e-4


def _whole(name: str, value, low: int = 1, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or \
            (high is not None and value > high):
        bound = f"from {low} to {high}" if high else f"at least {low}"
        raise FeatinvError(f"{_opt(name)} must be a whole number {bound}, got {value!r}.")


def _is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _number(name: str, value, low: float, high: float | None = None, open_low: bool = False,
            unit: str = "") -> None:
    """Refuse an option ``--name`` that is not a finite number in ``[low, high]`` (``(low,
    ...`` with ``open_low``; ``open_low`` and ``low`` 0 read 'positive'). inf, nan and 1e400
    (inf once read) are named as not finite, not as out of range."""
    if open_low and low == 0 and high is None:
        need = f"a finite positive number{unit}"
    elif high is None:
        need = f"a finite number{unit} {'above' if open_low else 'of at least'} {low:g}"
    else:
        need = f"a finite number{unit} from {low:g} to {high:g}"
    if not _is_number(value) or value < low or (open_low and value == low) or \
            (high is not None and value > high):
        raise FeatinvError(f"{_opt(name)} must be {need}, got {value!r}.")


def _opt(name: str, *value: Any) -> str:
    """A ``TrainConfig`` field as the user gave it (``--batch-size`` / ``batch_size``)."""
    return opt(name.replace("-", "_"), *value)


def loss_text(loss: Any) -> str:
    """``TrainConfig.loss`` as its string form: a string as it is, a dict of weights
    (``{"pixel": 1, "feature": 0.05}``) as ``"pixel=1,feature=0.05"``; anything else is a
    ``FeatinvError``."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, dict) and all(isinstance(k, str) for k in loss):
        return ",".join(f"{name}={weight}" for name, weight in loss.items())
    raise FeatinvError(f"{opt('loss')} must be a string such as 'pixel,feature=0.05' or a dict of "
                       f"weights such as {{'pixel': 1, 'feature': 0.05}}, got "
                       f"{type(loss).__name__} {loss!r:.60}.")


def parse_losses(text: str) -> dict[str, float]:
    """``"pixel,feature=0.1"`` -> ``{"pixel": 1.0, "feature": 0.1}`` (defaults from
    ``featinv.choices.LOSSES``); unknown names or bad weights are a ``FeatinvError``."""
    weights: dict[str, float] = {}
    example = opt("loss", "pixel,feature=0.05")
    text = loss_text(text)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in LOSSES:
            raise FeatinvError(f"Unknown loss '{name}' in {opt('loss')} (choose from "
                               f"{', '.join(LOSSES)}; e.g. {example}).")
        if name in weights:
            raise FeatinvError(f"{opt('loss')} names '{name}' twice ({text}); give each loss "
                               "once.")
        term = opt("loss", f"{name}={value}")
        try:
            weight = float(value) if value else LOSSES[name]
        except ValueError:
            raise FeatinvError(f"{term}: the weight must be a number.") from None
        if not (math.isfinite(weight) and weight > 0):
            raise FeatinvError(f"{term}: the weight must be a finite positive number.")
        if not LOSS_WEIGHT_RANGE[0] <= weight <= LOSS_WEIGHT_RANGE[1]:
            raise FeatinvError(f"{term}: the weight must lie between 1e-30 and 1e+30 (beyond, "
                               "it vanishes or overflows in float32).")
        weights[name] = weight
    if not weights:
        raise FeatinvError(f"{opt('loss')} names no loss; use e.g. {opt('loss', 'pixel')}.")
    if max(weights.values()) < MIN_LARGEST_WEIGHT:
        raise FeatinvError(f"{opt('loss', text)}: every weight is below {MIN_LARGEST_WEIGHT:g}, "
                           "so the gradients sink under the optimizer's eps (1e-8) and little or "
                           "nothing is learned; only the weights' ratios matter, so scale them "
                           f"up (e.g. {opt('loss', 'pixel=1,feature=0.01')}).")
    return weights


def check_loss_options(cfg) -> None:
    """``--loss`` parses, and an option that acts only with another comes only with it
    (``--comparator nosuch`` with a pixel loss was ignored without a word); see
    ``check_given_options``."""
    parse_losses(cfg.loss)
    for name in ("comparator", "comparator_weights", "disc_conditional"):
        check_given_options(cfg, {name} & given_fields(cfg))


# options that act only with another: field -> (what it is for, how to add that, whether it
# acts in ``cfg``). Given without it, one is refused instead of ignored (issue 24, D19)
def _loss_term(term: str):
    return (f"the {term} loss",
            lambda cfg: f"add it (e.g. {opt('loss', ','.join([*parse_losses(cfg.loss), term]))})",
            lambda cfg: term in parse_losses(cfg.loss))


_VAL = ("validation", lambda cfg: f"add {opt('val', 'DIR')}", lambda cfg: cfg.val is not None)
_CACHE = ("the feature cache", lambda cfg: f"add {opt('feature_cache', 'DIR')}",
          lambda cfg: bool(cfg.feature_cache))
DEPENDENT_OPTIONS = {
    "comparator": _loss_term("feature"), "comparator_weights": _loss_term("feature"),
    "disc_conditional": _loss_term("adversarial"), "disc_width": _loss_term("adversarial"),
    "disc_lr": _loss_term("adversarial"), "pixel_distance": _loss_term("pixel"),
    "val_limit": _VAL, "val_every": _VAL, "preview": _VAL,
    "cache_variants": _CACHE, "cache_dtype": _CACHE,
    "memory_budget": ("{auto} (it decides whether the images fit in memory)",
                      lambda cfg: f"use {opt('data_store', 'auto')}",
                      lambda cfg: cfg.data_store == "auto"),
}


def given_fields(cfg) -> set[str]:
    """The fields of ``cfg`` that differ from their defaults (what the Python API can tell was
    given; the command line passes what the user typed to ``check_given_options``)."""
    from dataclasses import MISSING, fields

    out = set()
    for f in fields(cfg):
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else MISSING)
        if default is MISSING or getattr(cfg, f.name) != default:
            out.add(f.name)
    return out


def check_given_options(cfg, given) -> None:
    """Refuse each option in ``given`` (field names) that has no effect in ``cfg``: one line
    naming what it is for and how to add that (a default never counts as given)."""
    for name, (purpose, add, acts) in DEPENDENT_OPTIONS.items():
        if name in given and not acts(cfg):
            option = opt(name)
            extra = f", which {opt('loss', loss_text(cfg.loss))} does not include" \
                if "loss" in purpose else (f", not {opt('data_store', cfg.data_store)}"
                                           if name == "memory_budget" else "")
            purpose = purpose.format(auto=opt("data_store", "auto"))
            drop = f"drop {option}" if in_cli() else f"leave {option} at its default"
            raise FeatinvError(f"{option} is for {purpose}{extra}; {add(cfg)} or {drop} "
                               "(it would be ignored).")
