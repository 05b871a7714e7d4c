"""The rules for the names plugins choose (``featinv.representation.plugins`` applies them).

- A plugin's own name (an entry point's, or ``register_plugin``'s) appears in every message
  about it: one that is not printable text of at most ``NAME_LIMIT`` characters (an entry point
  named with 5 MB of text was printed whole) is not loaded.
- A third-party plugin may not register or resolve a name that extends a built-in
  representation's (``hog.x``): ``invert -f`` reads ``FEATURE.VARIANT`` as a decoder of FEATURE.
- When a name is unknown, the plugins that failed to load or to register their representations
  are named (``failed_hint``): one of them may have provided it.
"""
from __future__ import annotations

from typing import Callable, Iterable

from ..errors import NAME_LIMIT, quoted, type_name

# what a plugin's error starts with when some of its representations may be missing
MISSING = ("failed to load", "not loaded", "error in featinv_register_features")


def name_problem(name: object) -> str:
    """Why ``name`` cannot name a plugin in featinv's messages ("" when it can): it must be
    printable text of at most ``NAME_LIMIT`` characters."""
    if not isinstance(name, str):
        return f"its name is a {type_name(name)}, not text"
    if len(name) > NAME_LIMIT or not name.isprintable() or not name.strip():
        return (f"its name ({len(name)} characters) is not a plugin's name (printable text of "
                f"at most {NAME_LIMIT} characters)")
    return ""


def builtin_above(name: str, builtin_of: Callable[[str], str | None]) -> str:
    """What keeps a third-party plugin from ``name`` when it extends the name of a built-in
    representation (``hog.x``, ``squeezenet.conv1.x``): ``invert -f`` reads ``FEATURE.VARIANT`` as
    a decoder of FEATURE, so a plugin's ``hog.x`` was ``extract``'s and ``describe``'s while
    ``invert -f hog.x`` looked for a decoder of HOG. "" when it extends none.
    ``builtin_of(name)`` is the built-in plugin that registers a name, or None."""
    parts = name.split(".")
    for end in range(1, len(parts)):
        base = ".".join(parts[:end])
        builtin = builtin_of(base)
        if builtin:
            return (f"a name under the built-in representation '{base}' (plugin '{builtin}'), "
                    f"which 'invert -f' reads as a decoder of '{base}'")
    return ""


def failed_hint(infos: Iterable) -> str:
    """For a message about an unknown name: the plugins of ``infos`` (``PluginInfo``) that
    failed to load or to register their representations ("" when none did)."""
    failed = [p.name for p in infos
              if p.error and any(part.startswith(MISSING) for part in p.error.split("; "))]
    if not failed:
        return ""
    names = ", ".join(map(quoted, failed[:3])) + (f" and {len(failed) - 3} more"
                                                  if len(failed) > 3 else "")
    return (f" {'Plugins' if len(failed) > 1 else 'Plugin'} {names} failed to load or to "
            "register its representations; 'featinv plugins' says why.")
