"""examples/train_squeezenet_decoders.sh rehearsed at a tiny scale: it trains, packs into ZOO,
skips finished layers when run again, and the packed decoders invert."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, write_images

ROOT = REPO
SCRIPT = ROOT / "examples" / "train_squeezenet_decoders.sh"

pytestmark = pytest.mark.slow


def test_the_script_trains_packs_and_skips_what_is_done(tmp_path):
    write_images(tmp_path / "data" / "train", 8, size=(72, 64))
    write_images(tmp_path / "data" / "val", 4, size=(72, 64), seed=5)
    env = {**os.environ, "LAYERS": "fire9 pool10", "BUDGET": "8", "SIZE": "64",
           "DATA": str(tmp_path / "data"), "RUNS": str(tmp_path / "runs"),
           "ZOO": str(tmp_path / "zoo"), "WIDTHS": "fire9=0.0625",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    (tmp_path / "zoo").mkdir()
    subprocess.run(["bash", str(SCRIPT)], check=True, env=env, cwd=ROOT, capture_output=True)
    packed = sorted(p.name for p in (tmp_path / "zoo").iterdir())
    assert packed == ["squeezenet.fire9.safetensors", "squeezenet.pool10.safetensors"]
    assert (tmp_path / "runs" / "fire9" / "done").exists()
    again = subprocess.run(["bash", str(SCRIPT)], check=True, env=env, cwd=ROOT,
                           capture_output=True, text=True)
    assert "training" not in again.stderr  # both layers were skipped
    from featinv.io import checkpoint

    meta = checkpoint.read_meta(tmp_path / "zoo" / "squeezenet.fire9.safetensors")
    assert meta["packed"]["recipe"].startswith("featinv train -f squeezenet.fire9")
    assert meta["packed"]["recipe"].endswith("--width 0.0625")
    assert meta["decoder"]["width"] == 0.0625  # WIDTHS reached the training
    pool10 = checkpoint.read_meta(tmp_path / "zoo" / "squeezenet.pool10.safetensors")
    assert pool10["decoder"]["width"] == 0.25  # the default for layers WIDTHS does not name
    assert str(tmp_path) not in str(meta)  # no path of the training machine
    out = subprocess.run([sys.executable, "-m", "featinv", "invert", "-c",
                          str(tmp_path / "zoo" / "squeezenet.pool10.safetensors"),
                          str(tmp_path / "data" / "val"), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
