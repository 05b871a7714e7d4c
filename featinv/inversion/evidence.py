"""What a decoder file tells of its training (issue 24, rounds 13 and 14), for the checks that
judge a trained decoder more strictly than an untrained one (``probes``): a trained decoder's
pictures depend on the features, and training always sets its feature statistics.

- Its metadata's ``training`` (training always writes it) and the step its ``metrics`` or
  ``progress`` record. Metadata can be deleted, and copied onto any network (earlier versions
  and the tests write it onto untrained ones).
- The batches its batch-norm layers counted (``num_batches_tracked``), and their running
  statistics, which start at mean 0 and variance 1 and which only training moves. A count does
  not change what the decoder draws, so it can be reset; running statistics that moved beside a
  count of 0 are a count that was reset (``counter_fault``).
- Its weights, in a network featinv builds: initialisation draws every weight of a convolution
  or fully connected layer uniformly within +-1/sqrt(fan_in) (PyTorch's default; a residual
  block's last convolution starts at 0), batch-norm gains at 1 and biases at 0. Training takes
  them beyond that range; a learning rate too small to move them leaves them as drawn
  (``as_initialised``). Weights cannot be made to look untrained again without drawing
  them afresh, which leaves an untrained network.
"""
from __future__ import annotations

import math

import torch
from torch import nn

# a weight lies within INIT_SLACK times its initial range as drawn (float16 rounding: 5e-4); a
# layer whose weights all lie within NEAR_ZERO of it is one that starts at 0
INIT_SLACK, NEAR_ZERO = 1.01, 0.01
# a uniform draw's mean square is a third of its range's square, give or take SPREAD_SIGMAS
# times 0.89/sqrt(n) of it for n weights; batch-norm gains and biases within AFFINE of 1 and 0
SPREAD_SIGMAS, AFFINE = 6.0, 1e-3
# running statistics within MOVED of mean 0 and variance 1 are where they start
MOVED = 1e-3
# a layer (one that does not start at 0) whose weights' root mean square is below SHRUNK times
# that of the uniform draw initialisation makes was scaled down: training leaves the shipped
# decoders' layers at SHRUNK_SEEN and more (SqueezeNet pool10's last; the others 0.7 and more),
# and HOG, SIFT, LBP and SqueezeNet decoders of up to 5000 steps at 0.8 and more. (Adam, without
# weight decay, moves each weight by about the learning rate a step, whatever its gradient.)
SHRUNK, SHRUNK_SEEN = 0.1, 0.4


def _generic(decoder) -> bool:
    from ..representation.plugins import GENERIC_BUILDER

    return decoder.config.get("builder", GENERIC_BUILDER) == GENERIC_BUILDER


def _layers(decoder, skip: set[int] = frozenset()) -> list[tuple[str, torch.Tensor]]:
    """``(name, weight)`` of each convolution and fully connected layer of a network featinv
    builds (none for a plugin's network: how it draws its weights is unknown), but those whose
    ids are in ``skip``."""
    if not _generic(decoder):
        return []
    return [(name, module.weight.detach().float()) for name, module in decoder.named_modules()
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
            and id(module) not in skip and module.weight is not None and module.weight.numel()]


def _norms(decoder) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in decoder.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)]


def init_range(weight: torch.Tensor) -> float:
    """The bound within which initialisation draws ``weight``: 1/sqrt(fan_in), where fan_in is
    its second dimension times its kernel's size (as PyTorch counts it)."""
    return 1.0 / math.sqrt(weight.shape[1] * math.prod(weight.shape[2:]))


def _zero_started(decoder) -> set[int]:
    """The ids of the layers initialisation sets to 0 (a residual block's last convolution)."""
    from ..decoders.networks import ResBlock

    return {id(module.body[-1]) for module in decoder.modules() if isinstance(module, ResBlock)}


