"""Load trained decoders: ``load_decoder`` (and ``read_decoder``, which leaves the decoder on
the CPU for the caller to place) accepts a checkpoint path or the name of a representation with
a shipped decoder, checks the file against the representation installed, and builds the network
once; ``extractor_for`` gives the representation a decoder was trained on.

Inverting lives in ``featinv.inversion.pipeline`` (``Inverter``, ``invert``), image sizing in
``featinv.inversion.sizing``, the choice of device in ``featinv.inversion.device``. The names
they had here still import from this module (deprecated aliases).
"""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..io import checkpoint
from ..io.checkpoint import ENCODER_PREFIX, decoder_metadata, save_decoder  # noqa: F401 (public here too)
from ..io.tensor_files import DTYPE_CODES
from ..io.weight_checks import MAX_PARAMETER, check_finite, check_magnitudes  # noqa: F401
from ..io.weight_checks import stored_type_error
from ..decoders.networks import Decoder, rebuild_decoder
from ..errors import CheckpointError, FeatinvError, UnknownFeatureError, printable
from ..limits import MAX_SIDE
from ..representation.layout import layout_from_json
from ..representation.registry import get_feature, get_spec
from ..representation.plugins import shipped_decoder
from ..representation.spec import Extractor
from .device import pick_device
from .meta_checks import check_info
from .sizing import default_size, fit_sides, pad_images, prepare, work_size  # noqa: F401
from .zoo import ZOO_DIR  # noqa: F401 (public here too)

