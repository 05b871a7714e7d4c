"""Helpers for CNN representations: input conventions, weights, truncated networks, layouts.

**Public and stable**: this is the module plugin authors use for their own networks (with the
``featinv`` root; ``examples/own_network_plugin.py`` imports nothing else from featinv). The
names in ``__all__`` keep their meaning and signatures across minor versions (new optional
arguments may be added); anything else here is internal. The built-in AlexNet, SqueezeNet and
timm layers are written with the same helpers.

A CNN representation is "the output of layer L of network N": the network cut after L's last
processing step, behind the preprocessing its weights expect:
``LayerNet(Preprocess(convention), body)`` maps ``(B, 3, H, W)`` RGB in [0, 1] to float32
``(B, C, h, w)`` (or ``(B, C)``), and ``layer_rule`` (a shape-only pass on the meta device) or
``window_rule`` (the conv/pool arithmetic) gives its layout rule: ``C x h x w`` for every
``H x W``. (``layer_layout`` and ``window_layout`` are their deprecated names.)

Weights (the ``weights`` parameter every CNN representation takes):

- ``"imagenet"``: the library's pretrained weights, through its normal download and cache
  (torchvision: ``$TORCH_HOME/hub/checkpoints``; timm: the Hugging Face cache);
- a name of weights shipped inside featinv's package (``featinv/weights``, with their licence
  and provenance in ``NOTICE.md``), e.g. SqueezeNet's ``"deepcompression"``: no download;
- a path to a ``.safetensors`` or ``.npz`` file with the library's state-dict key names (never a
  pickle);
- ``"random"``: random initialisation, only when asked for explicitly (tests, fine-tuning).

When pretrained weights are neither cached nor downloadable, the error says how to provide them,
within seconds: before a download, ``check_download`` tries to reach the server (or the proxy),
so that no library spends a minute retrying without a network.
"""
from __future__ import annotations

import math
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..deprecation import module_aliases
from ..errors import FeatinvError, param_advice
from ..representation.layout import ComputedGrid, GridLayout, Layout, VectorLayout

__all__ = ["Convention", "CONVENTIONS", "Preprocess", "LayerNet", "load_weights",
           "fetch_pretrained", "check_download", "torch_hub_file", "read_weight_file",
           "layer_rule", "Window", "window_rule"]
__getattr__ = module_aliases(__name__, {"layer_layout": "layer_rule",
                                        "window_layout": "window_rule"})
PROBE_SECONDS = 3.0
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # weights shipped in the package


