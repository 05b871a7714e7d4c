"""The ``training`` section of a decoder file, field by field (issue 24, round 11, E9): the run's
settings as ``train`` stores them (``TrainConfig``, as JSON), which ``invert`` shows and
``pack`` copies into the model card of every file it ships.

Each setting featinv writes has a rule here: its kind (a whole number, a number, text from a
fixed list, a flag, a pair) and the bounds ``train`` accepts, widened where earlier versions
accepted more. A width of 1e300, an image size of 10**40, ``crop_scale`` [5, -1], ``loss`` as
an object or ``params`` as text were copied as they were. Settings this version does not know
(from earlier versions) pass; numbers anywhere are checked to be finite elsewhere.
"""
from __future__ import annotations

from typing import Any, Callable

from ..choices import CACHE_DTYPES, DATA_STORES, PIXEL_DISTANCES, PRECISIONS, PRESETS, SCHEDULES
from ..io.state_checks import MAX_COUNT
from ..limits import MAX_SIDE

MAX_TEXT = 4096  # a path or a recipe's text (PATH_MAX on Linux)
MAX_LR = 1e30  # train's own bound (training.config.MAX_LR)
MAX_WIDTH = 8.0  # train's bound on --width and --disc-width


def _whole(low: int, high: int, null: bool = True) -> Callable[[Any], str | None]:
    def rule(value):
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"a whole number from {low} to {high}" + (" or null" if null else "")
        return None
    return rule


def _number(low: float, high: float, null: bool = False, above: bool = False
            ) -> Callable[[Any], str | None]:
    def rule(value):
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= high or (above and value == low):
            return (f"a number {'above' if above else 'from'} {low:g}"
                    f"{' up' if above else ''} to {high:g}" + (" or null" if null else ""))
        return None
    return rule


def _text(choices: tuple[str, ...] | None = None, null: bool = False
          ) -> Callable[[Any], str | None]:
    def rule(value):
        if value is None and null:
            return None
        if not isinstance(value, str) or len(value) > MAX_TEXT or \
                (choices is not None and value not in choices):
            return (f"one of {', '.join(choices)}" if choices else
                    f"text of at most {MAX_TEXT} characters") + (" or null" if null else "")
        return None
    return rule


def _flag(null: bool = False) -> Callable[[Any], str | None]:
    def rule(value):
        if value is None and null or isinstance(value, bool):
            return None
        return "true or false" + (" or null" if null else "")
    return rule


def _pair(low: float, high: float, low_open: bool, high_open: bool, ordered: bool
          ) -> Callable[[Any], str | None]:
    def rule(value):
        ok = (isinstance(value, list) and len(value) == 2
              and all(not isinstance(v, bool) and isinstance(v, (int, float))
                      and (low < v if low_open else low <= v)
                      and (v < high if high_open else v <= high) for v in value)
              and (not ordered or value[0] <= value[1]))
        if ok:
            return None
        return (f"two numbers {'above' if low_open else 'from'} {low:g} "
                f"{'below' if high_open else 'to'} {high:g}"
                + (", the first not above the second" if ordered else ""))
    return rule


def _object(value) -> str | None:
    return None if isinstance(value, dict) else "an object (the representation's parameters)"


WHOLE, COUNT = _whole(0, MAX_COUNT), _whole(1, MAX_COUNT)
# every setting ``featinv train`` stores, with what it may be
RULES: dict[str, Callable[[Any], str | None]] = {
    "feature": _text(), "data": _text(null=True), "out": _text(null=True),
    "val": _text(null=True), "params": _object, "image_size": _whole(1, MAX_SIDE),
    "budget": COUNT, "epochs": COUNT, "batch_size": _whole(1, MAX_COUNT, null=False),
    "lr": _number(0, MAX_LR, above=True), "warmup": WHOLE,
    "betas": _pair(0, 1, False, True, False), "schedule": _text(SCHEDULES),
    "ema": _number(0, 1),
    "pixel_distance": _text(PIXEL_DISTANCES), "low_res_first": _text(),
    "preset": _text(tuple(PRESETS)), "width": _number(0, MAX_WIDTH, null=True, above=True),
    "crop_scale": _pair(0, 1, True, False, True), "limit": COUNT, "val_limit": WHOLE,
    "val_every": WHOLE, "device": _text(), "workers": WHOLE, "data_store": _text(DATA_STORES),
    "memory_budget": _number(0, 1e6, null=True), "threads": COUNT, "seed": _whole(0, 2**63 - 1),
    "save_every": WHOLE, "save_minutes": _number(0, 1e9), "log_every": WHOLE, "preview": WHOLE,
    "finetune_encoder": _flag(), "precision": _text(("auto", *PRECISIONS)),
    "channels_last": _flag(null=True), "compile": _flag(), "feature_cache": _text(null=True),
    "cache_variants": COUNT, "cache_dtype": _text(CACHE_DTYPES), "loss": _text(),
    "comparator": _text(null=True), "comparator_weights": _text(null=True),
    "disc_width": _number(0, MAX_WIDTH, above=True), "disc_lr": _number(0, MAX_LR, above=True),
    "disc_conditional": _flag(), "init_from": _text(null=True), "overwrite": _flag(),
}


def check_training(training: dict[str, Any], decoder: dict[str, Any], refuse) -> None:
    """Refuse (``refuse(field, value, wanted)`` makes the error) the first setting of
    ``training`` that breaks its rule in ``RULES``, or that names another decoder than the
    file's ``decoder`` description (its preset, and its width where the run gave one)."""
    for key, rule in RULES.items():
        if key in training:
            wanted = rule(training[key])
            if wanted is not None:
                raise refuse(f"training.{key}", training[key], wanted)
    for key in ("preset", "width"):
        if training.get(key) is not None and key in decoder \
                and training[key] != decoder[key]:
            raise refuse(f"training.{key}", training[key],
                         f"{decoder[key]!r:.40} (the decoder's, which this run trained)")
