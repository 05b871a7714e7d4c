"""Strict JSON for what featinv prints (``--json``) and writes (``audit.json``, ``analyze``'s
JSON): Python's ``json.dumps`` writes a NaN or an infinity as bare ``NaN``/``Infinity``, which
is no JSON, and ``jq``, JavaScript and most other parsers refuse the whole document. Each
non-finite number becomes ``null`` (no value) instead, at any depth."""
from __future__ import annotations

import json
import math
from typing import Any


def finite(data: Any) -> Any:
    """``data`` with every NaN or infinite float (in dicts, lists and tuples, at any depth)
    replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(value) for value in data]
    return data


def dumps(data: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``finite(data)``, checked strict (``allow_nan=False``)."""
    return json.dumps(finite(data), allow_nan=False, **kwargs)
