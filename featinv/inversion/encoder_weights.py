"""The representation a decoder inverts, computed with the weights it was trained against.

A decoder learns the features of one network with one set of weights. Its metadata names them
(``feature.params.weights``: a shipped name such as ``deepcompression``, ``imagenet``, or a
file) and fingerprints them (``feature.weights_sha256``, ``featinv.io.checkpoint.
weights_fingerprint``: the representation module's floating-point state). ``encoder_for``
rebuilds the representation from that metadata and:

- when the named weights cannot be loaded here (a training machine's file path), uses the
  representation's default weights if their fingerprint is the stored one (the shipped
  SqueezeNet weights, wherever the decoder's trainer kept a copy), and otherwise raises one line
  naming the weights the decoder needs;
- when the weights it computes features with are not the ones the decoder was trained against
  (other ``weights=``, a changed file), warns in one line (``WeightsMismatch``): the
  reconstructions are then of features the decoder never saw.

Decoders trained with ``--finetune-encoder`` carry their encoder's weights (``encoder.*``
tensors), which replace the representation's own; decoders from before fingerprints existed
and features from ``weights="random"`` (drawn anew each time: tests) are not checked.
"""
from __future__ import annotations

import warnings
from typing import Any

from ..errors import CheckpointError, FeatinvError
from ..io.checkpoint import weights_fingerprint
from ..representation.registry import get_feature, get_spec
from ..representation.spec import Extractor


class WeightsMismatch(UserWarning):
    """Features computed with other weights than the decoder was trained against."""


def _short(fingerprint: str | None) -> str:
    return f"sha256 {fingerprint[:12]}" if fingerprint else "no fingerprint"


def _default_weights(name: str) -> Any:
    params = {p.name: p.default for p in get_spec(name).params}
    return params.get("weights")


def _build(name: str, params: dict[str, Any], stored: str | None, label: str) -> Extractor:
    """``get_feature(name, **params)``; stored weights that cannot be loaded here are replaced by
    the representation's default weights when those have the stored fingerprint."""
    try:
        return get_feature(name, **params)
    except FeatinvError as exc:
        default = _default_weights(name)
        if stored is None or default is None or params.get("weights") == default:
            raise
        try:
            extractor = get_feature(name, **{**params, "weights": default})
        except FeatinvError:
            extractor = None
        if extractor is not None and weights_fingerprint(extractor.module) == stored:
            return extractor
        raise CheckpointError(f"{label} was trained on '{name}' with weights="
                              f"{params.get('weights')!r} ({_short(stored)}), which cannot be "
                              f"loaded here ({exc}); put that file at this path, or retrain the "
                              "decoder with weights you can ship.") from None


def encoder_for(decoder, weights: str | None = None, label: str | None = None) -> Extractor:
    """The representation (with its parameters) a loaded decoder inverts, as an ``Extractor``.

    ``weights``: compute the features with these weights instead of the stored ones (a
    ``WeightsMismatch`` warning when they differ from those the decoder was trained against).
    ``label`` names the decoder in messages (default: its representation).
    """
    feature = decoder.meta["feature"]
    name, params = feature["name"], dict(feature["params"])
    label = label or f"the decoder of '{name}'"
    state = getattr(decoder, "encoder_state", None)
    if state:  # fine-tuned: its own encoder weights replace the representation's
        if weights is not None:
            raise FeatinvError(f"{label} was trained with a fine-tuned encoder, whose weights "
                               "it carries; other weights cannot replace them.")
        try:  # built as trained (weights-dependent settings such as Caffe's preprocessing)
            extractor = _build(name, params, None, label)
        except FeatinvError:  # those weights are not here: any weights, overwritten just below
            extractor = get_feature(name, **{**params, **({"weights": "random"}
                                                          if "weights" in params else {})})
        try:
            extractor.module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"the fine-tuned encoder stored with this decoder does not "
                                  f"fit '{name}' ({str(exc).splitlines()[0]}).") from None
        return extractor.to(next(decoder.parameters()).device)
    stored = feature.get("weights_sha256")
    stored = stored if isinstance(stored, str) else None
    if weights is not None:
        if "weights" not in params:
            raise FeatinvError(f"'{name}' has no weights; weights={weights!r} does not apply.")
        extractor = get_feature(name, **{**params, "weights": weights})
    else:
        extractor = _build(name, params, stored, label)
    if extractor.params.get("weights") == "random":  # drawn anew each time: tests only
        return extractor
    used = weights_fingerprint(extractor.module) if stored else None
    if stored and used != stored:
        warnings.warn(WeightsMismatch(
            f"{label} was trained on features of weights={params.get('weights')!r} "
            f"({_short(stored)}); these come from weights={extractor.params.get('weights')!r} "
            f"({_short(used)}), so its reconstructions may be poor."), stacklevel=2)
    return extractor
