"""The command line: listing, describing, and one-line errors with exit codes."""
import json
import subprocess
import sys

import pytest

from helpers import run_cli as run


def test_list_features_json_shows_hog_layout(capsys):
    code, out, _ = run(capsys, "list-features", "--json", "--image-size", "128")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    hog = rows["hog"]
    assert hog["layout"] == {"kind": "grid", "channels": 31, "height": 16, "width": 16,
                             "sparse": False}
    assert hog["input"] == "gray" and hog["differentiable"] is True
    assert hog["plugin"] == "featinv.features.hog" and hog["description"]


def test_list_features_table_and_pattern(capsys):
    code, out, _ = run(capsys, "list-features", "h*", "--image-size", "64")
    assert code == 0
    assert "hog" in out and "31x8x8" in out and "dct" not in out


def test_describe(capsys):
    code, out, _ = run(capsys, "describe", "hog")
    assert code == 0
    assert "31 x floor((H+4)/8) x floor((W+4)/8)" in out and "cell_size = 8" in out


def test_plugins_json(capsys):
    code, out, _ = run(capsys, "plugins", "--json")
    assert code == 0
    names = {p["name"] for p in json.loads(out)}
    assert "featinv.features.hog" in names


def test_unknown_feature_is_one_line_with_hint(capsys):
    code, out, err = run(capsys, "describe", "hgo")
    assert code == 1
    assert err.strip() == ("Error: Unknown feature 'hgo'. Did you mean 'hog'? Run "
                           "'featinv list-features' to see them all.")
    assert "Traceback" not in err


def test_missing_checkpoint(capsys, tmp_path):
    code, _, err = run(capsys, "invert", "--checkpoint", str(tmp_path / "nope.safetensors"),
                       str(tmp_path / "x.jpg"))
    assert code == 1 and "not found" in err and len(err.strip().splitlines()) == 1


def test_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "train", "--feature", "hog")
    assert code == 2 and "Missing option" in err


@pytest.mark.slow
def test_no_traceback_without_debug_but_with_it(tmp_path):
    cmd = [sys.executable, "-m", "featinv", "evaluate", "--feature", "hog", "--data",
           str(tmp_path / "missing")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.startswith("Error: ")
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
