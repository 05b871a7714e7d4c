"""A training run's configuration, as plain data: ``TrainConfig`` (every field with its
command-line help, from which ``featinv train``'s options are generated), the checks that refuse
unusable settings before any work, and the learning-rate schedule. Importable without PyTorch.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..choices import (CACHE_DTYPES, DATA_STORES, LOSSES, PIXEL_DISTANCES, PRECISIONS, PRESETS,
                      SCHEDULES)
from ..errors import CheckpointError, FeatinvError, printable
from .option_checks import (DEPENDENT_OPTIONS, LOSS_WEIGHT_RANGE, _is_number,  # noqa: F401
                            _number, _opt, _whole, check_given_options, check_loss_options,
                            given_fields, loss_text, parse_losses)

REFERENCE_BATCH = 64  # --lr is the learning rate at this batch size (the paper's)
MAX_IMAGE_SIZE = 4096  # as featinv.limits.MAX_SIDE (kept here: this module imports nothing heavy)
# the default recipe (docs/recipe.md measures it against the alternatives)
DEFAULT_BUDGET = 120_000  # and, in TrainConfig: residual x0.25, batch 32, onecycle to 5e-3
DEFAULT_TRAIN_PRESET = "residual"
DEFAULT_IMAGE_SIZE = 128  # the training side of a representation that names none
MAX_BUDGET = 10**12


def option(default, help: str, **cli):
    """A ``TrainConfig`` field with its command-line help (``featinv train`` is generated from
    these). ``cli`` may hold ``choices``, ``flag`` (a ``--x/--no-x`` pair), ``name``, ``short``,
    ``path``, ``hidden``."""
    if isinstance(default, (dict, list, tuple)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored in the checkpoint. Frozen: a run resolves
    its defaults into a new one (``featinv.training.resolve``), and variants are made with
    ``dataclasses.replace``."""

    feature: str = field(metadata={"help": "Representation to invert.", "short": "-f"})
    data: str = field(metadata={"help": "Folder of training images.", "path": True})
    out: str = field(metadata={"help": "Output folder.", "short": "-o", "path": True})
    val: str | None = option(None, "Folder of validation images.", path=True)
    params: dict[str, Any] = option({}, "", hidden=True)  # -p NAME=VALUE, --weights
    image_size: int | None = option(None, "Training image side (default: the representation's "
                                    "own, e.g. 227 for AlexNet and SqueezeNet, else 128).")
    budget: int | None = option(None, "Training images to see (crops, counted with repeats); "
                                "the learning-rate schedule is sized to it. Default: "
                                f"{DEFAULT_BUDGET:,} when --epochs is not given either.")
    epochs: int | None = option(None, "Passes over the training images, instead of --budget.")
    batch_size: int = option(32, "Images per step (over all processes).")
    lr: float = option(5e-3, "Peak learning rate at batch 64; scaled by sqrt(batch/64) for other "
                       "batch sizes.")
    warmup: int | None = option(None, "Linear learning-rate warm-up steps (default: one epoch "
                                "when --batch-size is above 64, else none; none for onecycle, "
                                "which ramps up by itself).")
    betas: tuple[float, float] = option((0.9, 0.999), "", hidden=True)
    schedule: str = option("onecycle", "Learning-rate schedule over the run: linear (decay to "
                           "zero), onecycle (ramp up over the first 30 %, then cosine to zero), "
                           "cosine, step (the paper's drops at 70 % and 90 %), constant.",
                           choices=SCHEDULES)
    ema: float = option(0.0, "Decay of an exponential moving average of the weights, used for "
                        "validation and saved as the decoder (e.g. 0.998); 0: off.")
    pixel_distance: str = option("l2", "Distance of the pixel loss: l2 (the paper's squared "
                                 "error) or l1; scores are always the paper's normalized error.",
                                 choices=PIXEL_DISTANCES)
    low_res_first: str = option("auto", "Train the first part of the run at a lower "
                                "resolution: SIZE:FRACTION (e.g. 64:0.5), off, or auto (half "
                                "the --image-size for the first half of the steps, for grid "
                                "layouts without --feature-cache).")
    preset: str = option(DEFAULT_TRAIN_PRESET, "Decoder preset.", choices=tuple(PRESETS))
    width: float | None = option(None, "Width multiplier (overrides the preset's).")
    crop_scale: tuple[float, float] = option((0.8, 1.0), "Smallest random-crop side as a "
                                             "fraction of the shorter image side.")
    limit: int | None = option(None, "Use only the first N training images.")
    val_limit: int | None = option(500, "Use only the first N validation images.")
    val_every: int = option(0, "Validate every N epochs (and after the last); 0: as often as "
                            "keeps validation under 5 % of the training time.")
    device: str = option("auto", "cpu, cuda, cuda:1, ... or auto (CUDA when available).")
    workers: int = option(2, "Data-loading processes.")
    data_store: str = option("auto", "Where decoded training images live: memory (RAM, or the "
                             "GPU when training there), files (decoded each epoch), or auto "
                             "(memory when they fit --memory-budget).", choices=DATA_STORES)
    memory_budget: float | None = option(None, "GB of decoded training images that auto keeps "
                                         "in memory (default: 25 % of RAM, 40 % of free GPU "
                                         "memory).")
    threads: int | None = option(None, "CPU threads (default: the cores available, shared "
                                 "among the processes on this machine).")
    seed: int = option(0, "Seed of the initial weights, crops and order.")
    save_every: int = option(0, "Also checkpoint every N steps.")
    save_minutes: float = option(10.0, "Checkpoint at least every M minutes (and at the end, "
                                 "and on Ctrl-C / SIGTERM).")
    log_every: int = option(20, "Read the loss (a device sync) every N steps.")
    preview: int = option(8, "Validation images shown in each validation PNG (0: none).")
    finetune_encoder: bool = option(False, "Train the representation's parameters too (an "
                                    "autoencoder, paper section 5.2); saved with the decoder.",
                                    flag=True)
    precision: str = option("auto", "Mixed precision for the decoder; auto: bf16 where the CPU "
                            "or GPU computes it natively, else fp32 (fp16: CUDA only).",
                            choices=("auto", *PRECISIONS))
    channels_last: bool | None = option(None, "Channels-last (NHWC) decoder activations "
                                        "(default: on).", flag=True)
    compile: bool = option(False, "torch.compile the training step.", flag=True)
    feature_cache: str | None = option(None, "Folder caching the features of each crop on "
                                       "disk, for representations slower than reading them "
                                       "back (SIFT, LBP).", path=True)
    cache_variants: int = option(4, "With --feature-cache: random crops per image, cycled over "
                                 "the epochs.")
    cache_dtype: str = option("float16", "With --feature-cache: how features are stored.",
                              choices=tuple(CACHE_DTYPES))
    loss: str = option("pixel", "Loss terms with optional weights: pixel (the paper's eq. 1), "
                       "feature (distance in a comparator's feature space), adversarial (a "
                       "discriminator's verdict), e.g. pixel,feature=0.05,adversarial=0.005 "
                       "(weights default to " + ", ".join(f"{k} {v:g}" for k, v in LOSSES.items())
                       + ").")
    comparator: str | None = option(None, "Representation the feature loss compares in "
                                    "(default: the inverted one, if differentiable), e.g. "
                                    "squeezenet.fire5.")
    comparator_weights: str | None = option(None, "Weights of a CNN comparator: a .safetensors/"
                                            ".npz file, imagenet or random.", path=True)
    disc_width: float = option(0.25, "Width multiplier of the discriminator (adversarial loss).")
    disc_lr: float = option(2e-4, "Learning rate of the discriminator (Adam, betas 0.5, 0.999).")
    disc_conditional: bool = option(False, "The discriminator sees the inverted features too "
                                    "(grid layouts).", flag=True)
    init_from: str | None = option(None, "Start from this trained decoder's weights (same "
                                   "representation, layout, preset and width), e.g. to fine-tune "
                                   "a pixel-loss decoder with other losses: a checkpoint file, a "
                                   "training folder, or a shipped decoder ('featinv zoo'): NAME "
                                   "for the default one, NAME.VARIANT for another, e.g. hog or "
                                   "hog.realistic.", path=True)
    overwrite: bool = option(False, "Replace the run already in --out.", flag=True)

    def __post_init__(self):
        if isinstance(self.loss, dict):  # TrainConfig(loss={"pixel": 1, "feature": 0.05})
            object.__setattr__(self, "loss", loss_text(self.loss))


