"""Shared fixtures: the ../shared data folder beside the repository, and small image folders."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featinv.representation.plugins

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# the tests (and the commands they run) cache listings in a folder of their own
os.environ["FEATINV_CACHE_DIR"] = tempfile.mkdtemp(prefix="featinv-test-cache-")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "train").is_dir():
        pytest.skip(f"the shared data folder {SHARED} is not present")
    return SHARED


def _link_photos(src: Path, n: int, out: Path) -> Path:
    """A folder of symlinks to the first ``n`` photos of ``src`` (no copies of ../shared)."""
    for photo in sorted(src.glob("*.jpg"))[:n]:
        (out / photo.name).symlink_to(photo)
    return out


@pytest.fixture(scope="session")
def train_subset(shared_dir, tmp_path_factory) -> Path:
    return _link_photos(shared_dir / "data" / "train", 48, tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="session")
def val_subset(shared_dir, tmp_path_factory) -> Path:
    return _link_photos(shared_dir / "data" / "val", 16, tmp_path_factory.mktemp("val"))


def write_images(folder: Path, n: int, size=(48, 40), seed: int = 0) -> list[Path]:
    """Write ``n`` smooth random RGB images as PNG into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = rng.random((4, 4, 3))
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
        paths.append(folder / f"img{i:03d}.png")
        img.save(paths[-1])
    return paths


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


def run_cli(capsys, *args):
    """Run ``featinv ARGS`` in this process; return (exit code, stdout, stderr)."""
    from featinv.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def error_lines(err: str) -> list[str]:
    """The ``Error:`` lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("Error:")]


def saved_step(out) -> int:
    """The step of the training state in run folder ``out`` (-1 before the first checkpoint)."""
    from featinv.io import checkpoint
    from featinv.errors import FeatinvError
    from featinv.training.loop import STATE_FILE

    try:
        return checkpoint.read_meta(Path(out) / STATE_FILE, checkpoint.STATE_FORMAT)["step"]
    except FeatinvError:
        return -1
