"""Stopping and saving a training run: the part of ``loop.Run`` that writes checkpoints.

A checkpoint is written only if it is usable: every weight finite, and the decoder (and, with
``--ema``, the weights the training state continues from) reconstructing the last training
batch with a finite error (weights of 1e28 after one step at ``--lr 1e29`` are finite, and
useless). A run that replaces another (``--overwrite``) and is stopped by a signal before its
first checkpoint saves nothing: the run it replaces is put back instead.
"""
from __future__ import annotations

import secrets
import signal

import torch
from torch import nn

from ..errors import FeatinvError, Interrupted, printable
from ..io import checkpoint
from ..io.checkpoint import CHECKPOINT_KEY, STATE_PREFIXES
from .config import config_json
from .step import EncoderDecoder


class Saving:
    """Mixed into ``loop.Run``, whose attributes it uses (``cfg``, ``world``, ``folder``,
    ``stop``, ``step``, ``total``, the networks and optimizers)."""

    _last: tuple[torch.Tensor, torch.Tensor | None] | None = None  # a few of the last batch

    def _keep_batch(self, x: torch.Tensor, feats: torch.Tensor | None) -> None:
        """Keep a few images (and features) of this step's batch, for ``_reconstructs``."""
        self._last = (x[:8].detach(), None if feats is None else feats[:8].detach())

    def _stop_now(self) -> Interrupted:
        """A signal asked the run to stop: save it (rank 0) and say so; a run that replaces
        another and has no checkpoint of its own saves nothing, the other is put back."""
        signum = self.stop.signum or signal.SIGINT
        name = signal.Signals(signum).name
        where = f"Interrupted by {name} at step {self.step}/{self.total}"
        if self.folder.replacing:
            return Interrupted(f"{where}, before this run's first checkpoint: nothing of it is "
                               f"saved, and the previous run in {printable(self.folder.path)} "
                               "is put back.", signum)
        self.save(None)
        return Interrupted(f"{where}; saved {printable(self.folder.path)}. Continue with the same"
                           " command and --resume.", signum)

    def _unusable(self) -> str | None:
        """Why the weights to be saved are no decoder ``invert`` would use, or None: a parameter
        or buffer (batch-norm statistics, feature statistics) NaN or infinite, or the last
        batch's reconstruction (inference mode: statistics as stored; nothing of the training
        state changes) failing ``check_output`` (NaN, or far outside [0, 1]: a diverging
        ``--lr 1`` saved such a decoder with exit code 0, deleting the run it replaced)."""
        from ..inversion.output_checks import output_fault

        tensors = self.trained_params + list(self.averaged.parameters()) \
            + [b for b in self.averaged.buffers() if b.is_floating_point()]
        if not all(bool(torch.isfinite(t).all()) for t in tensors):
            return "they became NaN or infinite"
        if self._last is None:
            return None
        x, feats = self._last
        for decoder in {id(d): d for d in (self.decoder, self.averaged)}.values():
            was = decoder.training
            decoder.eval()
            try:
                with torch.no_grad():
                    y, _ = EncoderDecoder(self.extractor, decoder, self.encoder, "fp32",
                                          self.memory_format)(x, feats)
            finally:
                decoder.train(was)
            fault = output_fault(y.float())
            if fault:
                return f"they reconstruct the training images with {fault}"
        return None

    def save(self, metrics: dict | None) -> None:
        """Write a checkpoint (rank 0): both files, together, refusing weights that are not
        usable (``_unusable``)."""
        if not self.world.is_main:
            return
        problem = self._unusable()
        if problem:
            raise FeatinvError(f"The weights at step {self.step} are not saved: {problem}; "
                               + self.folder.kept_message() + " Try a lower --lr.")
        cfg_json = config_json(self.cfg)
        validated = [r for r in self.history if "val_normalized_error" in r]
        ident = f"{self.step}-{secrets.token_hex(8)}"  # shared by the two files
        meta = checkpoint.decoder_metadata(
            self.extractor, self.decoder, training=cfg_json,
            metrics=metrics if metrics and "val_normalized_error" in metrics
            else (validated[-1] if validated else metrics or None),
            progress={"step": self.step, "total_steps": self.total,
                      "world_size": self.world.size, CHECKPOINT_KEY: ident})
        state = {"step": self.step, "history": self.history, "config": cfg_json,
                 CHECKPOINT_KEY: ident}
        self.folder.save_checkpoint(
            lambda path: checkpoint.save_train_state(path, self._modules(), self._optimizers(),
                                                     state),
            lambda path: checkpoint.save_decoder(self.averaged, path, meta, self.encoder),
            f"at step {self.step}")

    def _modules(self) -> dict[str, nn.Module]:
        """What the training state holds weights of, by tensor prefix."""
        modules = {"decoder": self.decoder}
        if self.encoder is not None:
            modules["encoder"] = self.encoder
        if getattr(self, "ema", None) is not None:
            modules["ema"] = self.ema
        if getattr(self, "discriminator", None) is not None:
            modules["discriminator"] = getattr(self.discriminator, "module", self.discriminator)
        return modules

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {STATE_PREFIXES["opt"]: self.opt}
        if getattr(self, "disc_opt", None) is not None:
            optimizers[STATE_PREFIXES["disc_opt"]] = self.disc_opt
        return optimizers
