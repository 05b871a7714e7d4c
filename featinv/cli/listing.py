"""What ``featinv list-features``, ``describe`` and ``zoo`` show, cached so that they load no
plugin (and no PyTorch) while nothing they depend on has changed. Those commands are its only
users; it sits beside them.

The cache is two JSON files, ``listing.json`` and ``zoo.json`` (which also records the size and
time of every decoder file it lists and of their folders), in ``$FEATINV_CACHE_DIR`` (else
``$XDG_CACHE_HOME/featinv`` or ``~/.cache/featinv``; ``FEATINV_CACHE_DIR=`` turns it off). They
are keyed by a fingerprint of what the output depends on: Python, the installed packages (the
site-packages folders change whenever one is installed, upgraded or removed), the files of
featinv and of every entry-point plugin, the ``FEATINV_*`` variables and the system's shared
libraries (``LD_LIBRARY_PATH``, ``/etc/ld.so.cache``: backend statuses depend on them). A file
that is stale, corrupt or not featinv's is ignored and rewritten; it is never unpickled.
"""
from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from ..version import __version__
from ..errors import FeatinvError
from ..io.files import read_limited

FORMAT = 1
ENV_CACHE_DIR = "FEATINV_CACHE_DIR"
MAX_SIZES = 8  # image sizes whose layouts are kept
MAX_BYTES = 16 * 1024 * 1024
_SPEC_KEYS = {"name": str, "plugin": str, "description": str, "input": str,
              "differentiable": bool, "params": list, "values": dict, "layout_formula": str,
              "decoder": str}


def cache_path(name: str = "listing.json") -> Path | None:
    """Where ``name`` is cached, or ``None`` when caching is turned off."""
    folder = os.environ.get(ENV_CACHE_DIR)
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "featinv")
    return Path(folder) / name if folder else None


def _stamp(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_mtime_ns, st.st_size]