# -- configuration ----------------------------------------------------------------------------

def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train, before any work starts (once per run: what a run
    fills in later is checked where it is, see ``featinv.training.resolve``)."""
    if cfg.epochs is not None and cfg.budget is not None:
        raise FeatinvError(f"Give {_opt('epochs')} or {_opt('budget')}, not both.")
    if cfg.epochs is not None:
        _whole("epochs", cfg.epochs, 1, 10**6)
    if cfg.budget is not None:
        _whole("budget", cfg.budget, 1, MAX_BUDGET)
    _whole("batch-size", cfg.batch_size, 1, 65536)
    if cfg.image_size is not None:
        check_image_size(cfg.image_size)
    for name in ("limit", "val-limit"):
        value = getattr(cfg, name.replace("-", "_"))
        if value is not None:
            _whole(name, value)
    for name in ("workers", "save-every", "val-every", "preview"):
        _whole(name, getattr(cfg, name.replace("-", "_")), 0)
    _whole("log-every", cfg.log_every)
    if cfg.warmup is not None:
        _whole("warmup", cfg.warmup, 0)
    if cfg.threads is not None:
        _whole("threads", cfg.threads)
    _whole("seed", cfg.seed, 0, 2**63 - 1)
    low, high = cfg.crop_scale
    _number("crop-scale", low, MIN_CROP_SCALE, 1)
    if not (_is_number(high) and low <= high <= 1):  # the upper end: from the API only
        raise FeatinvError(f"{_opt('crop_scale')}: the range {cfg.crop_scale!r} must be two "
                           f"finite numbers with {MIN_CROP_SCALE} <= low <= high <= 1.")
    _number("lr", cfg.lr, 0, open_low=True)
    # below 0.6 s every step would be a checkpoint (1e-320 was accepted); --save-every counts steps
    _number("save-minutes", cfg.save_minutes, MIN_SAVE_MINUTES)
    if cfg.width is not None:
        _number("width", cfg.width, MIN_WIDTH, 8)
    betas = cfg.betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        raise FeatinvError(f"betas must be two finite numbers in [0, 1) (Adam's decays), got "
                           f"{betas!r}.")
    if cfg.schedule not in SCHEDULES:
        raise FeatinvError(f"Unknown {_opt('schedule')} '{cfg.schedule}' "
                           f"({', '.join(SCHEDULES)}).")
    if cfg.preset not in PRESETS:
        raise FeatinvError(f"Unknown {_opt('preset')} '{cfg.preset}' ({', '.join(PRESETS)}).")
    if cfg.data_store not in DATA_STORES:
        raise FeatinvError(f"{_opt('data_store')} must be auto, memory or files, got "
                           f"{cfg.data_store!r}.")
    if cfg.memory_budget is not None:  # as $FEATINV_MEMORY_BUDGET
        _number("memory-budget", cfg.memory_budget, 1e-3, 1e6, unit=" of GB")
    check_loss_options(cfg)
    if not (_is_number(cfg.ema) and 0 <= cfg.ema < 1):
        raise FeatinvError(f"{_opt('ema')} must be a finite decay in [0, 1) (0: off), got "
                           f"{cfg.ema!r}.")
    if 0 < cfg.ema < 0.5:  # an average over less than two steps: the live weights, at a cost
        raise FeatinvError(f"{_opt('ema', cfg.ema)} averages over less than two steps, which "
                           "is no average; use 0 (off) or a decay such as 0.999.")
    if cfg.ema and cfg.finetune_encoder:
        raise FeatinvError(f"{_opt('ema')} cannot be used with {_opt('finetune_encoder')} yet: "
                           "the averaged decoder would be saved with the live encoder.")
    if cfg.pixel_distance not in PIXEL_DISTANCES:
        raise FeatinvError(f"{_opt('pixel_distance')} must be one of "
                           f"{', '.join(PIXEL_DISTANCES)}, got {cfg.pixel_distance!r}.")
    low_res_plan(cfg)
    _number("disc-lr", cfg.disc_lr, 0, open_low=True)
    _number("disc-width", cfg.disc_width, MIN_WIDTH, 8)  # as --width: 1e9 asked for terabytes
    for option, value in (("lr", cfg.lr), ("disc-lr", cfg.disc_lr)):
        if value < MIN_LR:
            raise FeatinvError(f"{_opt(option, value)} is too small to change float32 weights; "
                               f"use {MIN_LR:g} or more, e.g. 1e-3.")
        if value > MAX_LR:  # Adam cannot hold it in float32 (--disc-lr 1e39: RuntimeError)
            raise FeatinvError(f"{_opt(option, value)} is beyond float32; use at most "
                               f"{MAX_LR:g}, e.g. 1e-3.")
    if cfg.feature_cache and cfg.finetune_encoder:
        raise FeatinvError(f"{_opt('feature_cache')} cannot be used with "
                           f"{_opt('finetune_encoder')}: the features change as the encoder "
                           "trains.")
    if isinstance(cfg.cache_variants, bool) or not isinstance(cfg.cache_variants, int) or \
            not 1 <= cfg.cache_variants <= MAX_CACHE_VARIANTS:
        raise FeatinvError(f"{_opt('cache_variants')} must be a whole number from 1 to "
                           f"{MAX_CACHE_VARIANTS}, got {cfg.cache_variants!r}: each variant "
                           "caches the features of every image once more on disk, and a run "
                           "uses one per epoch.")
    check_given_options(cfg, given_fields(cfg))  # last: a nonsense value is named as such


def check_image_size(size) -> None:
    """The training side is a whole number of pixels from 8 to ``MAX_IMAGE_SIZE``."""
    _whole("image-size", size, 8, MAX_IMAGE_SIZE)


# below these, float32 weights stop changing, layers lose every channel, crops are enlarged 100x
MIN_LR, MIN_WIDTH, MIN_CROP_SCALE = 1e-10, 1 / 256, 0.01
MIN_SAVE_MINUTES = 0.01
MAX_LR = 1e30  # above it a learning rate (scaled by the batch) overflows float32
MAX_CACHE_VARIANTS = 1000  # random crops per image in a feature cache (one used per epoch)
# the part of a run --low-res-first trains at low resolution: below, a few steps that cannot
# help (1e-320 was accepted: no step at all); above, too few steps are left at full size
LOW_RES_FRACTIONS = (0.01, 0.99)


def low_res_plan(cfg: TrainConfig, layout_kind: str | None = None) -> tuple[int, float] | None:
    """``--low-res-first`` as ``(size, fraction)``, or None (``off``; ``auto`` where it does not
    apply: a vector layout, a feature cache, a training size under 64 px). ``layout_kind``:
    ``"grid"`` or ``"vector"`` once the representation is known."""
    text = str(cfg.low_res_first or "off").strip().lower()
    if text == "off":
        return None
    if text == "auto":
        size = cfg.image_size or DEFAULT_IMAGE_SIZE
        if layout_kind == "vector" or cfg.feature_cache or size < 64:
            return None
        return size // 2, 0.5
    size, sep, frac = text.partition(":")
    try:
        plan = int(size), float(frac) if sep else 0.5
    except ValueError:
        plan = None
    if plan is None or not (8 <= plan[0] <= MAX_IMAGE_SIZE and math.isfinite(plan[1])
                            and 0 < plan[1] < 1):
        raise FeatinvError(f"{_opt('low_res_first')} must be SIZE:FRACTION with SIZE from 8 "
                           f"and FRACTION in (0, 1), e.g. 64:0.5; got {text!r}.")
    low, high, given = *LOW_RES_FRACTIONS, _opt("low_res_first", text)
    if not low <= plan[1] <= high:
        raise FeatinvError(f"{given}: FRACTION must be from {low} to {high}: a smaller part of "
                           "the run is too short to help, a larger one leaves too few steps at "
                           f"full size; e.g. {_opt('low_res_first', '64:0.5')}, or off.")
    if cfg.image_size is not None and plan[0] >= cfg.image_size:
        raise FeatinvError(f"{given}: {plan[0]} px is not below the training size "
                           f"{cfg.image_size} px.")
    if layout_kind == "vector":
        raise FeatinvError(f"{given}: '{cfg.feature}' gives a vector, which a decoder turns "
                           f"into images of one size; use {_opt('low_res_first', 'off')}.")
    if cfg.feature_cache:
        raise FeatinvError(f"{_opt('low_res_first')} cannot be used with "
                           f"{_opt('feature_cache')} (the cache holds features at one size).")
    return plan


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Steps of the whole run: ``--epochs`` passes, else ``--budget`` images (default
    ``DEFAULT_BUDGET``) rounded up to whole batches."""
    if cfg.epochs is not None:
        return steps_per_epoch * cfg.epochs
    budget = cfg.budget if cfg.budget is not None else DEFAULT_BUDGET
    return max(1, math.ceil(budget / cfg.batch_size))


