"""Generic up-convolutional decoders built from a declared layout (paper, supplementary Tables 3-7).

``build_decoder(spec, layout, image_size, preset)`` asks the ``featinv_build_decoder`` hook; the
generic builder (the built-in plugin in ``featinv.decoders.builder``, made of the networks here)
answers last, so a plugin can supply its own network for a layout. Four families cover every
layout:

- ``two_stream`` (Tables 3, 5; HOG, LBP): stream A compresses the grid until the map is 64x
  smaller than the image and expands it back (global brightness), stream B keeps the grid
  resolution (local detail); both are joined ("J") and up-convolved to the image.
- ``contract_expand`` (Table 4; sparse grids such as SIFT): strided convs down to 64x smaller than
  the image, two convs, then up-convs all the way to the image.
- ``conv_upconv`` (Table 6; CNN conv layers): three 3x3 convs, then 5x5 up-convs.
- ``fc_upconv`` (Table 7; vectors): three FC layers, reshape to 256x4x4, 5x5 up-convs.

Every layer but the last is followed by leaky ReLU (slope 0.2). Up-convolution is a transposed
convolution with stride 2. Channel widths are the paper's, times the preset's width multiplier.

The ``residual`` preset replaces the families for grid layouts with one network that keeps their
two roles (see ``ResidualUNet``): a U-Net over the feature grid whose contracting-expanding path
plays stream A, with skip connections into the full-resolution residual blocks of stream B, then
resize-convolutions (nearest 2x up-sampling + 3x3 conv, no checkerboard artefacts) to the image.
Residual blocks are pre-activation with batch normalisation; their last conv starts at zero, so
each block starts as the identity.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..choices import DECODER_FAMILIES, DEFAULT_PRESET, PRESETS  # noqa: F401 (public here too)
from ..representation.hookcall import call_first
from ..representation.layout import GridLayout, Layout, VectorLayout, layout_from_json, upsampling_factor
from ..representation.plugins import GENERIC_BUILDER

NEG_SLOPE = 0.2


def _act() -> nn.Module:
    return nn.LeakyReLU(NEG_SLOPE, inplace=True)


def conv(cin: int, cout: int, k: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, padding=k // 2)]
    return nn.Sequential(*layers, _act()) if act else nn.Sequential(*layers)


def upconv(cin: int, cout: int, k: int = 4, act: bool = True) -> nn.Sequential:
    """2x up-sampling by a transposed convolution; output side is exactly twice the input's."""
    pad = (k - 1) // 2
    extra = 2 - k + 2 * pad  # output_padding that makes (n-1)*2 - 2*pad + k + extra == 2n
    layers = [nn.ConvTranspose2d(cin, cout, k, 2, padding=pad, output_padding=extra)]
    return nn.Sequential(*layers, _act()) if act else nn.Sequential(*layers)


def _expanding_channels(n: int, top: int) -> list[int]:
    """Channels of ``n`` up-convs ending in RGB: ..., 128, 64, 32, 3 (capped at ``top``)."""
    return [min(32 * 2 ** (n - 2 - i), top) for i in range(n - 1)] + [3]


def _log2(x: float) -> int:
    return max(0, int(round(math.log2(x))))


def _n_down(grid: int, factor: int) -> int:
    """Stride-2 steps of a contracting path: down to a map 64x smaller than the image, at most
    as many as the grid allows, at least one."""
    return max(1, min(_log2(64 / factor), int(math.log2(max(grid, 2)))))


class _Expand(nn.Sequential):
    """A chain of up-convs to RGB; the last one has no activation."""

    def __init__(self, cin: int, n: int, top: int, w, k: int = 4):
        if n == 0:  # the grid is already at image resolution
            super().__init__(conv(cin, 3, 3, act=False))
            return
        chans = _expanding_channels(n, top)
        layers = []
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            layers.append(upconv(cin, c if last else w(c), k, act=not last))
            cin = c if last else w(c)
        super().__init__(*layers)


