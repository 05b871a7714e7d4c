"""The generic decoder builder, a built-in plugin like the representations.

It answers ``featinv_build_decoder`` last (``trylast``), so any plugin can supply its own network
for the layouts or representations it knows better. Its plugin name is ``"featinv.decoders"``
(``plugins.GENERIC_BUILDER``): the ``builder`` every checkpoint it built records. Loading it
imports no PyTorch.
"""
from __future__ import annotations

from ..choices import PRESETS
from ..representation.hookspecs import hookimpl


@hookimpl(trylast=True)
def featinv_build_decoder(spec, layout, image_size, preset, width):
    """Any layout gets a decoder from one of the four families (or the residual U-Net)."""
    from .networks import build_body, choose_family  # PyTorch: only when a decoder is built

    family = choose_family(spec.decoder_family, layout)
    return build_body(family, layout, image_size, width, PRESETS[preset]["style"],
                      **PRESETS[preset].get("body", {}))
