"""The plugin manager: built-in and third-party plugins, loaded lazily and guarded.

Plugins load on the first query (``featinv.list_features()`` etc.), never at import. Each plugin
is loaded and called on its own, so one that fails to import, raises in its hook or registers
something invalid is recorded (``plugin_problems()``, ``featinv plugins``) and the others keep
working. ``FEATINV_LOAD_PLUGINS`` (comma-separated entry-point names, empty for none) restricts
which third-party plugins load; built-ins (the representations of ``featinv.features`` and the
generic decoder builder) always load. ``hookcall.call_first`` calls a ``firstresult`` hook and
says which plugin answered, or names the one that failed.
"""
from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from ..errors import CheckpointError, PluginError, clipped, quoted, type_name
from .guard import exception_text, plugin_code
from .plugin_names import builtin_above, name_problem
from .hookspecs import DEFAULT_VARIANT, ShippedDecoder
from .spec import FeatureSpec

ENTRY_POINT_GROUP = "featinv"
ENV_LOAD_PLUGINS = "FEATINV_LOAD_PLUGINS"
# the generic decoder builder (featinv/decoders/builder.py); its name is the ``builder`` recorded
# in every checkpoint it built, so it keeps the name of the module that once held it
GENERIC_BUILDER = "featinv.decoders"
# the built-in representations (featinv/features/), each an ordinary plugin registered through
# the same ``featinv_register_features`` hook as third-party ones; this list is the only place
# that names them (plugin name = module name)
BUILTIN_PLUGINS = (
    "featinv.features.hog",
    "featinv.features.lbp",
    "featinv.features.sift",
    "featinv.features.alexnet",
    "featinv.features.squeezenet",
    "featinv.features.timm_stages",
    "featinv.features.torchvision_nodes",
)
# the decoders shipped in featinv/zoo, through the same ``featinv_shipped_decoders`` hook as
# a plugin's own
BUILTIN_ZOO = "featinv.zoo"
# built-in plugins that register no representation: plugin name -> module
BUILTIN_HOOK_PLUGINS = {GENERIC_BUILDER: "featinv.decoders.builder",
                        BUILTIN_ZOO: "featinv.inversion.zoo"}


@dataclass
class PluginInfo:
    """What ``featinv plugins`` shows for one plugin."""

    name: str
    source: str  # "builtin", "entry point <dist>", or "registered"
    features: list[str] = field(default_factory=list)
    error: str | None = None
    hooks: list[str] = field(default_factory=list)  # the hooks it implements

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "features": self.features,
                "hooks": self.hooks, "error": self.error}


@dataclass
class PluginState:
    """A loaded plugin manager and what came of loading each plugin."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    features: dict[str, FeatureSpec]
    # name -> error message for representations that could not be registered (e.g. duplicates)
    broken_features: dict[str, str]
    # specs built on demand through featinv_resolve_feature, by name
    resolved: dict[str, FeatureSpec] = field(default_factory=dict)
    shipped: ShippedDecoders | None = None  # collected on first use


@dataclass
class ShippedDecoders:
    """What ``featinv_shipped_decoders`` gave: the decoders by ``(feature, variant)``, the pairs
    shipped by more than one plugin (with the error to raise) and the plugins whose hook failed."""

    entries: dict[tuple[str, str], ShippedDecoder]
    broken: dict[tuple[str, str], str]
    problems: dict[str, str]


_lock = threading.RLock()
_state: PluginState | None = None
_extra: list[tuple[str, Any]] = []


def _allowed_entry_points() -> set[str] | None:
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def describe_exception(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message (for a
    ``PluginAborted``, those of the ``SystemExit`` or other exception it stands for)."""
    return exception_text(exc).splitlines()[0]


def _note(info: PluginInfo, error: str) -> None:
    """Add ``error`` to what is wrong with the plugin of ``info`` (once)."""
    if info.error and error in info.error.split("; "):
        return
    info.error = error if not info.error else f"{info.error}; {error}"


