"""The checks every decoder passes once loaded (issue 24, rounds 12 to 14), wherever it is loaded:
``featinv.load_decoder``, ``Inverter.load`` (``invert``, ``evaluate``, ``audit``, ``analyze``),
``train --init-from`` and ``pack``.

A decoder is refused when its batch-norm counts were reset (``evidence.counter_fault``), when
its pictures do not or hardly depend on the features (``probes.dependence_fault``), or when its
feature statistics cannot be its representation's (``probes.decoder_statistics_fault``): each a
decoder file altered within the bounds the load checks set on every number, which drew one flat
picture for every photo, or faint or garbled ones, with exit code 0.
"""
from __future__ import annotations

import warnings

import torch

from ..errors import CheckpointError, FeatinvError, printable
from .evidence import counter_fault
from .probes import decoder_statistics_fault, dependence_fault, own_features_output

ALTERED = "The file was altered or damaged: use an intact copy, or train it again."


def representation_of(decoder):
    """The representation ``decoder`` was trained on (on the CPU), or None with a warning when
    it cannot be built here (network weights not available offline): its feature statistics
    are then not checked."""
    from .encoder_weights import encoder_for

    try:
        return encoder_for(decoder).to(torch.device("cpu"))
    except FeatinvError as exc:
        warnings.warn(f"the decoder's feature statistics are not checked: its representation "
                      f"is not available here ({exc})", stacklevel=3)
        return None


def decoder_fault(decoder, extractor=None, device: torch.device | None = None,
                  out: torch.Tensor | None = None) -> str | None:
    """Why ``decoder`` cannot be the decoder featinv trained or built, or None:
    ``evidence.counter_fault``, ``probes.dependence_fault`` (of ``out``, its
    ``probes.own_features_output``, computed when not given), and with ``extractor`` (its
    representation, run on ``device``) ``probes.decoder_statistics_fault``."""
    fault = counter_fault(decoder) or dependence_fault(decoder, out)
    if fault or extractor is None:
        return fault
    return decoder_statistics_fault(extractor, decoder, device)


def check_decoder(decoder, label, extractor=None, device: torch.device | None = None,
                  out: torch.Tensor | None = None) -> None:
    """Refuse ``decoder`` (read from ``label``) in one line when ``decoder_fault`` finds it
    altered: ``LABEL: FAULT. The file was altered or damaged: ...``."""
    if out is None:
        out = own_features_output(decoder)
    fault = decoder_fault(decoder, extractor, device, out)
    if fault:
        raise CheckpointError(f"{printable(str(label))}: {fault}. {ALTERED}")