STORED_FLOATS = ("F32", "F16")  # a decoder file's floating-point tensors (pack: float16)
# deprecated aliases: these moved to featinv.inversion.pipeline, which imports this module, so
# they are looked up on first use (PEP 562) instead of imported here
_MOVED = {"encode", "decode", "reconstruct", "invert", "Inverter"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(".pipeline", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shipped_decoder_path(name: str, decoder: str | None = None) -> Path | None:
    """The file of the decoder shipped for ``name`` as variant ``decoder`` (default:
    ``"default"``), if any."""
    try:
        return shipped_decoder(name, decoder).file
    except FeatinvError:
        return None


def load_decoder(name_or_checkpoint: str | Path, device: str | torch.device | None = "cpu",
                 feature: str | None = None, decoder: str | None = None,
                 params: dict[str, Any] | None = None) -> Decoder:
    """``read_decoder``, checked as ``invert`` checks it, then moved to ``pick_device(device)``.

    A decoder featinv cannot have trained or built as it is (``decoder_checks.check_decoder``:
    batch-norm counts reset, pictures that do not or hardly depend on the features, feature
    statistics that cannot be its representation's) is refused with a ``CheckpointError``; the
    representation is built for that on the CPU (a warning says when it cannot be, offline)."""
    from .decoder_checks import check_decoder, representation_of

    net = read_decoder(name_or_checkpoint, feature, decoder, params)
    check_decoder(net, name_or_checkpoint, representation_of(net))
    return net.to(pick_device(device))


def read_decoder(name_or_checkpoint: str | Path, feature: str | None = None,
                 decoder: str | None = None, params: dict[str, Any] | None = None) -> Decoder:
    """A trained decoder (eval mode, on the CPU) from a reference
    (``featinv.inversion.sources``): a path (a ``Path``, or text with ``/``, a leading ``.`` or
    a ``.safetensors`` end), a shipped name, ``local-dir:PATH`` or
    ``hf-hub:ORG/NAME[@REVISION]``.

    For a name, ``decoder`` (``--decoder``) picks the variant among the decoders shipped for it
    (``featinv zoo``; default ``"default"``); ``"hog.realistic"`` names the same as
    ``"hog", decoder="realistic"``; a ``decoder`` with a scheme (``hf-hub:...``) loads that
    decoder for the name. A bare name never means a file of the current folder (write ``./hog``).
    The returned decoder's ``meta`` holds the checkpoint's metadata. With ``feature`` (and ``params``), a decoder trained for another representation
    (or with other parameters) is refused, naming both.
    """
    from . import sources

    if sources.has_scheme(decoder):  # load_decoder("hog", decoder="hf-hub:org/name")
        feature = feature or sources.feature_of(name_or_checkpoint, decoder)
        name_or_checkpoint, decoder = decoder, None
    if feature is not None and decoder is None:  # feature="hog.realistic" asks for 'hog'
        feature = sources.split_variant(feature)[0]
    path = sources.decoder_file(name_or_checkpoint, decoder)
    label = sources.describe_ref(name_or_checkpoint) if sources.has_scheme(name_or_checkpoint) \
        else path
    wanted, meta = params, checkpoint.read_meta(path)
    field = "feature"
    try:  # each field checked in turn, so that the message can name the one at fault
        feature_meta = _typed(meta, "feature", dict)
        field = "feature.name"
        name = _typed(feature_meta, "name", str)
        field = "feature.params"
        params = dict(_typed(feature_meta, "params", dict))
        field = "layout"
        stored_layout = layout_from_json(meta["layout"])
        field = "decoder"
        config = dict(_typed(meta, "decoder", dict))
        field = "image_size"
        size = _typed(meta, "image_size", int)
        if not 1 <= size <= MAX_SIDE:
            raise ValueError(size)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        raise CheckpointError(f"{path}: incomplete featinv metadata ('{field}' is missing or "
                              "not what featinv writes); use an intact copy.") from None
    if feature is not None and feature.lower() != name:  # names are lower case
        raise CheckpointError(f"{label} is a decoder for '{name}', not '{feature}'. Pass a "
                              f"checkpoint trained with --feature {feature}.")
    try:
        spec = get_spec(name)
    except UnknownFeatureError:
        plugin = (meta["feature"].get("plugin") if isinstance(meta["feature"], dict) else None)
        raise CheckpointError(f"{path}: a decoder for '{name}', which no installed plugin "
                              f"provides (it was made with plugin '{printable(str(plugin or 'unknown'))[:80]}'); "
                              "install or enable that plugin ('featinv plugins' lists the "
                              "loaded ones).") from None
    if wanted is not None:
        _check_params(label, spec, params, wanted)
    try:
        current = spec.layout_rule(**params)(size, size)
    except FeatinvError as exc:
        raise CheckpointError(f"{path}: its parameters no longer fit '{name}' ({exc}).") from None
    if current != stored_layout:
        raise CheckpointError(f"{path}: trained on '{name}' features of layout {stored_layout}, "
                              f"but '{name}' now gives {current} at {size} px. The checkpoint "
                              "does not match this version of the representation.")
    with torch.device("meta"):  # the network described, without memory: check it first
        net = _rebuild(path, spec, config)
    meta = check_info(path, meta, spec, net.config.get("family"))
    tensors, _ = checkpoint.load(path, check=lambda entries: _check_weights_fit(path, net, entries,
                                                                               meta))
    check_finite(path, tensors)
    check_magnitudes(path, tensors, {name for name, _ in net.named_parameters()})
    net = _materialize(path, spec, config, net)
    encoder_state = {k[len(ENCODER_PREFIX):]: tensors.pop(k) for k in list(tensors)
                     if k.startswith(ENCODER_PREFIX)}
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the decoder it describes ({first}). "
                              "The file was altered or written by an incompatible version.") from None
    if meta.get("encoder") and not encoder_state:
        raise CheckpointError(f"{path}: its metadata says the encoder was fine-tuned, but it "
                              "holds no encoder weights; the file was altered or damaged. Use "
                              "an intact copy.")
    net.meta = meta
    net.encoder_state = encoder_state or None
    return net.eval()


def _materialize(path: Path, spec, config: dict[str, Any], described: Decoder) -> Decoder:
    """The network ``described`` on the meta device given CPU memory (the checkpoint's weights
    fill every parameter and buffer next); built again only when it holds tensors that no
    checkpoint stores (a plugin network's non-persistent buffers)."""
    stored = set(described.state_dict())
    if all(name in stored for name, _ in described.named_buffers()):
        return described.to_empty(device="cpu")
    return _rebuild(path, spec, config)


def _check_params(label, spec, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    """Refuse a decoder trained with other parameters than ``wanted``, naming both."""
    def normal(params: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(spec.resolve_params(params), default=str))

    want = normal(wanted)
    try:
        have = normal(stored)
    except FeatinvError as exc:
        raise CheckpointError(f"{label}: its parameters no longer fit '{spec.name}' ({exc}).") \
            from None
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if differ:
        def text(params):
            return ", ".join(f"{k}={params.get(k)!r}" for k in differ)
        raise CheckpointError(f"{label} is a decoder for '{spec.name}' with {text(have)}, not "
                              f"'{spec.name}' with {text(want)}; pass a decoder trained with "
                              "those parameters.")


def _rebuild(path: Path, spec, config: dict[str, Any]) -> Decoder:
    """``rebuild_decoder``, every failure a ``CheckpointError`` naming the file."""
    try:
        return rebuild_decoder(spec, config)
    except FeatinvError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: its decoder description is invalid ({type(exc).__name__}: "
                              f"{exc}); the file was altered or written by an incompatible "
                              "version.") from None


def _check_weights_fit(path: Path, described: torch.nn.Module, entries: dict[str, Any],
                       meta: dict[str, Any]) -> None:
    """Refuse a checkpoint whose tensors (``entries``: name -> shape and dtype, from its header)
    are not those of the network its metadata describes (``described`` lives on the meta
    device), before any tensor is read or that network takes memory: metadata claiming a wider
    decoder would otherwise allocate gigabytes for a small file, and a tensor the decoder does
    not have (a sparse 4 GB one) gigabytes of address space. ``encoder.`` tensors belong to a
    decoder trained with ``--finetune-encoder``; a file whose training says otherwise has none."""
    state = described.state_dict()
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    have = {k: tuple(e.shape) for k, e in entries.items() if not k.startswith(ENCODER_PREFIX)}
    training = meta.get("training")
    encoder = [k for k in entries if k.startswith(ENCODER_PREFIX)]
    if encoder and isinstance(training, dict) and not training.get("finetune_encoder"):
        raise CheckpointError(f"{printable(path)}: holds tensors the decoder does not have "
                              f"(unexpected {printable(encoder[0])}: an encoder's, but the "
                              "decoder was trained without --finetune-encoder). The file was "
                              "altered or written by an incompatible version.")
    if not encoder and isinstance(training, dict) and training.get("finetune_encoder"):
        raise CheckpointError(f"{printable(path)}: its metadata says the encoder was fine-tuned "
                              "('training.finetune_encoder'), but it holds no encoder weights; "
                              "the file was altered or damaged. Use an intact copy.")
    for name, entry in entries.items():  # featinv writes floats in float32 (packed: float16)
        own = state.get(name)
        if name.startswith(ENCODER_PREFIX):  # a CNN's weights, and its batch-norm counters
            types = (*STORED_FLOATS, "I64")
        elif own is None:  # not the decoder's: refused below
            continue
        else:
            types = STORED_FLOATS if own.is_floating_point() else (DTYPE_CODES.get(own.dtype),)
        if entry.code and entry.code not in types:
            raise stored_type_error(path, name, entry.code, types)
    if wanted == have:
        return
    missing, unexpected = sorted(set(wanted) - set(have)), sorted(set(have) - set(wanted))
    shapes = [k for k in sorted(set(wanted) & set(have)) if wanted[k] != have[k]]
    first = (f"size mismatch for {shapes[0]}: the file has {list(have[shapes[0]])}, the "
             f"description needs {list(wanted[shapes[0]])}" if shapes else
             f"missing {missing[0]}" if missing else f"unexpected {printable(unexpected[0])}")
    parameters = sum(math.prod(s) for s in wanted.values())
    raise CheckpointError(f"{printable(path)}: weights do not fit the decoder it describes "
                          f"({first}; {parameters:,} parameters described, "
                          f"{sum(math.prod(s) for s in have.values()):,} stored). The file was "
                          "altered or written by an incompatible version.")


def extractor_for(decoder: Decoder, weights: str | None = None) -> Extractor:
    """The representation (with the same parameters) a loaded decoder was trained on.

    A decoder trained with a fine-tuned encoder brings the encoder's weights along; they replace
    the representation's own (which are then not downloaded). ``weights``: other network
    weights to compute the features with; a warning says so when they are not the ones the
    decoder was trained against (``featinv.inversion.encoder_weights``).
    """
    from .encoder_weights import encoder_for

    return encoder_for(decoder, weights)


def _typed(meta: dict, key: str, kind: type):
    """``meta[key]``, which must be a ``kind`` (a bool is no int); TypeError otherwise."""
    value = meta[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(key)
    return value