def _source_files(module: str, limit: int = 1000) -> list[Path]:
    """The files of a top-level module or package (sources and data such as shipped decoders,
    not bytecode), found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        files = [p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts]
        return sorted(files)[:limit]
    return [Path(spec.origin)] if spec.origin and os.path.isfile(spec.origin) else []


def fingerprint() -> str:
    """A hash of everything the listing depends on (see the module's docstring)."""
    plugins = sorted((ep.name, ep.value, getattr(getattr(ep, "dist", None), "version", None))
                     for ep in entry_points(group="featinv"))
    modules = sorted({"featinv"} | {value.split(":")[0].split(".")[0] for _, value, _ in plugins})
    site_dirs = sorted({p for p in sys.path if os.path.basename(p) in ("site-packages",
                                                                       "dist-packages")})
    data = {
        "featinv": __version__, "python": sys.version, "prefix": sys.prefix,
        "plugins": plugins,
        "sources": [_stamp(f) for m in modules for f in _source_files(m)],
        "site": [_stamp(Path(p)) for p in site_dirs],
        "env": sorted((k, v) for k, v in os.environ.items()
                      if k.startswith("FEATINV_") and k != ENV_CACHE_DIR),
        "libs": [os.environ.get("LD_LIBRARY_PATH", ""), _stamp(Path("/etc/ld.so.cache"))],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _valid_listing(data: dict) -> bool:
    features, layouts = data.get("features"), data.get("layouts")
    problems = data.get("problems")
    if not (isinstance(features, dict) and isinstance(layouts, dict)
            and isinstance(problems, list) and all(
                isinstance(p, dict) and isinstance(p.get("name"), str)
                and isinstance(p.get("error"), str) for p in problems)):
        return False
    for name, info in features.items():
        if not (isinstance(info, dict) and info.get("name") == name
                and all(isinstance(info.get(k), t) for k, t in _SPEC_KEYS.items())):
            return False
    return all(isinstance(table, dict) and set(table) == set(features)
               and all(isinstance(v, dict) and (isinstance(v.get("layout"), dict)
                                                or isinstance(v.get("error"), str))
                       for v in table.values())
               for table in layouts.values())


def _read(path: Path, key: str, valid: Callable[[dict], bool]) -> dict | None:
    try:  # a FIFO or a link to /dev/zero there is refused unread, and the cache rewritten
        data = json.loads(read_limited(path, MAX_BYTES, "cache file").decode("utf-8"))
    except (OSError, ValueError, FeatinvError, RecursionError):  # missing, unreadable, not JSON
        return None
    ours = isinstance(data, dict) and data.get("format") == FORMAT and data.get("key") == key
    return data if ours and valid(data) else None


def _write(path: Path, data: dict) -> None:
    """Replace the cache atomically; a cache that cannot be written (a read-only folder, a
    plugin's parameter default that is not JSON) is simply not kept."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        text = json.dumps(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        try:
            tmp.unlink()
        except OSError:
            pass


def _layout_entry(spec, size: int) -> dict:
    try:
        return {"layout": spec.layout_rule()(size, size).to_json()}
    except FeatinvError as exc:  # too small for this representation
        return {"error": str(exc)}


def _live(sizes: set[int], key: str | None) -> dict:
    """The listing computed from the loaded plugins, as it is cached."""
    from ..representation.plugins import plugin_problems
    from ..representation.registry import get_spec, list_features

    features, layouts = {}, {str(s): {} for s in sizes}
    for name in list_features():
        spec = get_spec(name)
        info = spec.to_json(min_size=False)
        try:
            info["min_size"] = spec.layout_rule().smallest_side
        except Exception:  # a plugin's search for its smallest side failed
            info["min_size"] = None
        features[name] = info
        for size in sizes:
            layouts[str(size)][name] = _layout_entry(spec, size)
    return {"format": FORMAT, "key": key, "featinv": __version__, "features": features,
            "layouts": layouts,
            "problems": [{"name": p.name, "error": p.error} for p in plugin_problems()]}


def _in_process_plugins() -> bool:
    """Plugins already loaded or registered in this process: the cache may not reflect them."""
    plugins = sys.modules.get("featinv.representation.plugins")
    return plugins is not None and plugins.loaded_in_process()


def snapshot(image_size: int) -> dict:
    """The cached listing with layouts at ``image_size``, computed and cached when needed."""
    path = cache_path()
    if path is None or _in_process_plugins():
        return _live({image_size}, None)
    key = fingerprint()
    data = _read(path, key, _valid_listing)
    if data is not None and str(image_size) in data["layouts"]:
        return data
    sizes = {image_size} | {int(s) for s in (data or {}).get("layouts", {})}
    fresh = _live(set(sorted(sizes, key=lambda s: s != image_size)[:MAX_SIZES]), key)
    _write(path, fresh)
    return fresh


def rows(pattern: str, image_size: int) -> tuple[list[dict], list[dict]]:
    """``list-features`` rows matching ``pattern`` (a glob; names are lower case) with their
    layout at ``image_size`` (``None`` plus ``layout_error`` when too small), and the plugin
    problems to warn about."""
    data = snapshot(image_size)
    out = []
    for name in sorted(data["features"]):
        if not fnmatch.fnmatchcase(name, pattern.lower()):
            continue
        info = {k: v for k, v in data["features"][name].items() if k != "min_size"}
        entry = data["layouts"][str(image_size)][name]
        info["layout"] = entry.get("layout")
        if "error" in entry:
            info["layout_error"] = entry["error"]
        out.append(info)
    return out, data["problems"]


def describe(name: str, image_size: int, params: dict[str, Any] | None = None) -> dict:
    """What ``featinv describe NAME`` shows: the spec, its smallest side and its layout at
    ``image_size``, for ``params`` over the defaults."""
    if not params:
        data = snapshot(image_size)
        key = name if name in data["features"] else name.lower()
        if key in data["features"]:
            entry = data["layouts"][str(image_size)][key]
            if "error" in entry:
                raise FeatinvError(entry["error"])
            return {**data["features"][key], "layout": entry["layout"]}
    from ..representation.registry import get_spec  # resolved on demand, or other params

    return get_spec(name).to_json(image_size, params=params)


def shipped_names(entries: list[dict]) -> dict[str, list[str]]:
    """Representation -> the names of its shipped decoders (``default`` first, then sorted),
    from ``zoo``'s entries; damaged entries (with an ``error``) are left out."""
    names: dict[str, list[str]] = {}
    for e in entries:
        if "error" not in e and e.get("feature"):
            names.setdefault(e["feature"], []).append(e.get("decoder") or "default")
    return {f: sorted(set(d), key=lambda n: (n != "default", n)) for f, d in names.items()}


def _zoo_stamps(entries: list[dict]) -> list:
    """Size and time of each listed decoder file and of the folders holding them: a plugin that
    ships every file of a folder gains a decoder when a file is added there, which the
    fingerprint (the plugin's module and package files) may not see."""
    files = sorted({e["file"] for e in entries if isinstance(e.get("file"), str)})
    folders = sorted({str(Path(f).parent) for f in files})
    return [_stamp(Path(p)) for p in files + folders]


def _valid_zoo(data: dict) -> bool:
    """Entries as ``describe_meta`` makes them (a damaged cache, with NaN or a string where a
    number belongs, broke 'featinv zoo' with a TypeError and put NaN into 'zoo --json'); a
    damaged one is rebuilt."""
    from ..inversion.zoo import clean_entry

    entries = data.get("entries")
    return isinstance(entries, list) and isinstance(data.get("stamps"), list) and all(
        isinstance(e, dict) and isinstance(e.get("feature"), str)
        and isinstance(e.get("decoder"), str) and clean_entry(e) == e for e in entries)


def zoo(compute: Callable[[], list[dict]] | None = None) -> list[dict]:
    """``featinv zoo``'s entries: the shipped decoders' metadata, as ``compute`` lists them
    (default ``featinv.inversion.shipped.shipped``), cached under the fingerprint and the stamps
    of the listed files and their folders."""
    compute = compute or _shipped
    path = cache_path("zoo.json")
    if path is None or _in_process_plugins():
        return compute()
    key = fingerprint()
    data = _read(path, key, _valid_zoo)
    if data is None or data["stamps"] != json.loads(json.dumps(_zoo_stamps(data["entries"]))):
        entries = compute()
        data = {"format": FORMAT, "key": key, "entries": entries, "stamps": _zoo_stamps(entries)}
        _write(path, data)
    return data["entries"]


def _shipped() -> list[dict]:
    from ..inversion.shipped import shipped

    return shipped()


def layout_text(layout: dict) -> str:
    """A layout's JSON as the listings print it: ``C`` or ``CxHxW``."""
    if layout["kind"] == "vector":
        return str(layout["channels"])
    return f"{layout['channels']}x{layout['height']}x{layout['width']}"