def note_problem(plugin: str, error: str) -> None:
    """Record ``error`` against the loaded plugin named ``plugin`` (``featinv plugins``)."""
    info = get_state().plugins.get(plugin)
    if info is not None:
        _note(info, error)


def _load_plugins(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    builtins = {m: m for m in BUILTIN_PLUGINS} | BUILTIN_HOOK_PLUGINS
    for name, module_name in builtins.items():
        _register_guarded(pm, infos, name, "builtin",
                          lambda m=module_name: importlib.import_module(m))
    allowed = _allowed_entry_points()
    installed = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        installed.append(ep.name)
        if allowed is not None and ep.name not in allowed:
            continue
        dist = getattr(ep, "dist", None)  # its name and version are the plugin's to choose
        source = (f"entry point ({clipped(dist.name)} {clipped(dist.version)})" if dist
                  else "entry point")
        _register_guarded(pm, infos, ep.name, source, ep.load)
    for name, plugin in _extra:
        _register_guarded(pm, infos, name, "registered", lambda p=plugin: p)
    for name in sorted((allowed or set()) - set(installed) - set(infos)):  # a typo: unsaid
        infos[name] = PluginInfo(name, f"${ENV_LOAD_PLUGINS}", error=(
            f"named in ${ENV_LOAD_PLUGINS}, but no installed plugin has that name (installed: "
            f"{', '.join(map(clipped, sorted(installed))) or 'none'})"))


def load_plugins_hint() -> str:
    """What ``$FEATINV_LOAD_PLUGINS`` leaves out, for a message about an unknown name ("" when it
    is unset): a representation of a plugin it does not name is unknown."""
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return ""
    missing = [p.name for p in get_state().plugins.values()
               if p.source == f"${ENV_LOAD_PLUGINS}"]
    return (f" ${ENV_LOAD_PLUGINS}={quoted(raw)} limits the plugins that load"
            + (f", and no installed plugin is named {', '.join(map(quoted, missing))}"
               if missing else "") + ".")


def _register_guarded(pm, infos, name, source, load) -> None:
    problem = name_problem(name)
    if problem:  # every message names a plugin by its name: a 5 MB one is not loaded at all
        _note(infos.setdefault(clipped(name), PluginInfo(clipped(name), source)),
              f"not loaded: {problem}")
        return
    if name in infos:
        _note(infos[name], f"a second plugin named {name!r} was ignored")
        return
    info = infos[name] = PluginInfo(name, source)
    try:
        with plugin_code(f"plugin '{name}'"):  # sys.exit at import too
            plugin = load()
            pm.register(plugin, name=name)
        info.hooks = sorted(clipped(caller.name) for caller in pm.get_hookcallers(plugin) or ())
    except Exception as exc:  # a broken plugin must not break the others
        info.error = f"failed to load: {describe_exception(exc)}"


def _collect_features(pm, infos) -> tuple[dict[str, FeatureSpec], dict[str, str]]:
    features: dict[str, FeatureSpec] = {}
    broken: dict[str, str] = {}
    owners: dict[str, list[str]] = {}
    impls = pm.hook.featinv_register_features.get_hookimpls()  # built-ins first (tryfirst too)
    for impl in sorted(impls, key=lambda i: i.plugin_name not in BUILTIN_PLUGINS):
        plugin_name = impl.plugin_name
        info = infos.get(plugin_name) or infos.setdefault(plugin_name, PluginInfo(plugin_name, "registered"))

        def register(spec: FeatureSpec, _plugin=plugin_name) -> None:
            if not isinstance(spec, FeatureSpec):
                raise PluginError(f"register() takes a FeatureSpec, got {type_name(spec)}")
            spec = _with_plugin(spec, _plugin)
            try:
                spec.layout_rule()  # the declared layout must be valid data
            except Exception as exc:
                raise PluginError(f"{spec.name!r} declares an invalid layout: "
                                  f"{describe_exception(exc)}") from exc
            taken = _taken_name(spec.name, _plugin, owners)
            if taken:  # a built-in's name stays the built-in's: the plugin's spec is ignored
                _note(infos[_plugin], f"registers '{spec.name}', {taken}; its '{spec.name}' is "
                                      "ignored: rename it")
                return
            owners.setdefault(spec.name, []).append(_plugin)
            features.setdefault(spec.name, spec)
            infos[_plugin].features.append(spec.name)

        kwargs = {"register": register}
        try:
            with plugin_code(f"plugin '{plugin_name}'"):
                impl.function(*[kwargs[a] for a in impl.argnames])
        except Exception as exc:
            _note(info, f"error in featinv_register_features: {describe_exception(exc)}")
    for name, plugins in owners.items():
        if len(plugins) > 1:
            features.pop(name, None)
            broken[name] = (f"Representation '{name}' is registered by more than one plugin: "
                            f"{', '.join(repr(p) for p in plugins)}. Uninstall one, or restrict "
                            f"plugins with {ENV_LOAD_PLUGINS}.")
            for p in plugins:
                _note(infos[p], f"registers '{name}', as does " + ", ".join(
                    repr(o) for o in plugins if o != p))
    return features, broken


def _taken_name(name: str, plugin: str, owners: dict[str, list[str]]) -> str:
    """What a third-party ``plugin`` may not register ``name`` as ("" when it may): the name of a
    built-in representation (built-ins register first), or of a decoder featinv ships
    (``hog.realistic``: ``invert -f`` means that decoder)."""
    if plugin in BUILTIN_PLUGINS:
        return ""

    def builtin_of(key: str) -> str | None:
        return next((p for p in owners.get(key, ()) if p in BUILTIN_PLUGINS), None)

    builtin = builtin_of(name)
    if builtin:
        return f"the name of a built-in representation (plugin '{builtin}')"
    if "." in name and name in builtin_decoder_names():
        return "the name of a decoder featinv ships ('featinv zoo')"
    return builtin_above(name, builtin_of)


def builtin_decoder_names() -> frozenset[str]:
    """``FEATURE.VARIANT`` of every decoder shipped in featinv/zoo that is not a default one (what
    ``invert -f`` takes as that decoder): names no plugin may register or resolve."""
    global _builtin_decoder_names
    if _builtin_decoder_names is None:
        # the zoo's hook plugin, loaded by name as the plugin manager loads it (this layer does
        # not import the inversion code)
        zoo = importlib.import_module(BUILTIN_HOOK_PLUGINS[BUILTIN_ZOO])
        _builtin_decoder_names = frozenset(e.key for e in zoo.featinv_shipped_decoders()
                                           if e.variant != DEFAULT_VARIANT)
    return _builtin_decoder_names


_builtin_decoder_names: frozenset[str] | None = None


def _collect_shipped(pm, infos) -> ShippedDecoders:
    from dataclasses import replace

    out = ShippedDecoders({}, {}, {})
    owners: dict[tuple[str, str], list[str]] = {}
    for impl in pm.hook.featinv_shipped_decoders.get_hookimpls():
        name = impl.plugin_name
        info = infos.get(name) or infos.setdefault(name, PluginInfo(name, "registered"))
        try:
            with plugin_code(f"plugin '{name}'"):
                entries = list(impl.function())
            bad = [e for e in entries if not isinstance(e, ShippedDecoder)]
            if bad:
                raise PluginError(f"returned a {type_name(bad[0])}, not a ShippedDecoder")
        except Exception as exc:
            out.problems[name] = f"error in featinv_shipped_decoders: {describe_exception(exc)}"
            _note(info, out.problems[name])
            continue
        for entry in entries:
            key = (entry.feature, entry.variant)
            owners.setdefault(key, []).append(name)
            out.entries.setdefault(key, replace(entry, plugin=name))
    for (feature, variant), plugins in owners.items():
        if len(plugins) > 1:
            out.entries.pop((feature, variant), None)
            out.broken[feature, variant] = (
                f"Decoder '{variant}' of '{feature}' is shipped by more than one plugin: "
                f"{', '.join(repr(p) for p in plugins)}. Uninstall one, or restrict plugins "
                f"with {ENV_LOAD_PLUGINS}.")
            for p in dict.fromkeys(plugins):
                _note(infos[p], f"ships decoder '{variant}' of '{feature}', as does " + (
                    ", ".join(repr(o) for o in plugins if o != p) or "itself, twice"))
    return out


def shipped_decoders() -> ShippedDecoders:
    """Every decoder the plugins ship (``featinv_shipped_decoders``), collected once."""
    state = get_state()
    with _lock:
        if state.shipped is None:
            state.shipped = _collect_shipped(state.pm, state.plugins)
        return state.shipped


def shipped_decoder(feature: str, decoder: str | None = None) -> ShippedDecoder:
    """The decoder of variant ``decoder`` (as ``--decoder`` names it; ``"default"`` when None)
    shipped for ``feature``; a one-line ``FeatinvError`` listing the variants that exist for
    ``feature`` otherwise."""
    found, variant = shipped_decoders(), decoder or DEFAULT_VARIANT
    if (feature, variant) in found.broken:
        raise PluginError(found.broken[feature, variant])
    if (feature, variant) in found.entries:
        return found.entries[feature, variant]
    others = sorted(d for f, d in found.entries if f == feature)
    failed = "".join(f" (plugin '{p}' failed: {e})" for p, e in found.problems.items())
    if others:
        raise CheckpointError(f"No decoder '{variant}' is shipped for '{feature}'; its decoders "
                              f"are: {', '.join(others)}.{failed}")
    what = "No shipped decoder" if variant == DEFAULT_VARIANT else f"No decoder '{variant}'"
    raise CheckpointError(f"{what} for '{feature}' yet. Train one with 'featinv train "
                          f"--feature {feature} ...' and pass {_trained_advice()}.{failed}")


def _trained_advice() -> str:
    """How the command running now takes a trained decoder (``train`` has ``--init-from``, not
    ``--checkpoint``; ``pack`` a SOURCE)."""
    from ..errors import command_options

    options = command_options()
    if options is None or "--checkpoint" in options:
        return "it with --checkpoint"
    if "--init-from" in options:
        return "it with --init-from"
    return "the decoder.safetensors it writes"


def _with_plugin(spec: FeatureSpec, plugin: str) -> FeatureSpec:
    from dataclasses import replace

    return spec if spec.plugin == plugin else replace(spec, plugin=plugin)


def get_state() -> PluginState:
    """The loaded plugin state, loading every plugin on the first call."""
    global _state
    with _lock:
        if _state is None:
            pm = pluggy.PluginManager("featinv")
            pm.add_hookspecs(hookspecs)
            infos: dict[str, PluginInfo] = {}
            _load_plugins(pm, infos)
            features, broken = _collect_features(pm, infos)
            _state = PluginState(pm, infos, features, broken)
        return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy ``PluginManager`` with every plugin that loaded."""
    return get_state().pm


def register_plugin(plugin: Any, name: str) -> None:
    """Add a plugin object or module at run time (e.g. in a notebook or a test)."""
    with _lock:
        _extra.append((name, plugin))
        reset()


def unregister_plugin(name: str) -> None:
    """Remove a plugin added with ``register_plugin``."""
    with _lock:
        _extra[:] = [(n, p) for n, p in _extra if n != name]
        reset()


def reset() -> None:
    """Forget loaded plugins, so the next query loads them again (e.g. after changing the env)."""
    global _state, _builtin_decoder_names
    with _lock:
        _state = _builtin_decoder_names = None


def loaded_in_process() -> bool:
    """True once this process has loaded the plugins or registered one with ``register_plugin``
    (what it lists may then differ from a fresh process's)."""
    return _state is not None or bool(_extra)


def plugin_infos() -> list[PluginInfo]:
    """Every plugin, with what it registered and its problems (shipped decoders included)."""
    shipped_decoders()  # a failing featinv_shipped_decoders is a problem of its plugin too
    return list(get_state().plugins.values())


def plugin_problems() -> list[PluginInfo]:
    """Plugins that failed to load or misbehaved, each with its error message."""
    return [p for p in plugin_infos() if p.error]
