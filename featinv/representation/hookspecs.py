"""Hook specifications of featinv's plugin system (pluggy project name ``"featinv"``).

A plugin is a module (or object) with functions marked ``@featinv.hookimpl``; third-party
plugins are found through the ``featinv`` entry-point group, built-in representations are
registered the same way. Hook implementations may accept fewer arguments than the spec lists.
This module is a leaf: it imports nothing heavy.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("featinv")
hookimpl = pluggy.HookimplMarker("featinv")


@hookspec
def featinv_register_features(register):
    """Register representations: call ``register(FeatureSpec(...))`` once per representation."""


@hookspec(firstresult=True)
def featinv_build_decoder(spec, layout, image_size, preset, width):
    """Return an ``nn.Module`` decoding ``layout`` features to ``(B, 3, image_size, image_size)``
    images, or ``None`` to leave it to the next implementation.

    ``spec`` is the ``FeatureSpec`` being inverted, ``layout`` its ``Layout`` at the training
    image size, ``preset`` the decoder preset name and ``width`` the width multiplier. The
    built-in generic builder runs last (``trylast``), so any plugin can override it for the layouts
    or representations it knows better.
    """


@hookspec(firstresult=True)
def featinv_resolve_feature(name):
    """Return a ``FeatureSpec`` named ``name`` for a name no plugin registered, or ``None``.

    For families too large to list, e.g. ``timm.<model>.stage<i>`` for every timm model: the
    plugin registers a representative few with ``featinv_register_features`` and builds the rest
    on demand here. The spec's ``name`` must equal ``name``.
    """
