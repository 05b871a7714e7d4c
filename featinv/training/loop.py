"""Training a decoder, in the order a run happens: configuration -> data -> model -> loop -> save.

The decoder minimises the squared Euclidean distance between images and their reconstructions
(paper eq. 1) with Adam. With ``finetune_encoder`` the representation's own parameters train too
(the paper's autoencoders, section 5.2) and are saved with the decoder. Features are computed
inside the step from the (grayscale, if the representation says so) image; the target is always
the colour image.

Where the pieces live (all in ``featinv.training``): the configuration in ``config`` (checked
once) and ``resolve`` (its defaults filled in, into a new frozen config), the images in
``data``, one step in ``step``, the losses in ``losses``, the run folder in ``run_folder``;
this module is the run itself (``Run``: set up, ``fit``, ``save``).

The loop does not wait for the device: the loss is read every ``log_every`` steps. Validation
runs every ``val_every`` epochs (by default as often as keeps it under 5 % of the training time),
and the run is checkpointed every ``save_minutes`` (and ``save_every`` steps if set), at the end,
and when SIGINT or SIGTERM asks it to stop (``--resume`` continues exactly where it stopped; a run
that replaces another and has no checkpoint yet saves nothing, the other is put back); see
``saving``. The checkpoint files are described in ``featinv.io.checkpoint``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..datasets.feature_cache import FeatureCache
from ..datasets.folders import augment, crop_plan
from ..decoders.networks import build_decoder
from ..errors import CheckpointError, FeatinvError, PluginError, printable
from ..inversion.load import pick_device
from ..io import checkpoint
from ..io.checkpoint import DECODER_FILE, METRICS_FILE, STATE_FILE, STATE_PREFIXES  # noqa: F401
from ..io.images import make_grid
from ..precision import check_precision
from ..progress import Progress
from ..representation.plugins import GENERIC_BUILDER
from ..representation.registry import get_feature
from ..io.state_checks import check_history, check_optimizer_state, finite_record, metrics_line
from ..wording import opt
from .config import (DEFAULT_IMAGE_SIZE, TrainConfig, check_config,  # noqa: F401
                     check_resumable, config_json, effective_lr, low_res_plan, lr_at,
                     resume_note, settings_line, total_steps, warmup_steps)
from .data import check_batch_norm, load_data, report_to
from .ema import WeightAverage
from .distributed import World, barrier, join, leave, world_from_env
from .losses import build_comparator, build_discriminator, build_objective
from .pacing import LossMeter, SaveClock, StopRequest, ValidationPacer
from .resolve import resolve_defaults, resolve_representation
from .run_folder import RunFolder
from .saving import Saving
from .step import (EncoderDecoder, TrainStep, _trainable_encoder, make_optimizer,  # noqa: F401
                   optimizer_step, validate)


BN_SETTLE = 50  # steps at full size before a validation (see Run._settled)

def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict[str, Any]:
    """Train a decoder for ``cfg.feature``; returns the last validation metrics (or the last
    epoch's record when there is no validation folder).

    Under torchrun every process runs this; rank 0 logs, validates and writes checkpoints.
    SIGINT/SIGTERM save the run (see ``saving``) and raise ``Interrupted``.
    """
    world = world_from_env()
    try:
        with Run(cfg, resume, log if world.is_main else (lambda _msg: None), world) as run:
            return run.fit()
    finally:
        leave(world)


class Run(Saving):
    """One training run: set up in ``__init__`` (configuration, data, model), trained by
    ``fit`` (the loop), saved by ``save``. A context manager: it holds the run folder's lock
    and the signal handlers while it lives."""

    def __init__(self, cfg: TrainConfig, resume: bool, log, world: World):
        check_config(cfg)  # the user's settings, once; what the run fills in is checked there
        self.log, self.world = log, world
        self.device = join(world, pick_device(cfg.device))
        cfg = resolve_defaults(cfg, self.device, world)
        check_precision(cfg.precision, self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.folder = RunFolder(Path(cfg.out), active=world.is_main, log=self.log)
        self.folder.claim(resume=resume, overwrite=cfg.overwrite,
                          inputs={"--data": cfg.data, "--val": cfg.val})  # deletes nothing
        self.stop = StopRequest(self.folder.killed_message)
        self.stop.install()
        try:
            self._setup(cfg, resume)
        except BaseException:
            self.__exit__()
            raise

    def _setup(self, cfg: TrainConfig, resume: bool) -> None:
        # representation
        extractor = get_feature(cfg.feature, **cfg.params).to(self.device)
        extractor.check_finite_input = False  # images come from uint8: finite, and no sync
        self.cfg = cfg = resolve_representation(cfg, extractor.params, extractor.spec.image_size)
        self.extractor, self.layout = extractor, extractor.layout(cfg.image_size, cfg.image_size)
        self.encoder = _trainable_encoder(extractor) if cfg.finetune_encoder else None
        self.cache = None
        if cfg.feature_cache:
            self.cache = FeatureCache(cfg.feature_cache, extractor, cfg.image_size,
                                      cfg.cache_dtype, writer=self.world.rank)
        # data
        self.data = load_data(cfg, self.device, self.world, self.log, stop=self.stop.early)
        if self.data.sampler.batch_size != cfg.batch_size:  # fewer images than one batch
            self.cfg = cfg = dataclasses.replace(cfg, batch_size=self.data.sampler.batch_size)
        # model (seeded here: loading the data may have drawn random numbers)
        torch.manual_seed(cfg.seed)
        decoder = build_decoder(extractor.spec, self.layout, cfg.image_size, cfg.preset,
                                cfg.width).to(self.device)
        check_batch_norm(decoder, cfg.batch_size, self.world, self.data.n_train)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.decoder = decoder.to(memory_format=self.memory_format)
        self.trained_params = list(decoder.parameters()) + (list(self.encoder.parameters())
                                                            if self.encoder else [])
        self.opt = make_optimizer(self.trained_params, cfg, self.device)
        # the losses' own networks, in this order (both may draw random numbers)
        comparator = build_comparator(cfg, self.device)
        self.discriminator, self.disc_opt = build_discriminator(cfg, self.layout, self.device,
                                                                self.world.distributed)
        self.objective = build_objective(cfg, comparator, self.discriminator, self.disc_opt)
        self.scaler = (torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16"
                       else None)
        self.steps_per_epoch = self.data.sampler.batches_per_epoch()
        self.total = total_steps(cfg, self.steps_per_epoch)
        self.epochs = math.ceil(self.total / self.steps_per_epoch)  # the last may be partial
        self.low_res = low_res_plan(cfg, self.layout.kind)
        if self.low_res and cfg.low_res_first == "auto":
            try:  # auto only where the representation takes the smaller images
                self.extractor.layout(self.low_res[0], self.low_res[0])
            except (FeatinvError, ValueError):
                self.low_res = None
        self.warmup = warmup_steps(cfg, self.steps_per_epoch)
        if self.warmup > self.total and cfg.warmup is not None:  # the peak would never come
            raise FeatinvError(f"--warmup {cfg.warmup} is longer than the run ({self.total} "
                               f"steps): the learning rate would never reach --lr. Use at "
                               f"most {self.total}, or a larger --budget.")
        self.step, self.history = 0, []
        self.ema: WeightAverage | None = None
        resuming = resume and (self.folder.path / STATE_FILE).exists()
        if resuming:
            self._resume()
        elif cfg.init_from:
            self._init_from(cfg.init_from)
        else:
            self._init_feature_stats()
        if cfg.ema and self.ema is None:
            self.ema = WeightAverage(self.decoder, cfg.ema)
        model: nn.Module = EncoderDecoder(extractor, decoder, self.encoder, cfg.precision,
                                          self.memory_format)
        if self.world.distributed:
            model = DistributedDataParallel(model, device_ids=[self.device.index]
                                            if self.device.type == "cuda" else None)
        self.model = torch.compile(model) if cfg.compile else model
        self.folder.replace_previous()  # everything is checked: the old run may move aside
        if resuming:  # its metrics.jsonl: records after the checkpoint belong to lost steps
            self.folder.write_text(METRICS_FILE, "".join(metrics_line(r) for r in self.history))
            self.log(f"resuming at step {self.step}/{self.total} from "
                     f"{printable(self.folder.path / STATE_FILE)}")
        self._log_start()

    def _init_from(self, path: str) -> None:
        """Start from a decoder's weights (``--init-from``: file, folder, NAME[.VARIANT]), refused
        as ``invert`` refuses it (``featinv.load_decoder``'s checks): training from an altered
        decoder wrote one that invert refused, or hid what was altered."""
        from ..inversion.load import load_decoder

        start = load_decoder(path, device=self.device, feature=self.cfg.feature,
                               params=self.cfg.params)
        if start.config != self.decoder.config or start.layout != self.decoder.layout:
            raise CheckpointError(f"{opt('init_from', str(path))}: that decoder "
                                  f"({start.config.get('family')}, width "
                                  f"{start.config.get('width')}, "
                                  f"{start.config.get('image_size')} px) differs from the one "
                                  f"this run builds; use the same {opt('preset')}, "
                                  f"{opt('width')} and {opt('image_size')}.")
        self.decoder.load_state_dict(start.state_dict())
        self.log(f"starting from the weights of {printable(path)}")
        if bool((start.feature_std == 1).all()):  # built without statistics (the API): training
            self._init_feature_stats()  # sets them, as invert expects of a trained decoder
            self.log("its feature statistics (0 and 1: none) are set from the training images")

    def _log_start(self) -> None:
        cfg = self.cfg
        n_params = sum(p.numel() for p in self.decoder.parameters())
        self.log(f"training a {cfg.preset} decoder ({n_params / 1e6:.2f} M parameters) for "
                 f"{cfg.feature} ({self.layout}) at {cfg.image_size} px on {self.data.n_train} "
                 f"images, {self.device}"
                 + (f" x {self.world.size} processes" if self.world.distributed else "")
                 + (", fine-tuning the encoder" if self.encoder else "")
                 + (f", losses {cfg.loss}" if self.objective is not None else ""))
        self.log(settings_line(cfg, self.device.type, self.warmup, self.data.where))
        if self.low_res and self.data.val is not None and not self._settled():
            self.log(f"the first {self.low_res[1]:.0%} of the steps train at {self.low_res[0]} "
                     f"px (--low-res-first); validation at {cfg.image_size} px waits until "
                     f"{BN_SETTLE} steps after them, when batch norm has adapted to it")

    def _init_feature_stats(self) -> None:
        """Feature statistics from one batch of the training images already loaded (the first
        ones, uncropped centres); also the one check that the plugin's features are finite."""
        n = min(self.data.n_train, max(self.cfg.batch_size, 64))
        with torch.no_grad():
            feats = self.extractor(self.data.centres(n, self.cfg.image_size, self.device))
            if not bool(torch.isfinite(feats).all()):
                spec = self.extractor.spec
                raise PluginError(f"{spec.name} (plugin {spec.plugin}) returned NaN or "
                                  "infinite features for finite training images; fix the "
                                  "representation before training on it.")
            self.decoder.set_feature_stats(feats)

    def _resume(self) -> None:
        path = self.folder.path / STATE_FILE
        meta = checkpoint.read_meta(path, checkpoint.STATE_FORMAT)
        check_resumable(meta.get("config", {}), self.cfg, self.folder.path)
        if meta["step"] > self.total:  # (read_meta checked that it is a whole number >= 0)
            raise CheckpointError(f"{printable(path)}: the run is at step {meta['step']}, past "
                                  f"the {self.total} steps this command trains; raise --budget "
                                  "or --epochs.")
        resume_note(meta.get("config", {}), self.cfg, self.log if self.world.is_main else None)
        modules = self._modules()
        if self.cfg.ema:  # a state saved without an average starts one from its weights
            self.ema = WeightAverage(self.decoder, self.cfg.ema)
            if checkpoint.holds_prefix(path, STATE_PREFIXES["ema"]):
                modules["ema"] = self.ema
        history = check_history(meta.get("history", []), meta["step"], path)  # before loading
        meta = checkpoint.load_train_state(path, modules, self._optimizers(),
                                           self._updated_every_step())
        for prefix, opt in self._optimizers().items():  # Adam's moments and step count
            check_optimizer_state(opt, prefix.rstrip("."), int(meta["step"]), path)
        if self.ema is not None and "ema" not in modules:
            self.ema = WeightAverage(self.decoder, self.cfg.ema)
        self.step, self.history = int(meta["step"]), history

    def _updated_every_step(self) -> list[nn.Parameter]:
        """The parameters each training step updates, whose Adam state a resumed state must
        hold: a decoder featinv builds uses all its weights, and so does the discriminator (a
        plugin's decoder, or a fine-tuned representation, may hold some without gradients)."""
        params = list(self.decoder.parameters()) \
            if self.decoder.config.get("builder") == GENERIC_BUILDER else []
        if self.discriminator is not None:
            params += list(self.discriminator.parameters())
        return params

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg, data = self.cfg, self.data
        meter, saves = LossMeter(self.world), SaveClock(cfg.save_minutes, cfg.save_every)
        pacer = ValidationPacer(cfg.val_every, len(data.val) if data.val is not None else 0)
        self.decoder.train()  # a fine-tuned encoder stays in eval mode (see _trainable_encoder)
        self.stop.early()
        while self.step < self.total:
            epoch, start = divmod(self.step, self.steps_per_epoch)
            end = min((epoch + 1) * self.steps_per_epoch, self.total)  # a budget may end early
            data.sampler.set_epoch(epoch, start)
            draw = epoch % cfg.cache_variants if self.cache is not None else epoch
            t0, first_step = time.perf_counter(), self.step
            with Progress(end - self.step, f"epoch {epoch + 1}/{self.epochs}", "step",
                          report_to(self.world)) as bar:
                for indices, images, names in data.source.batches(data.sampler):
                    meter.add(self._train_step(indices, images, names, draw))
                    last = self.step == end
                    if meter.pending == cfg.log_every or last:
                        steps = meter.pending
                        bar.update(steps, **{k: f"{v:.4f}" for k, v in
                                             self._finite(meter.read()).items()})
                    if self.stop.agreed(self.world, self.device, meter.pending == 0):
                        raise self._stop_now()  # saved, unless it replaces another run
                    if not last and saves.due(self.step):  # the final save follows validation
                        self.save(None)
                        saves.reset()
                    if last:
                        break
            seconds = time.perf_counter() - t0
            record = self._record(epoch, meter.end_epoch(), self.step - first_step, seconds)
            if data.val is not None and self._settled() and pacer.due(
                    epoch, self.step >= self.total, seconds, record["images_per_second"]):
                t_val = time.perf_counter()
                record.update(self._validation(epoch))
                pacer.validated(time.perf_counter() - t_val)
            record = finite_record(record)  # an infinite PSNR is null: strict JSON everywhere
            self.history.append(record)
            if self.world.is_main:
                self.folder.append_text(METRICS_FILE, metrics_line(record))
            if self.step == self.total or "val_normalized_error" in record \
                    or saves.due(self.step):  # an epoch's last step skipped it above
                self.save(record)  # at the end, and with each validation's metrics
                saves.reset()
            barrier(self.world)  # the others wait for rank 0's validation and checkpoint
            if self.cache is not None:
                self.cache.refresh()  # see the features the other processes computed
        validated = [r for r in self.history if "val_normalized_error" in r]
        return validated[-1] if validated else (self.history[-1] if self.history else {})

    def _train_step(self, indices, images, names, draw: int) -> dict[str, torch.Tensor]:
        """One optimizer step at the scheduled learning rate (and the weight average's)."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step, self.total, self.warmup)
        x, feats = self._batch(indices, images, names, draw)
        self._keep_batch(x, feats)
        terms = optimizer_step(self.model, self.opt, x, feats, self.scaler, self.objective,
                               self.cfg.pixel_distance)
        if self.ema is not None:
            self.ema.update(self.step)
        self.step += 1
        return terms

    def _record(self, epoch: int, means: dict[str, float], steps: int, seconds: float) -> dict:
        """The epoch's line of metrics.jsonl (validation metrics are added to it)."""
        record = {"epoch": epoch + 1, "step": self.step,
                  "images_seen": self.step * self.cfg.batch_size,
                  "train_loss": means.get("loss", float("nan")),  # this epoch's mean
                  **{f"train_{k}": v for k, v in means.items()
                     if k != "loss" and self.objective is not None},
                  "images_per_second": steps * self.cfg.batch_size / seconds,
                  "lr": self.opt.param_groups[0]["lr"]}
        if self.cache is not None:
            self.cache.flush()
            record["cache_hit_rate"] = self.cache.hits / max(self.cache.hits
                                                             + self.cache.misses, 1)
        return record

    def _finite(self, losses: dict[str, float]) -> dict[str, float]:
        if not all(math.isfinite(v) for v in losses.values()):
            what = "--disc-lr or --lr" if any(not math.isfinite(losses.get(k, 0.0))
                                              for k in ("disc", "adversarial")) else "--lr"
            raise FeatinvError(f"Loss became {losses['loss']} at step {self.step} ({losses}); "
                               + self.folder.kept_message() + f" Try a lower {what}.")
        return losses

    @property
    def averaged(self) -> nn.Module:
        """The decoder that is validated and saved: the weight average with ``--ema``."""
        return self.ema.module if self.ema is not None else self.decoder

    def _size_now(self) -> int:
        """The training side at this step: lower for the first part with ``--low-res-first``."""
        if self.low_res and self.step < self.low_res[1] * self.total:
            return self.low_res[0]
        return self.cfg.image_size

    def _settled(self) -> bool:
        """Whether a validation now means something. During ``--low-res-first`` and for
        ``BN_SETTLE`` steps after it, batch norm's running statistics still come from the smaller
        images (momentum 0.1: 0.9 ** 50 < 1 % left), and a validation at full size is far worse
        than the decoder (SIFT: 1.48 at 128 px mid-phase, 0.47 after): it waits."""
        if not self.low_res or self.step >= self.total:
            return True
        return self.step >= self.low_res[1] * self.total + BN_SETTLE

    def _batch(self, indices, images, names, draw: int):
        """Augmented images ``(B, 3, S, S)`` on the device and, with a cache, their features."""
        cfg = self.cfg
        sizes = (self.data.sizes and [self.data.sizes[i] for i in indices]) or \
            [(img.shape[2], img.shape[1]) for img in images]
        crops = [crop_plan(cfg.seed, draw, i, w, h, cfg.crop_scale)
                 for i, (w, h) in zip(indices, sizes)]
        x = augment(images, crops, self._size_now(), self.device)
        if self.cache is None:
            return x, None
        keys = [f"{name}@{c.name()}" for name, c in zip(names, crops)]
        return x, self.cache.features(keys, x, self.extractor)

    def _validation(self, epoch: int) -> dict[str, Any]:
        metrics, x, y = validate(self.extractor, self.averaged, self.data.val,
                                 self.cfg.batch_size, self.device, self.cache)
        if self.cfg.preview:  # 0: no preview pictures
            self.folder.save_png(make_grid([x[: self.cfg.preview], y[: self.cfg.preview]]),
                                 f"val_epoch{epoch + 1:03d}.png")
        self.log(f"epoch {epoch + 1}: val normalized error {metrics['normalized_error']:.4f}, "
                 f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}")
        return {f"val_{k}": v for k, v in metrics.items()}

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.uninstall()
        self.folder.release()
