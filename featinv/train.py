"""Training a decoder: one readable loop (configuration -> data -> model -> loop -> checkpoint).

The decoder minimises the squared Euclidean distance between images and their reconstructions
(paper eq. 1) with Adam. With ``finetune_encoder`` the representation's own parameters train too
(the paper's autoencoders, section 5.2) and are saved with the decoder. Features are computed inside the step from the (grayscale, if the
representation says so) image; the target is always the colour image. After every epoch the
validation error is measured, a PNG of validation reconstructions is written and the checkpoint is
saved (``decoder.safetensors`` to invert with, ``train_state.safetensors`` to resume from).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import checkpoint
from .data import EpochBatches, ImageFolder, scan_folder
from .decoders import DEFAULT_PRESET, Decoder, build_decoder
from .distributed import World, barrier, join, leave, mean_over_ranks, world_from_env
from .errors import CheckpointError, FeatinvError
from .feature_cache import FeatureCache
from .images import make_grid, save_png
from .inversion import decoder_metadata, pick_device, save_decoder
from .metrics import normalized_error, psnr, ssim
from .precision import autocast, check_precision
from .registry import get_feature

DECODER_FILE = "decoder.safetensors"
STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"
DEFAULT_IMAGE_SIZE = 128


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in the checkpoint."""

    feature: str
    data: str
    out: str
    val: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # None: the representation's own size (227 for AlexNet), else 128
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"  # "step": constant, then x0.1 steps; "cosine"; "constant"
    preset: str = DEFAULT_PRESET
    width: float | None = None
    crop_scale: tuple[float, float] = (1.0, 1.0)
    limit: int | None = None  # use only the first N training images
    val_limit: int | None = 500
    device: str = "auto"
    workers: int = 2
    seed: int = 0
    save_every: int = 0  # also checkpoint every N steps (0: once per epoch)
    preview: int = 8  # validation images shown in the per-epoch PNG
    finetune_encoder: bool = False  # train the representation's parameters too (autoencoder)
    precision: str = "fp32"  # "bf16" or "fp16": the decoder's forward runs under autocast
    channels_last: bool = False  # NHWC decoder activations (faster convolutions on CPU and GPU)
    compile: bool = False  # torch.compile the training step
    feature_cache: str | None = None  # folder of cached features (featinv.feature_cache)
    cache_variants: int = 4  # with a cache: K fixed random crops per image, cycled over epochs
    cache_dtype: str = "float16"


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Learning rate at ``step`` of ``total``: the paper decays it towards the end."""
    frac = step / max(total, 1)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))
    if cfg.schedule == "step":
        return cfg.lr * (1.0 if frac < 0.7 else 0.3 if frac < 0.9 else 0.1)
    raise FeatinvError(f"Unknown schedule '{cfg.schedule}' (step, cosine, constant).")


def _loader(ds: ImageFolder, batches, cfg: TrainConfig, device: torch.device) -> DataLoader:
    if batches is None:  # validation: in order
        return DataLoader(ds, batch_size=cfg.batch_size, num_workers=cfg.workers,
                          pin_memory=device.type == "cuda")
    return DataLoader(ds, batch_sampler=batches, num_workers=cfg.workers,
                      pin_memory=device.type == "cuda")


class TrainStep(nn.Module):
    """Images (and, if cached, their features) -> reconstructions, as one module.

    One module so that DistributedDataParallel averages the gradients of everything that trains:
    the decoder and, with ``finetune_encoder``, the representation (``encoder``).
    """

    def __init__(self, extractor, decoder: Decoder, encoder: nn.Module | None,
                 precision: str, memory_format: torch.memory_format):
        super().__init__()
        self.decoder, self.encoder = decoder, encoder
        self._extractor = [extractor]  # in a list: not a submodule, its weights are not trained
        self.precision, self.memory_format = precision, memory_format

    def forward(self, x: torch.Tensor, feats: torch.Tensor | None = None) -> torch.Tensor:
        if feats is None:
            with torch.set_grad_enabled(self.encoder is not None and torch.is_grad_enabled()):
                feats = self._extractor[0](x)
        if feats.dim() == 4:
            feats = feats.contiguous(memory_format=self.memory_format)
        with autocast(x.device, self.precision):
            return self.decoder(feats, size=x.shape[-2:])


def optimizer_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                   feats: torch.Tensor | None = None,
                   scaler: torch.amp.GradScaler | None = None) -> torch.Tensor:
    """One step on the paper's loss (eq. 1, the mean squared error) for images ``x``
    ``(B, 3, H, W)``; ``model`` is a ``TrainStep``. Returns the loss, without syncing."""
    loss = F.mse_loss(model(x, feats).float(), x)
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    return batch.to(device, non_blocking=True).float().div_(255.0)


@torch.no_grad()
def validate(extractor, decoder: Decoder, loader: DataLoader, device,
             cache: FeatureCache | None = None) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Metrics over a validation loader, and the images and reconstructions for previews."""
    decoder.eval()
    xs, ys = [], []
    for batch in loader:
        x, feats = _unpack(batch, device, extractor, cache)
        feats = extractor(x) if feats is None else feats
        ys.append(decoder(feats, size=x.shape[-2:]).float().clamp(0, 1).cpu())
        xs.append(x.cpu())
    decoder.train()
    x, y = torch.cat(xs), torch.cat(ys)
    return ({"normalized_error": normalized_error(x, y), "psnr": float(psnr(x, y).mean()),
             "ssim": float(ssim(x, y).mean()), "n_images": x.shape[0]}, x, y)


