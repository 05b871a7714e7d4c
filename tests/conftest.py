"""Shared fixtures: the ../shared data folder beside the repository, small image folders, plugins.

Plain helper functions live in helpers.py."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import featinv.representation.plugins
from helpers import SHARED, link_photos, write_images

# the tests (and the commands they run) cache listings in a folder of their own
os.environ["FEATINV_CACHE_DIR"] = tempfile.mkdtemp(prefix="featinv-test-cache-")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "train").is_dir():
        pytest.skip(f"the shared data folder {SHARED} is not present")
    return SHARED


@pytest.fixture(scope="session")
def train_subset(shared_dir, tmp_path_factory) -> Path:
    return link_photos(shared_dir / "data" / "train", 48, tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="session")
def val_subset(shared_dir, tmp_path_factory) -> Path:
    return link_photos(shared_dir / "data" / "val", 16, tmp_path_factory.mktemp("val"))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    write_images(tmp_path / "images", 12)
    return tmp_path / "images"


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins from scratch for this test and again afterwards."""
    featinv.representation.plugins.reset()
    yield
    featinv.representation.plugins.reset()


@pytest.fixture
def extra_plugins(fresh_plugins):
    """Register plugins for one test: ``extra_plugins(name, plugin)``; all removed afterwards."""
    from featinv.representation.plugins import register_plugin, unregister_plugin

    names = []

    def add(name, plugin):
        names.append(name)
        register_plugin(plugin, name)

    yield add
    for name in names:
        unregister_plugin(name)

