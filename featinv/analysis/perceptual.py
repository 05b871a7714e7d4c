"""Realism metrics beyond pixel error: feature-space error, a perceptual distance and class
agreement, for images ``x`` (originals) and ``y`` (their reconstructions), both float
``(N, 3, H, W)`` in [0, 1].

- ``feature_error(comparator, x, y)``: ``||Φ(y_i) - Φ(x_i)||² / ||Φ(x_i)||²`` per image for a
  registered representation Φ (the "comparator"); ``(N,)``. The denominator is clamped at 1e-12
  (an image whose features are all zero).
- ``perceptual_distance(probe, x, y)``: an LPIPS-style distance with *unlearned* (equal) weights,
  not LPIPS itself. Both images are resized to 227 px and run through SqueezeNet 1.0
  (featinv's ``squeezenet`` network, ImageNet weights, their input convention); at each layer l
  of ``DEFAULT_LAYERS`` the activation ``a_l (C, h, w)`` is divided by its Euclidean norm over
  channels at every position (``â = a / (||a||_C + 1e-10)``), and

      d(x, y) = 1/L Σ_l 1/(h_l w_l) Σ_{p} ||â_l(x)_p - â_l(y)_p||²

  (each layer's term lies in [0, 4]; 0 for identical images); ``(N,)``.
- ``class_agreement(probe, x, y)``: the fraction of images whose SqueezeNet top-1 class is the
  same for the reconstruction as for the original.

The SqueezeNet weights are a file (``weights=PATH``) or the name of weights shipped with featinv
(``deepcompression``); ``"auto"`` takes ``$FEATINV_PERCEPTUAL_WEIGHTS`` when it is set, else the
ImageNet-trained copy shipped in the package (``featinv/weights``), so it works offline.
Everything runs batched on the probe's (or comparator's) device, with one copy to the host at
the end.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FeatinvError, ShapeError, printable
from ..features.squeezenet import DEFAULT_WEIGHTS, SHIPPED_WEIGHTS

DEFAULT_LAYERS = ("conv1", "fire3", "fire5", "fire7", "fire9")
PROBE_SIZE = 227  # SqueezeNet's input side (Caffe), as featinv.features.squeezenet uses it
WEIGHTS_ENV = "FEATINV_PERCEPTUAL_WEIGHTS"
SHIPPED_FILE = SHIPPED_WEIGHTS[DEFAULT_WEIGHTS][0]
WEIGHTS_NAME = SHIPPED_FILE.name
SEARCH_PATHS = (SHIPPED_FILE,)  # where "auto" looks after the environment variable
EPS = 1e-10


class Probe(nn.Module):
    """A classifier cut into steps, giving activations at some of them and the class scores.

    ``forward``: images ``(B, 3, H, W)`` in [0, 1] -> ``([a_1, ..., a_L], logits)`` with
    ``a_l (B, C_l, h_l, w_l)`` the output of the first ``taps[l]`` modules of ``steps`` and
    ``logits (B, K)`` = ``head`` applied to the output of all of them. Images are first resized to
    ``size x size`` (bilinear, antialiased; ``None``: as given), then ``preprocess``ed.
    """

    def __init__(self, preprocess: nn.Module, steps: nn.Sequential, taps: Sequence[int],
                 head: nn.Module, names: Sequence[str], size: int | None = PROBE_SIZE):
        super().__init__()
        if list(taps) != sorted(set(taps)) or not taps or taps[-1] > len(steps):
            raise ValueError(f"taps {list(taps)} must rise, within 1..{len(steps)}")
        self.preprocess, self.steps, self.head = preprocess, steps, head
        self.taps, self.names, self.size = tuple(taps), tuple(names), size
        self.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters(), torch.zeros(())).device

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        h, acts = self.preprocess(x), []
        for i, step in enumerate(self.steps, 1):
            h = step(h)
            if i in self.taps:
                acts.append(h)
        return acts, self.head(h)


def find_weights(weights: str | Path | None = "auto", source: str = "--perceptual-weights "
                 ) -> Path:
    """The SqueezeNet weight file: ``weights`` itself (a path, or the name of weights shipped
    with featinv), or for ``"auto"``/``None`` the file named by ``$FEATINV_PERCEPTUAL_WEIGHTS``,
    else the first of ``SEARCH_PATHS`` (the shipped copy) that exists.
    A ``FeatinvError`` naming ``source`` (the option, or the variable it came from) and saying
    what is wrong with the path: missing, or no regular file."""
    if weights is not None and str(weights) in SHIPPED_WEIGHTS:
        return find_weights(SHIPPED_WEIGHTS[str(weights)][0])
    if weights is not None and str(weights) != "auto":
        path = Path(weights)
        if not path.is_file():
            what = ("is not a regular file (a FIFO, a device or a folder)" if path.exists()
                    else "no such file")  # /dev/zero was 'no such file'
            other = "unset it" if source.startswith("$") else "auto"
            raise FeatinvError(f"{source}{printable(weights)}: {what}; pass SqueezeNet 1.0 "
                               f"weights (.npz or .safetensors with torchvision's squeezenet1_0 "
                               f"key names), or {other} for those shipped with featinv.")
        return path
    env = os.environ.get(WEIGHTS_ENV)
    if env:  # a bad file there is the variable's, not the option's (which said auto)
        return find_weights(env, f"${WEIGHTS_ENV}=")
    for path in SEARCH_PATHS:
        if path.is_file():
            return path
    raise FeatinvError(f"The perceptual distance and class agreement need SqueezeNet 1.0 "
                       f"ImageNet weights and none were found (no ${WEIGHTS_ENV}, and the copy "
                       f"shipped with featinv, {WEIGHTS_NAME}, is missing: reinstall featinv); "
                       "pass --perceptual-weights PATH "
                       "(a .npz or .safetensors file with torchvision's squeezenet1_0 key "
                       "names), or leave out the perceptual metrics.")


def squeezenet_probe(weights: str | Path | None = "auto", layers: Sequence[str] = DEFAULT_LAYERS,
                     device: str | torch.device | None = None) -> Probe:
    """SqueezeNet 1.0 (featinv's network, the weights' input convention: Caffe's for files named
    ``*caffe*``) as a ``Probe`` tapping ``layers`` (of conv1, fire2 ... fire9) at 227 px."""
    from ..features.cnn import CONVENTIONS, Preprocess
    from ..features.squeezenet import LAYERS, convention_for, full_network

    path = find_weights(weights)
    bad = [name for name in layers if name not in LAYERS or LAYERS[name][1]]
    if bad or not layers:
        raise FeatinvError(f"perceptual layers {list(layers)}: choose among "
                           f"{[k for k, v in LAYERS.items() if not v[1]]}.")
    order = sorted(layers, key=lambda name: LAYERS[name][0])
    net = full_network(str(path))  # checks the file's shapes before reading a tensor
    _check_dtypes(path)
    preprocess = Preprocess(CONVENTIONS[convention_for(str(path), "auto")])
    probe = Probe(preprocess, net.features, [LAYERS[name][0] for name in order],
                  nn.Sequential(net.classifier, nn.Flatten(1)), order)
    probe.weights = str(path)
    probe = probe.to(device or "cpu")
    acts, logits = probe(_test_pictures().to(probe.device))  # before any work
    check_activations(probe, acts, logits)
    check_classes(probe, logits)
    return probe


def _check_dtypes(path: Path) -> None:
    """Refuse a weight file holding integers (loading would cast them, 0.37 to 0, silently)."""
    from ..features.cnn import read_weight_file

    if path == SHIPPED_FILE:
        return
    cast = [(k, v.dtype) for k, v in read_weight_file(path).items() if not v.is_floating_point()]
    if cast:
        raise FeatinvError(f"the perceptual weights {printable(path)} hold {cast[0][1]} values "
                           f"(e.g. {cast[0][0]}) where SqueezeNet has float weights: a cast to "
                           f"integers, which rounds them to nothing. {WEIGHTS_ADVICE}")


def _test_pictures() -> torch.Tensor:
    """Ten fixed, clearly different pictures (a colour ramp, noise, and ``probe_images``: black,
    white, gray, a checker, a gradient, smooth colours, noise) on which a SqueezeNet with weights
    worth the name gives finite activations that vary, and more than one class."""
    from ..inversion.probes import probe_images

    ramp = torch.linspace(0, 1, 64)
    first = torch.stack([ramp.expand(64, 64), ramp[:, None].expand(64, 64),
                         1 - ramp.expand(64, 64)])
    noise = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    return torch.cat([torch.stack([first, noise]), probe_images(64)])


WEIGHTS_ADVICE = ("Use SqueezeNet 1.0 ImageNet weights (--perceptual-weights auto, with "
                  f"${WEIGHTS_ENV} unset, takes those shipped with featinv).")


def check_activations(probe: Probe, acts: Sequence[torch.Tensor], logits: torch.Tensor) -> None:
    """Refuse (``FeatinvError``) weights that give the probe NaN or infinite activations (values
    such as 1e30: the distance would be NaN) or one value everywhere at a layer (all-zero weights:
    every reconstruction would score as perfect)."""
    weights = printable(getattr(probe, "weights", "?"))
    for name, a in (*zip(probe.names, acts), ("classifier", logits)):
        if not bool(torch.isfinite(a).all()):
            raise FeatinvError(f"the perceptual weights {weights} give NaN or infinite SqueezeNet "
                               f"activations ({name}): their values are absurd (such as 1e30), "
                               f"so the perceptual metrics would be NaN. {WEIGHTS_ADVICE}")
        if a.numel() and bool(a.amax() == a.amin()):
            raise FeatinvError(f"the perceptual weights {weights} give one and the same "
                               f"SqueezeNet activation everywhere ({name}): all-zero or damaged "
                               "weights, with which every reconstruction would score as perfect. "
                               f"{WEIGHTS_ADVICE}")


def check_classes(probe: Probe, logits: torch.Tensor) -> None:
    """Refuse weights whose classifier gives all the (clearly different) test pictures one and
    the same top-1 class: its weights zeroed, or so small that its bias alone decides (the shipped
    ImageNet weights give 7 classes to the 10). Every reconstruction would then agree in class
    with its original (class agreement 1.0)."""
    top = logits.argmax(1)
    if len(top) > 1 and bool((top == top[0]).all()):
        raise FeatinvError(f"the perceptual weights {printable(getattr(probe, 'weights', '?'))} "
                           f"give all {len(top)} test pictures (black, white, a checker, noise, "
                           f"...) the same SqueezeNet class ({int(top[0])}): a zeroed or damaged "
                           "classifier, with which every reconstruction would agree in class "
                           f"with its original. {WEIGHTS_ADVICE}")


def unit_normalize(a: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``a (B, C, h, w)`` divided by its Euclidean norm over channels at each position."""
    return a / (a.norm(dim=1, keepdim=True) + eps)