def _progress(epoch: int, epochs: int, done: int, total: int, loss: float, ips: float) -> None:
    width = 24
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\repoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] "
                     f"{done}/{total} loss {loss:.4f} {ips:.0f} img/s ")
    sys.stderr.flush()


def _state_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam's state as flat tensors plus JSON (safetensors holds no Python objects)."""
    sd = opt.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def _load_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings that cannot train, before any work starts."""
    if cfg.epochs < 1 or cfg.batch_size < 1 or (cfg.image_size is not None and cfg.image_size < 1):
        raise FeatinvError("--epochs, --batch-size and --image-size must be at least 1.")
    low, high = cfg.crop_scale
    if not 0 < low <= high <= 1:
        raise FeatinvError(f"--crop-scale must lie in (0, 1], got {low}.")
    if cfg.lr <= 0:
        raise FeatinvError(f"--lr must be positive, got {cfg.lr}.")
    if cfg.feature_cache and cfg.finetune_encoder:
        raise FeatinvError("--feature-cache cannot be used with --finetune-encoder: the "
                           "features change as the encoder trains.")
    if cfg.cache_variants < 1:
        raise FeatinvError(f"--cache-variants must be at least 1, got {cfg.cache_variants}.")


def _unpack(batch, device, extractor, cache: FeatureCache | None):
    """A loader batch -> images ``(B, 3, H, W)`` in [0, 1] and, with a cache, their features
    (read or computed and stored); without one ``None``, for the caller to compute them."""
    if cache is None:
        return to_float(batch, device), None
    images, names = batch
    x = to_float(images, device)
    return x, cache.features(list(names), x, extractor)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Train a decoder for ``cfg.feature``; returns the last validation metrics.

    Under torchrun every process runs this; rank 0 logs, validates and writes checkpoints.
    """
    check_config(cfg)
    world = world_from_env()
    try:
        return _train(cfg, resume, log if world.is_main else (lambda _msg: None), world)
    finally:
        leave(world)