def effective_lr(cfg: TrainConfig) -> float:
    """The peak learning rate: ``--lr`` scaled by ``sqrt(batch_size / 64)``, the square-root
    rule that suits Adam (its step size does not grow with the gradient's magnitude)."""
    return cfg.lr * math.sqrt(cfg.batch_size / REFERENCE_BATCH)


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Linear warm-up length: ``--warmup``, else one epoch above batch 64 (none at or below;
    none for ``onecycle``, whose ramp is its warm-up)."""
    if cfg.warmup is not None:
        return cfg.warmup
    if cfg.schedule == "onecycle":
        return 0
    return steps_per_epoch if cfg.batch_size > REFERENCE_BATCH else 0


ONECYCLE_RAMP = 0.3  # fraction of the run over which --schedule onecycle ramps up


def lr_at(cfg: TrainConfig, step: int, total: int, warmup: int = 0) -> float:
    """Learning rate at ``step`` of ``total``: warm-up, then the paper's decay near the end."""
    peak = effective_lr(cfg)
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = step / max(total, 1)
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "linear":
        return peak * max(0.0, 1.0 - frac)
    if cfg.schedule == "onecycle":  # no separate warm-up: the ramp is the warm-up
        if frac < ONECYCLE_RAMP:
            return peak * (0.04 + 0.96 * frac / ONECYCLE_RAMP)
        return peak * 0.5 * (1 + math.cos(math.pi * (frac - ONECYCLE_RAMP) / (1 - ONECYCLE_RAMP)))
    if cfg.schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * frac))
    if cfg.schedule == "step":
        return peak * (1.0 if frac < 0.7 else 0.3 if frac < 0.9 else 0.1)
    raise FeatinvError(f"Unknown schedule '{cfg.schedule}' ({', '.join(SCHEDULES)}).")