@dataclass(frozen=True)
class Convention:
    """How a network wants its input: ``(x * scale - mean) / std``, optionally as BGR.

    ``mean`` and ``std`` are per channel in the network's channel order.
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    bgr: bool = False

    def describe(self) -> str:
        order = "BGR" if self.bgr else "RGB"
        scale = f"x{self.scale:g}, " if self.scale != 1 else ""
        return f"{self.name} ({order}, {scale}mean {list(self.mean)}, std {list(self.std)})"


CONVENTIONS = {
    "torchvision": Convention("torchvision", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Caffe models (the paper's AlexNet, SqueezeNet's release): BGR, 0-255, mean subtracted
    "caffe": Convention("caffe", (104.0, 117.0, 123.0), scale=255.0, bgr=True),
}


class Preprocess(nn.Module):
    """``(B, 3, H, W)`` RGB in [0, 1] -> the network's input convention."""

    def __init__(self, convention: Convention):
        super().__init__()
        self.convention = convention
        self.register_buffer("mean", torch.tensor(convention.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(convention.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convention.bgr:
            x = x.flip(1)
        return (x * self.convention.scale - self.mean) / self.std

    def extra_repr(self) -> str:
        return self.convention.describe()


def _last(out: torch.Tensor | list | tuple) -> torch.Tensor:
    """The tensor itself, or the last of a list (timm ``features_only`` models return lists)."""
    return out[-1] if isinstance(out, (list, tuple)) else out


class LayerNet(nn.Module):
    """Preprocessing, then a network cut after one layer: ``(B, 3, H, W)`` RGB in [0, 1] ->
    float32 ``(B, C, h, w)`` or ``(B, C)``.

    ``body`` maps the preprocessed batch to ``(B, C, h, w)`` or ``(B, C)`` (or a list of them,
    whose last is used, like timm's ``features_only`` models). Its parameters are
    the encoder's: frozen while a decoder trains, trained jointly with ``--finetune-encoder``.
    """

    def __init__(self, preprocess: Preprocess, body: nn.Module):
        super().__init__()
        self.preprocess = preprocess
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _last(self.body(self.preprocess(x))).float()


def read_weight_file(path: str | Path, expected: dict[str, Any] | None = None,
                     what: str = "the network") -> dict[str, torch.Tensor]:
    """A state dict (name -> tensor) from ``.safetensors`` or ``.npz`` (``allow_pickle=False``);
    anything else, pickles included, is a ``FeatinvError``.

    The file's names, shapes and sizes are read from its headers first: with ``expected`` (a
    state dict or name -> shape, of ``what``) a file that does not fit is refused before any
    tensor is read, and no file may hold more than the memory budget (``featinv.limits``), so a
    small compressed file cannot expand to gigabytes.
    """
    from ..io.archives import (ArchiveError, check_budget, check_expected, read_npz,
                               safetensors_entries)

    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise FeatinvError(f"weights file {path} is not a regular file (a FIFO, a device or "
                               "a folder); pass a .safetensors or .npz file.")
        raise FeatinvError(f"weights file {path} does not exist.")
    shapes = None if expected is None else {k: tuple(v.shape) if hasattr(v, "shape") else
                                            tuple(v) for k, v in expected.items()}
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from ..io.tensor_files import load_file  # any path, UTF-8 or not

            entries = safetensors_entries(path)
            if shapes is not None:
                check_expected(path, entries, shapes, what)
            check_budget(path, entries, "weights file")
            return load_file(path)
        if suffix == ".npz":
            return {k: torch.from_numpy(np.ascontiguousarray(v))
                    for k, v in read_npz(path, shapes, what).items()}
    except ArchiveError as exc:
        raise FeatinvError(f"cannot read weights from {path}: {exc.reason}") from None
    except FeatinvError:
        raise
    except Exception as exc:  # corrupt or pickled data
        raise FeatinvError(f"cannot read weights from {path}: {exc}") from None
    raise FeatinvError(f"weights file {path} must be .safetensors or .npz (pickled .pth files "
                       "are refused: convert them with safetensors.torch.save_file).")


def load_weights(net: nn.Module, weights: str, pretrained: Callable[[], dict[str, Any]] | None,
                 what: str, shipped: dict[str, Path] | None = None) -> nn.Module:
    """Put ``weights`` (``"imagenet"``, ``"random"``, a name of ``shipped`` or a file path) into
    ``net``; return it.

    ``what`` names the network in errors. A file must hold ``net``'s state-dict keys exactly.
    ``shipped``: weights names -> files that come with the package (read like a file; never
    downloaded).

    ``pretrained()`` returns the library's state dict (downloading or reading its cache) and may
    raise anything; that becomes one clear error saying how to supply the weights.
    """
    shipped = shipped or {}
    if weights == "random":
        return net
    if weights in shipped:
        if not Path(shipped[weights]).is_file():
            raise FeatinvError(f"the weights '{weights}' of {what} should come with featinv at "
                               f"{shipped[weights]}, which is missing: reinstall featinv, or "
                               f"pass a file with {param_advice('weights', 'PATH')}.")
        state = read_weight_file(shipped[weights], net.state_dict(), what)
    elif weights == "imagenet":
        if pretrained is None:
            raise FeatinvError(f"{what} has no pretrained ImageNet weights; pass "
                               f"{param_advice('weights', 'PATH')} or "
                               f"{param_advice('weights', 'random')}.")
        state = fetch_pretrained(pretrained, what, tuple(shipped))
    else:
        state = read_weight_file(weights, net.state_dict(), what)
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise FeatinvError(f"weights {weights} of {what} hold NaN or infinite values (e.g. "
                           f"{bad[0]}); use an intact copy.")
    missing, unexpected = _compare_keys(net, state)
    if missing or unexpected:
        raise FeatinvError(
            f"weights {weights} do not fit {what}: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}).")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise FeatinvError(f"weights {weights} do not fit {what}: "
                           f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return net


def fetch_pretrained(fetch: Callable[[], Any], what: str, shipped: tuple[str, ...] = ()) -> Any:
    """``fetch()`` (a download or cache read by torchvision/timm), with one clear error
    (naming the ``shipped`` weights, which need no download, when there are any)."""
    try:
        return fetch()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = "".join(f"use {param_advice('weights', name)} (shipped with featinv), "
                          for name in shipped)
        raise FeatinvError(
            f"the ImageNet weights of {what} are not cached and could not be downloaded "
            f"({reason[:200]}). Connect to the internet once to cache them, {offline}pass a "
            f"local file with {param_advice('weights', 'PATH')} (.safetensors or .npz), or use "
            f"{param_advice('weights', 'random')} for random weights.") from None


def unreachable(url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the server of ``url`` (or the proxy configured for it) does not accept a connection
    within ``timeout`` seconds, or ``None`` when it does."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    answer: list[str | None] = []

    def probe() -> None:  # in a thread: a name lookup may hang longer than any socket timeout
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(None)
        except OSError as exc:
            answer.append(f"cannot reach {host}: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answer[0] if answer else f"{host} did not answer within {timeout:g} s"


def check_download(url: str) -> None:
    """Raise ``ConnectionError`` at once when the server ``url`` would be downloaded from cannot
    be reached (call it only when the file is not cached)."""
    reason = unreachable(url)
    if reason is not None:
        raise ConnectionError(f"offline? {reason}")


def torch_hub_file(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` (torchvision, timm's URL weights) caches
    ``url``."""
    name = Path(urllib.parse.urlsplit(url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _compare_keys(net: nn.Module, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    own = set(net.state_dict())
    return sorted(own - set(state)), sorted(set(state) - own)


def _run_on_meta(net: nn.Module, height: int, width: int) -> Layout:
    with torch.device("meta"):
        out = _last(net(torch.zeros(1, 3, height, width)))
    shape = tuple(out.shape[1:])
    return GridLayout(*shape) if len(shape) == 3 else VectorLayout(math.prod(shape))


def layer_rule(build_meta: Callable[[], nn.Module], formula: str,
               cache: dict[tuple[int, int], Layout] | None = None) -> ComputedGrid:
    """The layout rule of a network layer, from a shape-only (meta device) forward pass.

    ``build_meta()`` builds the cut network (no weights needed) mapping ``(1, 3, H, W)`` to
    ``(1, C, h, w)`` (a ``GridLayout``) or ``(1, C)`` (a ``VectorLayout``); ``formula`` is the
    text ``describe`` shows; ``cache`` (by ``(H, W)``) may be shared between rules of one layer.
    The smallest accepted side is found by bisection on first use, so that too small images
    get the usual clear error.
    """
    cache = {} if cache is None else cache

    nets: list[nn.Module] = []

    def fn(height: int, width: int) -> Layout:
        key = (height, width)
        if key not in cache:
            if not nets:
                with torch.device("meta"):
                    nets.append(build_meta().eval())
            cache[key] = _run_on_meta(nets[0], height, width)
        return cache[key]

    def works(side: int) -> bool:
        try:
            return min(fn(side, side).shape) >= 1
        except (RuntimeError, ValueError, AssertionError):  # e.g. "output size is too small"
            return False

    def smallest() -> int:
        high = 16
        while not works(high):  # most networks accept 16-64 px; few steps find the bracket
            high *= 2
            if high > 4096:
                raise ValueError(f"{formula}: no layout even at 4096 px")
        low = high // 2 + 1 if high > 16 else 1
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if works(mid) else (mid + 1, high)
        return low

    return ComputedGrid(fn, formula, min_size=smallest)


@dataclass(frozen=True)
class Window:
    """One sliding-window step along each image side (a convolution or pooling layer), with
    PyTorch's output-size rule: ``floor_or_ceil((n + 2 padding - kernel) / stride) + 1``."""

    kernel: int
    stride: int = 1
    padding: int = 0
    ceil: bool = False

    def __call__(self, n: int) -> int:
        span = n + 2 * self.padding - self.kernel
        if not self.ceil:
            return span // self.stride + 1 if span >= 0 else 0
        out = (span + self.stride - 1) // self.stride + 1  # may start past a too small input
        if out > 1 and (out - 1) * self.stride >= n + self.padding:
            out -= 1  # PyTorch: the last window must start inside the input or the left padding
        return max(out, 0)


def _side(n: int, windows: tuple[Window, ...]) -> int:
    for window in windows:
        n = window(n) if n >= 1 else 0
    return n


def window_rule(channels: int, windows: tuple[Window, ...], formula: str,
                vector: bool = False) -> ComputedGrid:
    """The layout rule of a layer from its network's conv/pool arithmetic, without building it.

    ``windows``: every step that changes the side, in order; ``vector=True`` for a layer
    after global pooling or flattening (``channels`` numbers, whatever the size).
    """
    smallest = 1
    while _side(smallest, windows) < 1:
        smallest += 1

    def fn(height: int, width: int) -> Layout:
        if vector:
            return VectorLayout(channels)
        return GridLayout(channels, _side(height, windows), _side(width, windows))

    return ComputedGrid(fn, formula, min_size=smallest)