def _train(cfg: TrainConfig, resume: bool, log, world: World) -> dict[str, Any]:
    cfg = replace(cfg, params=dict(cfg.params))
    device = join(world, pick_device(cfg.device))
    check_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    extractor = get_feature(cfg.feature, **cfg.params).to(device)
    cfg.params = extractor.params
    cfg.image_size = cfg.image_size or extractor.spec.image_size or DEFAULT_IMAGE_SIZE
    layout = extractor.layout(cfg.image_size, cfg.image_size)
    encoder = _trainable_encoder(extractor) if cfg.finetune_encoder else None
    cache = None
    if cfg.feature_cache:
        cache = FeatureCache(cfg.feature_cache, extractor, cfg.image_size, cfg.cache_dtype,
                             writer=world.rank)

    skipped: list[str] = []
    train_files = scan_folder(cfg.data, cfg.limit, on_error=skipped.append)
    val_files = scan_folder(cfg.val, cfg.val_limit, on_error=skipped.append) if cfg.val else None
    for message in skipped:
        log(f"skipping {message}")
    cached = cache is not None
    train_ds = ImageFolder(train_files, cfg.image_size, train=True, seed=cfg.seed,
                           crop_scale=cfg.crop_scale, variants=cfg.cache_variants if cached else 0,
                           with_names=cached)
    batches = EpochBatches(len(train_ds), cfg.batch_size, cfg.seed, rank=world.rank,
                           world=world.size)
    loader = _loader(train_ds, batches, cfg, device)
    val_loader = None
    if val_files and world.is_main:
        val_loader = _loader(ImageFolder(val_files, cfg.image_size, train=False,
                                         with_names=cached), None, cfg, device)

    decoder = build_decoder(extractor.spec, layout, cfg.image_size, cfg.preset, cfg.width).to(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    decoder.to(memory_format=memory_format)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    trained = list(decoder.parameters()) + (list(encoder.parameters()) if encoder else [])
    opt = torch.optim.Adam(trained, lr=cfg.lr, betas=cfg.betas)
    steps_per_epoch = batches.batches_per_epoch()
    total = steps_per_epoch * cfg.epochs
    step, history = 0, []

    if resume and (out / STATE_FILE).exists():
        step, history = _resume(out, decoder, encoder, opt, cfg)
        log(f"resuming at step {step}/{total} from {out / STATE_FILE}")
    else:
        with torch.no_grad():  # feature statistics from one batch of centre crops
            stats_ds = ImageFolder(train_files[: max(cfg.batch_size, 64)], cfg.image_size, False)
            x = to_float(torch.stack([stats_ds[i] for i in range(len(stats_ds))]), device)
            decoder.set_feature_stats(extractor(x))
        if world.is_main:
            (out / METRICS_FILE).unlink(missing_ok=True)
    n_params = sum(p.numel() for p in decoder.parameters())
    log(f"training a {cfg.preset} decoder ({n_params / 1e6:.2f} M parameters) for "
        f"{cfg.feature} ({layout}) at {cfg.image_size} px on {len(train_ds)} images, {device}"
        + (f" x {world.size} processes" if world.distributed else "")
        + (", fine-tuning the encoder" if encoder else ""))

    model: nn.Module = TrainStep(extractor, decoder, encoder, cfg.precision, memory_format)
    if world.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                        else None)
    if cfg.compile:
        model = torch.compile(model)

    def save(metrics: dict | None) -> None:
        """Write both checkpoint files (rank 0), refusing to replace good ones with NaNs."""
        if not world.is_main:
            return
        if not all(torch.isfinite(p).all() for p in trained):
            raise FeatinvError(f"The weights became NaN or infinite by step {step}; the last "
                               f"checkpoint in {out} is kept. Try a lower --lr.")
        meta = decoder_metadata(extractor, decoder, training=_config_json(cfg),
                                metrics=metrics or (history[-1] if history else None),
                                progress={"step": step, "total_steps": total,
                                          "world_size": world.size})
        tensors, opt_json = _state_tensors(opt)
        if encoder is not None:
            tensors.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
        state_meta = {"format": checkpoint.STATE_FORMAT, "format_version": checkpoint.FORMAT_VERSION,
                      "step": step, "history": history, "config": _config_json(cfg), **opt_json}
        try:
            save_decoder(decoder, out / DECODER_FILE, meta, encoder)
            checkpoint.atomic_save({**tensors, **{f"decoder.{k}": v for k, v in
                                                  decoder.state_dict().items()}},
                                   out / STATE_FILE, state_meta)
        except OSError as exc:
            raise FeatinvError(f"Could not write the checkpoint in {out} at step {step} "
                               f"({exc.strerror or exc}); the previous checkpoint there is intact. "
                               "Free some space and continue with --resume.") from None

    decoder.train()  # a fine-tuned encoder stays in eval mode (see _trainable_encoder)
    while step < total:
        epoch, start = divmod(step, steps_per_epoch)
        train_ds.set_epoch(epoch)
        batches.set_epoch(epoch, start)
        t0, done_before, loss_value = time.perf_counter(), start, float("nan")
        for batch in loader:
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step, total)
            x, feats = _unpack(batch, device, extractor, cache)  # feats None: computed in the step
            loss = optimizer_step(model, opt, x, feats, scaler)
            step += 1
            in_epoch = step - epoch * steps_per_epoch
            if in_epoch % 10 == 0 or in_epoch == steps_per_epoch:
                loss_value = mean_over_ranks(loss.detach(), world).item()  # the only sync
                if not math.isfinite(loss_value):
                    raise FeatinvError(f"Loss became {loss_value} at step {step}; the last "
                                       f"checkpoint in {out} is kept. Try a lower --lr.")
                if world.is_main:
                    seen = min(in_epoch * cfg.batch_size, len(train_ds))
                    _progress(epoch, cfg.epochs, seen, len(train_ds), loss_value,
                              (in_epoch - done_before) * cfg.batch_size / (time.perf_counter() - t0))
            if cfg.save_every and step % cfg.save_every == 0 and step % steps_per_epoch:
                save(None)
        if world.is_main:
            sys.stderr.write("\n")
        record = {"epoch": epoch + 1, "step": step, "train_loss": loss_value,
                  "images_per_second": (steps_per_epoch - done_before) * cfg.batch_size
                  / (time.perf_counter() - t0), "lr": opt.param_groups[0]["lr"]}
        if cache is not None:
            cache.flush()
            record["cache_hit_rate"] = cache.hits / max(cache.hits + cache.misses, 1)
        if val_loader is not None:
            metrics, x, y = validate(extractor, decoder, val_loader, device, cache)
            record.update({f"val_{k}": v for k, v in metrics.items()})
            save_png(make_grid([x[: cfg.preview], y[: cfg.preview]]),
                     out / f"val_epoch{epoch + 1:03d}.png")
            log(f"epoch {epoch + 1}: val normalized error {metrics['normalized_error']:.4f}, "
                f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}")
        history.append(record)
        if world.is_main:
            with open(out / METRICS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")
        save(record)
        barrier(world)  # the others wait for rank 0's validation and checkpoint
        if cache is not None:
            cache.refresh()  # see the features the other processes computed
    return history[-1] if history else {}


def _config_json(cfg: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))