def config_json(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


# the presets' widths when runs stored a null width (residual has since become x0.25)
LEGACY_WIDTHS = {"paper": 1.0, "compact": 0.25, "residual": 0.125}


def check_resumable(stored: dict[str, Any], cfg: TrainConfig, folder) -> None:
    """Refuse to resume ``folder``, trained with the JSON config ``stored``, under a ``cfg`` that
    changes what the saved weights mean (a ``CheckpointError``)."""
    now = config_json(cfg)
    if stored.get("width") is None:  # older runs stored the preset's default as null
        stored = {**stored, "width": LEGACY_WIDTHS.get(stored.get("preset"))}
    stored = {"loss": "pixel", "disc_conditional": False, **stored}
    for key in ("feature", "params", "image_size", "preset", "width", "batch_size",
                "finetune_encoder", "loss", "disc_conditional"):
        if stored.get(key) != now.get(key):
            raise CheckpointError(f"Cannot resume {folder}: it was trained with "
                                  f"{key}={stored.get(key)!r}, this run asks for "
                                  f"{now.get(key)!r}. Use the same setting, or train into "
                                  "another --out.")


# settings --resume may change (its log names them); those that change what the weights mean
# are refused by check_resumable
RESUME_NOTED = ("data", "limit", "weights", "lr", "warmup", "betas", "schedule", "ema",
                "pixel_distance", "low_res_first", "crop_scale", "seed", "precision",
                "comparator", "comparator_weights", "disc_width", "disc_lr")


def resume_note(stored: dict[str, Any], cfg: TrainConfig, log) -> None:
    """Tell ``log`` (None: nobody) which ``RESUME_NOTED`` settings a resumed run changes."""
    now = config_json(cfg)
    changed = [f"{key} {stored[key]!r} -> {now.get(key)!r}" for key in RESUME_NOTED
               if key in stored and stored[key] != now.get(key)]
    if changed and log is not None:
        log(printable("resuming with settings that differ from the run's: " + ", ".join(changed)
                      + "; it continues with the new ones (repeat the original settings to "
                      "continue it exactly)"))


def settings_line(cfg: TrainConfig, device_type: str, warmup: int, where: str) -> str:
    """The log line naming the settings a run resolved (``where``: where its images live)."""
    return (f"settings: precision {cfg.precision}, channels_last {cfg.channels_last}, "
            + (f"{cfg.threads} CPU threads, " if device_type == "cpu" else "")
            + f"batch {cfg.batch_size}, lr {effective_lr(cfg):.3g}"
            + (f" after {warmup} warm-up steps" if warmup else "") + f", images {where}")
