"""``featinv list-features`` says which representations have shipped decoders (read through the
zoo's cache, which sees new decoder files), and ``featinv zoo`` gives each one's validation error."""
from __future__ import annotations

import json
import shutil

import pytest

from featinv.inversion import zoo as builtin_zoo
from featinv.inversion.load import ZOO_DIR
from featinv.cli import listing
from featinv.representation import plugins
from featinv.cli.listing import shipped_names

from helpers import Shipper, run_cli, tiny_layer_decoders


def _listed(capsys, pattern):
    code, out, err = run_cli(capsys, "list-features", pattern, "--json")
    assert code == 0, err
    return {row["name"]: row["shipped_decoders"] for row in json.loads(out)}


def test_list_features_marks_representations_with_shipped_decoders(capsys, extra_plugins,
                                                                   tmp_path):
    # a layer featinv ships no decoder for, from a plugin
    extra_plugins("layerzoo", Shipper(tiny_layer_decoders(tmp_path, ("fire4",), size=32)))
    found = _listed(capsys, "squeezenet.fire*")
    assert found["squeezenet.fire4"] == ["default"] and found["squeezenet.fire2"] == []
    code, out, _ = run_cli(capsys, "list-features", "hog")
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == ["name", "plugin", "input", "layout@128", "diff.", "shipped"]
    assert row.split()[5] == "default,realistic"  # the built-in zoo's two HOG decoders
    code, out, _ = run_cli(capsys, "list-features", "alexnet.conv1")
    assert out.splitlines()[1].split()[5] == "-"


def test_shipped_names_put_the_default_first_and_skip_damaged_entries():
    entries = [{"feature": "hog", "decoder": "realistic"}, {"feature": "hog", "decoder": "default"},
               {"feature": "lbp", "decoder": "default", "error": "damaged"},
               {"feature": "sift", "decoder": "a"}]
    assert shipped_names(entries) == {"hog": ["default", "realistic"], "sift": ["a"]}


def test_cached_listing_sees_a_new_decoder_file(capsys, tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.setenv("FEATINV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(listing, "_in_process_plugins", lambda: False)
    monkeypatch.setattr(builtin_zoo, "ZOO_DIR", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    shutil.copy(ZOO_DIR / "hog.safetensors", tmp_path / "zoo" / "hog.safetensors")
    assert _listed(capsys, "[hl]*") == {"hog": ["default"], "lbp": []}
    shutil.copy(ZOO_DIR / "lbp.safetensors", tmp_path / "zoo" / "lbp.safetensors")
    plugins.reset()
    assert _listed(capsys, "[hl]*") == {"hog": ["default"], "lbp": ["default"]}
    assert json.loads((tmp_path / "cache" / "zoo.json").read_text())["entries"][1]["feature"] \
        == "lbp"


def test_zoo_gives_each_decoder_its_validation_error(capsys):
    code, out, _ = run_cli(capsys, "zoo", "--json")
    entries = [e for e in json.loads(out) if "error" not in e]
    assert code == 0 and entries
    for e in entries:
        assert e["val_normalized_error"] is not None and 0 < e["val_normalized_error"] < 1, e
    code, out, _ = run_cli(capsys, "zoo")
    header = out.splitlines()[0]
    assert "val error" in header
    column = header.index("val error")
    hog = next(line for line in out.splitlines() if line.startswith("hog "))
    assert float(hog[column:].split()[0]) == pytest.approx(
        next(e["val_normalized_error"] for e in entries if e["feature"] == "hog"
             and e["decoder"] == "default"), abs=5e-4)


def test_zoo_names_the_weights_each_decoder_was_trained_against(capsys, extra_plugins, tmp_path):
    # a layer featinv does not ship a decoder for, from a plugin, beside the shipped ones
    extra_plugins("layerzoo", Shipper(tiny_layer_decoders(tmp_path, ("fire4",), size=32)))
    code, out, _ = run_cli(capsys, "zoo", "--json")
    weights = {e["feature"]: e["weights"] for e in json.loads(out) if "error" not in e}
    assert code == 0 and weights["squeezenet.fire4"] == "deepcompression"
    assert weights["squeezenet.conv1"] == "deepcompression"  # shipped with featinv
    assert weights["hog"] is None


def test_zoo_says_how_many_training_images_each_decoder_saw(tmp_path):
    """From the history's images_seen, or steps x batch for runs that logged steps only."""
    from featinv.inversion.zoo import describe_meta

    path = tmp_path / "d.safetensors"
    path.write_bytes(b"x")
    base = {"feature": {"name": "hog"}, "decoder": {"preset": "residual", "width": 0.25}}
    new = {**base, "training": {"batch_size": 32},
           "packed": {"history": [{"step": 10, "images_seen": 320}, {"step": 15625,
                                                                     "images_seen": 500000}]}}
    old = {**base, "training": {"batch_size": 64}, "packed": {"history": [{"step": 3660}]}}
    assert describe_meta(new, path)["images_seen"] == 500000
    assert describe_meta(old, path)["images_seen"] == 3660 * 64
    assert describe_meta({**base, "training": {}}, path)["images_seen"] is None