class TwoStream(nn.Module):
    """Paper Tables 3 and 5. Input ``(B, C, h, w)`` -> ``(B, 3, r*h, r*w)``."""

    def __init__(self, channels: int, grid: int, factor: int, w):
        super().__init__()
        n_down = _n_down(grid, factor)
        a, cin = [], channels
        for i in range(n_down):
            c = w(min(256 * 2 ** i, 1024))
            a.append(conv(cin, c, 5 if i < 2 else 3, stride=2))
            cin = c
        if n_down < 3:
            a.append(conv(cin, w(1024), 3))
            cin = w(1024)
        for i in range(n_down):
            c = w(512 // 2 ** i)
            a.append(upconv(cin, c))
            cin = c
        self.stream_a = nn.Sequential(*a)
        self.stream_b = nn.Sequential(conv(channels, w(128), 5), conv(w(128), w(128), 3))
        self.joint = nn.Sequential(conv(cin + w(128), w(256), 3), conv(w(256), w(128), 3))
        self.expand = _Expand(w(128), _log2(factor), 128, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stream_a(x)
        b = self.stream_b(x)
        if a.shape[-2:] != b.shape[-2:]:  # grids that are not a multiple of 2**n_down: the
            a = a[..., :b.shape[-2], :b.shape[-1]]  # stride-2 convs rounded up; crop (aligned)
        return self.expand(self.joint(torch.cat([a, b], 1)))


class ContractExpand(nn.Module):
    """Paper Table 4 (sparse SIFT grid). Input ``(B, C, h, w)`` -> ``(B, 3, r*h, r*w)``."""

    def __init__(self, channels: int, grid: int, factor: int, w):
        super().__init__()
        n_down = _n_down(grid, factor)
        layers, cin = [], channels
        for i in range(n_down):
            c = w(min(256 * 2 ** i, 2048))
            layers.append(conv(cin, c, 5 if i == 0 else 3, stride=2))
            cin = c
        layers += [conv(cin, cin, 3), conv(cin, max(cin // 2, 1), 3)]
        self.contract = nn.Sequential(*layers)
        self.expand = _Expand(max(cin // 2, 1), n_down + _log2(factor), 512, w)
        self.n_down = n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.expand(self.contract(x))
        # the stride-2 convs round odd sides up, which adds whole cells at the bottom and right
        # edge; crop them so the output is exactly r*h x r*w, pixels aligned with the cells
        r = y.shape[-1] // (-(-w // 2 ** self.n_down) * 2 ** self.n_down)
        return y[..., :r * h, :r * w]


class ConvUpconv(nn.Module):
    """Paper Table 6 (CNN conv layers). Input ``(B, C, h, w)`` -> ``(B, 3, r*h, r*w)``."""

    def __init__(self, channels: int, grid: int, factor: int, w):
        super().__init__()
        c = w(256)
        self.convs = nn.Sequential(conv(channels, c, 3), conv(c, c, 3), conv(c, c, 3))
        self.expand = _Expand(c, _log2(factor), 256, w, k=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.convs(x))


class FcUpconv(nn.Module):
    """Paper Table 7 (vectors). Input ``(B, C)`` -> ``(B, 3, S, S)``, ``S = 4 * 2**floor(log2(
    image_size / 4))``: the image size when it is a power of two, 128 for 227."""

    def __init__(self, channels: int, image_size: int, w):
        super().__init__()
        self.base = w(256)
        hidden = self.base * 16  # reshaped to base x 4 x 4 (paper: 4096 = 256 x 4 x 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), _act(), nn.Linear(hidden, hidden),
                                _act(), nn.Linear(hidden, hidden), _act())
        # the largest power-of-two side not above the image: 128 px for 227 px input, as the
        # paper's FC8 network (Table 7); evaluation resizes it to the input
        self.expand = _Expand(self.base, max(0, int(math.log2(image_size / 4))), 256, w, k=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.fc(x).view(x.shape[0], self.base, 4, 4))


def _norm(c: int) -> nn.Module:
    return nn.BatchNorm2d(c)


class ResBlock(nn.Module):
    """Pre-activation residual block ``x + conv(act(bn(conv(act(bn(x))))))``; ``(B,C,h,w)``."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_norm(c), _act(), nn.Conv2d(c, c, 3, padding=1),
                                  _norm(c), _act(), nn.Conv2d(c, c, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResizeConv(nn.Module):
    """2x nearest up-sampling then a 3x3 conv (+ leaky ReLU): ``(B,Cin,h,w) -> (B,Cout,2h,2w)``."""

    def __init__(self, cin: int, cout: int, act: bool = True):
        super().__init__()
        self.conv = conv(cin, cout, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResidualUNet(nn.Module):
    """The ``residual`` preset for any grid layout: ``(B, C, h, w)`` -> ``(B, 3, 2**n h, 2**n w)``.

    stem -> U-Net over the grid (``levels`` stride-2 stages down to about 2x2 and back up, each
    level added to the way up by a skip) -> ``blocks`` residual blocks at grid resolution ->
    ``n = log2(factor)`` up-sampling stages halving the channels, the last a pixel shuffle to RGB.
    Compute is spent where it is cheap: wide at the coarse levels, thin near the image.
    ``top``: the coarse levels' widest channel count (before ``w``); ``up``: the up-sampling
    path's channels as a multiple of the grid's (1: ``c/2, c/4, ...``, at least 16).
    """

    def __init__(self, channels: int, grid: int, factor: int, w, blocks: int = 2,
                 sparse: bool = False, top: int = 1024, up: float = 1.0):
        super().__init__()
        c = w(256)
        self.factor = factor  # output pixels per input cell
        if sparse:  # mostly-empty cells (SIFT): gather them at half the grid first (as Table 4)
            self.stem = conv(channels, c, 5, stride=2)
            grid, factor = (grid + 1) // 2, factor * 2
        else:
            self.stem = conv(channels, c, 3)
        levels = max(1, min(3, int(math.log2(max(grid, 2))) - 1))
        widths = [c] + [min(c * 2 ** (i + 1), w(top)) for i in range(levels)]
        self.down = nn.ModuleList(
            nn.Sequential(conv(widths[i], widths[i + 1], 3, stride=2), ResBlock(widths[i + 1]))
            for i in range(levels))
        self.middle = ResBlock(widths[-1])
        self.up = nn.ModuleList(nn.Conv2d(widths[i], widths[i - 1], 1)
                                for i in range(levels, 0, -1))
        self.merge = nn.ModuleList(ResBlock(widths[i - 1]) for i in range(levels, 0, -1))
        self.local = nn.Sequential(*[ResBlock(c) for _ in range(blocks)], _norm(c), _act())
        n_up = _log2(factor)
        expand, cin = [], c
        for i in range(max(n_up - 1, 0)):
            cout = max(int(c * up) // 2 ** (i + 1), 16)
            expand.append(ResizeConv(cin, cout))
            cin = cout
        if n_up == 0:
            expand.append(conv(cin, 3, 3, act=False))
        else:  # the last 2x: a conv to 4 x RGB at the lower resolution, then a pixel shuffle
            expand += [conv(cin, 12, 3, act=False), nn.PixelShuffle(2)]
        self.expand = nn.Sequential(*expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.stem(x)
        skips = [x]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        y = self.middle(skips.pop())
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            # sides that are not a multiple of 2**levels: resize to the skip's exact size
            y = merge(skip + up(F.interpolate(y, size=skip.shape[-2:], mode="nearest")))
        # the sparse stem rounds an odd grid up by one cell: crop it, so the output is exactly
        # factor*h x factor*w with the pixels aligned with the cells
        return self.expand(self.local(y))[..., :self.factor * h, :self.factor * w]


def choose_family(requested: str, layout: Layout) -> str:
    """The decoder family for a layout: the representation's choice, else one that fits."""
    kind = "vector" if isinstance(layout, VectorLayout) else "grid"
    if DECODER_FAMILIES.get(requested) == kind:
        return requested
    if kind == "vector":
        return next(f for f, k in DECODER_FAMILIES.items() if k == "vector")
    return "contract_expand" if layout.sparse else "conv_upconv"


# the network of each family in choices.DECODER_FAMILIES (the list of names and layout kinds)
BODIES = {"two_stream": TwoStream, "contract_expand": ContractExpand, "conv_upconv": ConvUpconv,
          "fc_upconv": FcUpconv}


def family_name(spec, layout: Layout, preset: str) -> str:
    """The network the generic builder makes for ``layout`` under ``preset``."""
    if PRESETS[preset]["style"] == "residual" and isinstance(layout, GridLayout):
        return "residual_unet"
    return choose_family(spec.decoder_family, layout)


def width_fn(width: float):
    return lambda c: max(4, int(round(c * width)))


def build_body(family: str, layout: Layout, image_size: int, width: float,
               style: str = "paper", **shape) -> nn.Module:
    """The bare network of one family for ``layout`` and a square output of ``image_size``.

    ``style="residual"``: grid layouts get a ``ResidualUNet`` whatever the family, with the
    preset's ``shape`` (``blocks``, ``top``, ``up``; see there).
    """
    w = width_fn(width)
    if DECODER_FAMILIES[family] == "vector":
        return BODIES[family](layout.channels, image_size, w)
    assert isinstance(layout, GridLayout)
    grid = min(layout.height, layout.width)
    factor = upsampling_factor(layout, image_size)
    if style == "residual":
        return ResidualUNet(layout.channels, grid, factor, w, sparse=layout.sparse, **shape)
    return BODIES[family](layout.channels, grid, factor, w)


class Decoder(nn.Module):
    """Features -> RGB images in [0, 1] (unclamped), around a body network.

    Holds a per-channel feature normalisation (set from training data, see
    ``set_feature_stats``) so features of any scale train well, and resizes the output when asked.

    Shape:
        - Input: ``(B, *layout.shape)``.
        - Output: ``(B, 3, r*h, r*w)`` (grid) or ``(B, 3, S, S)`` (vector); ``(B, 3, *size)`` when
          ``size`` is given.
    """

    def __init__(self, body: nn.Module, layout: Layout, config: dict[str, Any]):
        super().__init__()
        self.body = body
        self.layout = layout
        self.config = dict(config)
        self.register_buffer("feature_mean", torch.zeros(layout.channels))
        self.register_buffer("feature_std", torch.ones(layout.channels))

    def output_factor(self) -> int | None:
        """``r``: the built-in grid networks turn an ``(h, w)`` grid of any size into exactly
        ``(r*h, r*w)`` pixels, cell ``(i, j)`` at pixels ``[r*i, r*(i+1)) x [r*j, r*(j+1))``.
        None for vector layouts and networks built by plugins (their output is resized)."""
        if self.layout.kind != "grid" or self.config.get("builder") != GENERIC_BUILDER:
            return None
        return upsampling_factor(self.layout, int(self.config["image_size"]))

    @torch.no_grad()
    def set_feature_stats(self, features: torch.Tensor) -> None:
        """Per-channel mean and std of a batch of features ``(N, *layout.shape)``. A channel
        (nearly) constant over the batch, such as a ReLU unit no image of it excites, gets a
        std of 1% of the channels' mean std: with 1e-6 a photo that does excite it gave the
        decoder inputs a million times too large, and saturated pictures."""
        dims = [0] + list(range(2, features.ndim))
        std = features.std(dims)
        floor = max(1e-6, 0.01 * float(std.mean())) if std.numel() else 1e-6
        self.feature_mean.copy_(features.mean(dims))
        self.feature_std.copy_(std.clamp_min(floor))

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        shape = (-1,) + (1,) * (features.ndim - 2)
        x = (features - self.feature_mean.view(shape)) / self.feature_std.view(shape)
        y = self.body(x) + 0.5
        if size is not None and tuple(y.shape[-2:]) != tuple(size):
            y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=False)
        return y


def resolve_width(preset: str, width: float | None) -> float:
    from ..errors import FeatinvError

    if preset not in PRESETS:
        raise FeatinvError(f"Unknown decoder preset '{preset}'. Presets: {', '.join(PRESETS)}.")
    return float(width) if width is not None else float(PRESETS[preset]["width"])


def build_decoder(spec, layout: Layout, image_size: int, preset: str = DEFAULT_PRESET,
                  width: float | None = None) -> Decoder:
    """A fresh decoder for ``spec``'s features of ``layout``, producing ``image_size`` images."""
    width = resolve_width(preset, width)
    builder, body = call_first("featinv_build_decoder", spec=spec, layout=layout,
                               image_size=image_size, preset=preset, width=width)
    if not isinstance(body, nn.Module):
        from ..errors import PluginError, type_name

        raise PluginError(f"Plugin '{builder}' returned {type_name(body)} from "
                          "featinv_build_decoder, not an nn.Module.")
    config = {"preset": preset, "width": width, "image_size": image_size,
              "family": family_name(spec, layout, preset) if builder == GENERIC_BUILDER else None,
              "builder": builder, "layout": layout.to_json()}
    return Decoder(body, layout, config)


def rebuild_decoder(spec, config: dict[str, Any]) -> Decoder:
    """The decoder described by a checkpoint's ``config`` (weights not loaded)."""
    from ..errors import CheckpointError
    from ..io.state_checks import shown  # 10**400 in words, not 40 digits that read as 1e39
    layout = layout_from_json(config["layout"])
    width = config["width"]  # compared before float(): 10**400 does not convert
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 8:
        raise ValueError(f"width {shown(width)}")  # --width's range, whatever a file says
    width = float(width)
    decoder = build_decoder(spec, layout, int(config["image_size"]), config["preset"], width)
    wanted = config.get("builder", GENERIC_BUILDER)
    if decoder.config["builder"] != wanted:
        raise CheckpointError(f"This decoder was built by plugin '{wanted}', but plugin "
                              f"'{decoder.config['builder']}' builds it now. Install or enable "
                              f"'{wanted}' (see 'featinv plugins').")
    return decoder