def layer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared difference of unit-normalised activations ``(B, C, h, w)``, summed over channels
    and averaged over positions. Shape: ``(B,)``, each in [0, 4]."""
    return (unit_normalize(a) - unit_normalize(b)).pow(2).sum(1).flatten(1).mean(1)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape != y.shape or x.shape[1] != 3 or not len(x):
        raise ShapeError(f"expected two (N, 3, H, W) batches of one shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def _device_of(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def feature_error(comparator: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  batch_size: int = 32, device: str | torch.device | None = None
                  ) -> torch.Tensor:
    """``||Φ(y_i) - Φ(x_i)||² / max(||Φ(x_i)||², 1e-12)`` per image, Φ = ``comparator`` (an
    extractor), run on ``device`` (default: its parameters' or buffers' device, else the CPU;
    HOG, LBP and SIFT have none). Shape: ``(N,)``, float64 on the CPU."""
    _check_pair(x, y)
    dev, out = torch.device(device) if device else _device_of(comparator), []
    for i in range(0, len(x), batch_size):
        fx = comparator(x[i:i + batch_size].to(dev)).flatten(1).double()
        fy = comparator(y[i:i + batch_size].to(dev)).flatten(1).double()
        out.append((fy - fx).pow(2).sum(1) / fx.pow(2).sum(1).clamp_min(1e-12))
    return torch.cat(out).cpu()


@torch.no_grad()
def perceptual_scores(probe: Probe, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of ``probe`` over originals and reconstructions: the per-layer distances
    ``(N, L)`` (float64; their mean over layers is ``perceptual_distance``) and whether the top-1
    classes agree ``(N,)`` (bool), both on the CPU."""
    _check_pair(x, y)
    dev, dists, agree = probe.device, [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)
        acts, logits = probe(torch.cat([xb, yb]))  # one pass over both halves
        check_activations(probe, acts, logits)
        n = len(xb)
        dists.append(torch.stack([layer_distance(a[:n], a[n:]) for a in acts], 1).double())
        agree.append(logits[:n].argmax(1) == logits[n:].argmax(1))
    return torch.cat(dists).cpu(), torch.cat(agree).cpu()