def shrunk_layer(decoder) -> tuple[str, float] | None:
    """The first layer of a network featinv builds (one that does not start at 0) whose weights'
    root mean square is below ``SHRUNK`` times that of its initial draw, with that ratio; or
    None. Training does not leave a layer so small; weights scaled down do."""
    zero = _zero_started(decoder)
    for name, weight in _layers(decoder, skip=zero):
        ratio = float(weight.double().pow(2).mean().sqrt()) / (init_range(weight) / math.sqrt(3))
        if ratio < SHRUNK:
            return name, ratio
    return None



def _drawn(weight: torch.Tensor) -> bool:
    """True when ``weight`` looks as initialisation leaves it: all near 0, or within its range
    with the mean square of a uniform draw."""
    bound = init_range(weight)
    largest = float(weight.abs().max())
    if largest <= NEAR_ZERO * bound:
        return True
    spread = float(weight.double().pow(2).mean()) / (bound * bound / 3)
    return largest <= INIT_SLACK * bound and \
        abs(spread - 1) <= max(SPREAD_SIGMAS * 0.89 / math.sqrt(weight.numel()), 0.02)


def as_initialised(decoder) -> bool:
    """True when ``decoder`` is a network featinv builds whose weights (those of its
    convolutions and fully connected layers, its batch-norm gains and biases) look as
    initialisation draws them: untrained, or trained with a learning rate too small to move
    them. Such a network hardly depends on the features (pictures down to 1e-4 of their range
    apart), as untrained ones do."""
    layers = _layers(decoder)
    if not layers or not all(_drawn(w) for _, w in layers):
        return False
    for _, norm in _norms(decoder):
        if norm.affine and (float((norm.weight.detach() - 1).abs().max()) > AFFINE
                            or float(norm.bias.detach().abs().max()) > AFFINE):
            return False
    return True


def _moved(norm: nn.Module) -> float:
    """How far a batch-norm layer's running statistics lie from where they start (0 if it
    keeps none)."""
    if norm.running_mean is None or norm.running_var is None or not norm.running_mean.numel():
        return 0.0
    return max(float(norm.running_mean.detach().abs().max()),
               float((norm.running_var.detach() - 1).abs().max()))


def _counts(decoder) -> list[int]:
    return [int(b) for n, b in decoder.named_buffers()
            if n.endswith("num_batches_tracked") and b.numel() == 1]


def untouched(decoder) -> bool:
    """True when ``decoder`` is a network featinv builds as it built it: weights as initialised
    (``as_initialised``), no batch counted and running statistics where they start. It is
    untrained in effect whatever its metadata says (copied onto it, or a learning rate too small
    to move a weight)."""
    return as_initialised(decoder) and not any(_counts(decoder)) \
        and all(_moved(norm) <= MOVED for _, norm in _norms(decoder))


def counter_fault(decoder) -> str | None:
    """Why the batch counts of ``decoder`` (a network featinv builds) were reset, or None: a
    batch-norm layer that counted no batch but whose running statistics moved from where they
    start, which only training does."""
    if not _generic(decoder):
        return None
    for name, norm in _norms(decoder):
        count = getattr(norm, "num_batches_tracked", None)
        if count is not None and int(count) == 0 and _moved(norm) > MOVED:
            return (f"its batch-norm layer {name} counted no batches (num_batches_tracked 0), yet "
                    "its running statistics moved from where they start (mean 0, variance 1) "
                    f"by up to {_moved(norm):.3g}, which only training does: the count was reset")
    return None



def trained_by(decoder) -> str | None:
    """What says that ``decoder`` was trained by featinv, which always sets its feature
    statistics (words for a message), or None: its metadata's ``training``, the record ``featinv
    train`` writes; never for a network as featinv built it (``untouched``: metadata copied onto
    it). Batches its batch-norm layers counted, running statistics that moved and weights far
    beyond their initial range say only that it was trained, not by whom: a decoder from
    ``build_decoder`` trained in the user's own loop without ``set_feature_stats`` shows them all
    (issue 24, round 15: D2). So a decoder whose ``training`` was deleted is not told from one."""
    if untouched(decoder):
        return None
    meta = getattr(decoder, "meta", None) or {}
    if meta.get("training"):
        return "its metadata says it was trained"
    return None