def _trainable_encoder(extractor) -> torch.nn.Module:
    """The representation's module, made trainable for ``--finetune-encoder``.

    It stays in eval mode (dropout off, batch-norm statistics fixed), as the features it is
    inverted from are computed in eval mode.
    """
    module = extractor.module
    if not extractor.spec.differentiable or not any(True for _ in module.parameters()):
        raise FeatinvError(f"--finetune-encoder needs a differentiable representation with "
                           f"parameters (a CNN layer); '{extractor.name}' has none to train.")
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _resume(out: Path, decoder: Decoder, encoder, opt, cfg: TrainConfig) -> tuple[int, list]:
    tensors, meta = checkpoint.load(out / STATE_FILE, checkpoint.STATE_FORMAT)
    stored = meta.get("config", {})
    for key in ("feature", "params", "image_size", "preset", "width", "batch_size",
                "finetune_encoder"):
        if stored.get(key) != _config_json(cfg).get(key):
            raise CheckpointError(f"Cannot resume {out}: it was trained with {key}="
                                  f"{stored.get(key)!r}, this run asks for "
                                  f"{_config_json(cfg).get(key)!r}.")
    weights = {k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")}
    decoder.load_state_dict(weights)
    if encoder is not None:
        encoder.load_state_dict({k[len("encoder."):]: v for k, v in tensors.items()
                                 if k.startswith("encoder.")})
    _load_state(opt, tensors, meta["param_groups"])
    return int(meta["step"]), list(meta.get("history", []))