def perceptual_distance(probe: Probe, x: torch.Tensor, y: torch.Tensor,
                        batch_size: int = 32) -> torch.Tensor:
    """The LPIPS-style distance (unlearned, equal weights) per image. Shape: ``(N,)``."""
    return perceptual_scores(probe, x, y, batch_size)[0].mean(1)


def class_agreement(probe: Probe, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32) -> float:
    """Fraction of images whose top-1 class is the same for ``y`` as for ``x``."""
    return float(perceptual_scores(probe, x, y, batch_size)[1].double().mean())


def realism_metrics(x: torch.Tensor, y: torch.Tensor, comparator: nn.Module | None = None,
                    probe: Probe | None = None, batch_size: int = 32,
                    device: str | torch.device | None = None) -> dict[str, Any]:
    """What ``evaluate`` and ``compare`` report beside the pixel metrics (None where not asked
    for): ``comparator``, ``feature_error`` (the comparator run on ``device``),
    ``perceptual_weights``, ``perceptual_distance``, ``perceptual_layers`` ({layer: mean
    distance}) and ``class_agreement``."""
    out: dict[str, Any] = {"comparator": None, "feature_error": None, "perceptual_weights": None,
                           "perceptual_distance": None, "perceptual_layers": None,
                           "class_agreement": None}
    if comparator is not None:
        out["comparator"] = getattr(comparator, "name", type(comparator).__name__)
        out["feature_error"] = float(feature_error(comparator, x, y, batch_size, device).mean())
    if probe is not None:
        layers, agree = perceptual_scores(probe, x, y, batch_size)
        out["perceptual_weights"] = getattr(probe, "weights", None)
        out["perceptual_distance"] = float(layers.mean())
        out["perceptual_layers"] = {n: float(v) for n, v in zip(probe.names, layers.mean(0))}
        out["class_agreement"] = float(agree.double().mean())
    return out


def resolve_comparator(name: str | None, params: dict[str, Any] | None = None,
                       default: nn.Module | None = None,
                       device: str | torch.device | None = None) -> nn.Module | None:
    """The comparator extractor: ``"auto"`` -> ``default`` (the inverted representation) when it
    is differentiable, else none; ``None``/``"none"`` -> none; a name -> that representation
    with ``params`` (any registered one: measuring needs no gradients)."""
    if name is None or name in ("auto", "none"):
        if params:
            raise FeatinvError("--comparator-param and --comparator-weights need --comparator "
                               "NAME.")
        if name == "auto" and default is not None and default.spec.differentiable:
            return default
        return None
    from ..representation.registry import get_feature

    return get_feature(name, **(params or {})).to(device or "cpu")


def probe_for(weights: str | Path | None, device: str | torch.device | None = None
              ) -> Probe | None:
    """``squeezenet_probe(weights)``, or None for ``None``/``"none"`` (perceptual metrics off)."""
    if weights is None or str(weights) == "none":
        return None
    return squeezenet_probe(weights, device=device)
