"""Look up representations by name: list them, describe them, build their extractors."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any

import torch

from ..errors import FeatinvError, PluginError, UnknownFeatureError, clipped, type_name
from ..limits import allocation_failure
from .guard import PluginAborted, exception_text, message_text, passes_as_is, plugin_code
from .hookcall import call_first
from .plugin_names import builtin_above, failed_hint
from .plugins import (BUILTIN_PLUGINS, builtin_decoder_names, get_state, load_plugins_hint,
                      note_problem)
from .spec import Extractor, FeatureSpec


def list_features(pattern: str = "*") -> list[str]:
    """Sorted names of the registered representations matching a glob ``pattern`` (names are
    lower case; so is the pattern taken)."""
    return sorted(n for n in get_state().features if fnmatch.fnmatchcase(n, pattern.lower()))


def get_spec(name: str) -> FeatureSpec:
    """The ``FeatureSpec`` registered under ``name``, or under ``name.lower()`` (names are lower
    case, so that match is unique: "HOG" is "hog"); unknown names get a suggestion."""
    state = get_state()
    for key in dict.fromkeys((name, name.lower())):
        if key in state.features:
            return state.features[key]
        if key in state.broken_features:
            raise UnknownFeatureError(state.broken_features[key])
        resolved = _resolve(key)
        if resolved is not None:
            return resolved
    base = name.lower().rpartition(".")[0]
    if base in state.features:  # hog.default, squeezenet.fire5.realistic: a decoder's name
        raise UnknownFeatureError(
            f"'{name}' is no representation; if it names a shipped decoder of '{base}' ('featinv "
            f"zoo'), this option takes the representation: use '{base}'.")
    close = difflib.get_close_matches(name.lower(), list(state.features), n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UnknownFeatureError(
        f"Unknown feature '{name}'.{hint} Run 'featinv list-features' to see them all."
        + load_plugins_hint() + failed_hint(state.plugins.values()))


def get_feature(name: str, **params: Any) -> Extractor:
    """Build the extractor of representation ``name`` with ``params`` over its defaults.

    >>> hog = get_feature("hog")
    >>> hog(torch.rand(2, 3, 128, 128)).shape
    torch.Size([2, 31, 16, 16])
    """
    spec = get_spec(name)
    resolved = spec.resolve_params(params)
    try:
        with plugin_code(f"{name} (plugin {spec.plugin})"):
            module = spec.build(**resolved)
    except PluginAborted as exc:
        raise PluginError(f"{name} (plugin {spec.plugin}) failed to build: "
                          f"{exception_text(exc)}") from exc
    except FeatinvError as exc:
        if passes_as_is(exc):
            raise
        raise PluginError(f"{name} (plugin {spec.plugin}) failed to build: "
                          f"{exception_text(exc)}") from exc
    except (ValueError, TypeError, ArithmeticError) as exc:
        given = spec.changed_params(resolved)
        if given:  # most likely a value the user passed (sift: cell_size=0)
            raise FeatinvError(f"Representation '{name}' does not accept {given} "
                               f"({message_text(exc)}); 'featinv describe {name}' lists its "
                               "parameters.") from exc
        raise PluginError(f"{name} (plugin {spec.plugin}) failed to build: "
                          f"{exception_text(exc)}") from exc
    except Exception as exc:  # a plugin's bug: name the plugin, keep the cause for --debug
        if allocation_failure(exc, message_text(exc)):  # the machine's limit: the documented out-of-memory line
            raise MemoryError(f"{name}: out of memory while building it") from exc
        raise PluginError(f"{name} (plugin {spec.plugin}) failed to build: "
                          f"{exception_text(exc)}") from exc
    if not isinstance(module, torch.nn.Module):
        raise PluginError(f"{name} (plugin {spec.plugin}) built a {type_name(module)}, "
                          "not a torch.nn.Module.")
    return Extractor(spec, resolved, module).eval()


def _resolve(name: str) -> FeatureSpec | None:
    """A spec built on demand by a plugin's ``featinv_resolve_feature`` hook (cached)."""
    state = get_state()
    if name in state.resolved:
        return state.resolved[name]
    if name in builtin_decoder_names():  # hog.realistic: a shipped decoder, no plugin's name
        return None
    try:
        plugin, spec = call_first("featinv_resolve_feature", required=False, name=name)
    except PluginError as exc:  # a plugin's bug
        raise UnknownFeatureError(str(exc)) from exc
    except FeatinvError as exc:  # the plugin knows the family and says what is wrong
        raise UnknownFeatureError(f"Unknown feature '{name}': {message_text(exc)}") from exc
    if spec is None:
        return None
    if not isinstance(spec, FeatureSpec) or spec.name != name:
        got = f"'{clipped(spec.name)}'" if isinstance(spec, FeatureSpec) else f"a {type_name(spec)}"
        raise UnknownFeatureError(f"Plugin '{plugin}' resolved '{name}' to {got}, not a "
                                  f"FeatureSpec named '{name}'.")
    if plugin not in BUILTIN_PLUGINS:  # hog.x: a name under a built-in's stays unresolved
        builtin = {key: s.plugin for key, s in state.features.items() if s.plugin in BUILTIN_PLUGINS}
        taken = builtin_above(name, builtin.get)
        if taken:
            note_problem(plugin, f"resolves '{name}', {taken}; its '{name}' is ignored: rename it")
            return None
    from dataclasses import replace

    spec = replace(spec, plugin=plugin)
    state.resolved[name] = spec
    return spec
