"""The version is written in one place: featinv/version.py, read by the packaging metadata."""
import importlib.metadata

import pytest

import featinv
from helpers import REPO


def test_the_version_is_written_only_in_the_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "featinv.version.__version__"}
    assert importlib.metadata.version("featinv") == featinv.__version__
