"""The example plugin for a user's own network works and passes the contract suite."""
import importlib.util
from pathlib import Path

import pytest

import featinv
from featinv import testing
from featinv.plugins import register_plugin, unregister_plugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_network_plugin.py"


@pytest.fixture
def tinynet(fresh_plugins):
    spec = importlib.util.spec_from_file_location("own_network_plugin", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_plugin(module, "tinynet")
    yield
    unregister_plugin("tinynet")


def test_own_network_layers_are_features(tinynet):
    assert featinv.list_features("tinynet.*") == ["tinynet.block1", "tinynet.block2"]
    ext = featinv.get_feature("tinynet.block2")
    assert ext.layout(128, 128).shape == (32, 32, 32)
    testing.check_all("tinynet.block2")


def test_results_script_measures_shipped_decoders(shared_dir, tmp_path):
    """examples/results.py on 8 val photos: metrics for each decoder, baselines, figures."""
    import json
    import subprocess
    import sys

    val = tmp_path / "val"
    val.mkdir()
    for photo in sorted((shared_dir / "data" / "val").glob("*.jpg"))[:8]:
        (val / photo.name).symlink_to(photo)
    script = EXAMPLE.parent / "results.py"
    done = subprocess.run([sys.executable, str(script), "--val", str(val), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["n_images"] == 8 and set(results["decoders"]) == {"hog", "sift", "lbp"}
    mean = results["baselines"]["mean image"]["normalized_error"]
    for name, r in results["decoders"].items():
        assert r["normalized_error"] < mean, name
    check = results["brightness_hog"]
    assert check["x10"]["change_vs_unscaled"] < 0.05 and check["x0.1"]["change_vs_unscaled"] < 0.05
    for picture in ("fig3_reconstructions", "training_curves", "brightness_hog"):
        assert (tmp_path / "images" / f"{picture}.png").stat().st_size > 10_000
