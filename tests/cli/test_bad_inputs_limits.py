"""Small inputs must not exhaust the machine (issue 16, item 5): work is bounded by the sizes it
would produce, before anything is allocated, and absurd values are refused up front."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import featinv
from featinv.io.checkpoint import META_KEY, decoder_metadata, save_decoder
from featinv.decoders.networks import build_decoder

from helpers import CHILD_MEASURE, run_cli as run, write_images

MB = 1024  # ru_maxrss is in KiB on Linux


@pytest.fixture(scope="module")
def traps(tmp_path_factory):
    """A 1 x 12000 px PNG (about 100 bytes), a checkpoint whose metadata claims width 8, and a
    normal photo."""
    root = tmp_path_factory.mktemp("traps")
    Image.fromarray(np.zeros((1, 12000), np.uint8)).save(root / "strip.png", optimize=True)
    hog = featinv.get_feature("hog")
    decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "compact", 0.125)
    save_decoder(decoder, root / "small.safetensors", decoder_metadata(hog, decoder))
    with safe_open(str(root / "small.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    meta["decoder"]["width"] = 8.0
    save_file(load_file(str(root / "small.safetensors")), str(root / "wide.safetensors"),
              metadata={META_KEY: json.dumps(meta)})
    write_images(root, 1)
    return root


@pytest.mark.slow
def test_tiny_inputs_stay_under_1_gb_and_fail_in_one_line(traps):
    """Each case in one child process, whose peak resident memory is measured."""
    assert (traps / "strip.png").stat().st_size < 200
    assert (traps / "wide.safetensors").stat().st_size < 2_000_000
    cases = [
        ["invert", "-f", "hog", str(traps / "strip.png"), "-o", str(traps / "out1")],
        ["invert", "-f", "hog", str(traps / "strip.png"), "--size", "64", "-o", str(traps / "o2")],
        ["extract", "-f", "hog", str(traps / "strip.png"), "--size", "64",
         "-o", str(traps / "f.npz")],
        ["show-features", "-f", "hog", str(traps / "strip.png"), "--size", "64",
         "-o", str(traps / "s.png")],
        ["invert", "-c", str(traps / "wide.safetensors"), str(traps / "img000.png"),
         "-o", str(traps / "out3")],
    ]
    script = CHILD_MEASURE + f"""
results = []
for args in {cases!r}:
    results.append(run(args))
print(json.dumps({{"results": results, "peak": peak()}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    # invert's default (the image's own size, longer side capped at 1024 px) shrinks the strip
    # to 1 x 1024 px, too small for HOG; --size 64 would enlarge it past the limit
    expected = ["too small"] + ["over the limit of 16 megapixels"] * 3 + ["weights do not fit"]
    for (code, err), message in zip(report["results"], expected):
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert code == 1 and errors and message in errors[0] and "Traceback" not in err, err
    assert report["peak"] < 1024 * MB, f"peak memory {report['peak'] / MB:.0f} MB"


def test_absurd_sizes_are_refused_before_any_work(traps, capsys, tmp_path):
    for args in (["evaluate", "-f", "hog", "--data", traps, "--image-size", 100000],
                 ["invert", "-f", "hog", "skimage:coffee", "--size", 100000, "-o", tmp_path],
                 ["extract", "-f", "hog", "skimage:coffee", "--size", 5000, "-o", tmp_path / "f"],
                 ["show-features", "-f", "hog", "skimage:coffee", "--size", 0, "-o", "x.png"],
                 ["list-features", "--image-size", 100000],
                 ["analyze", "interpolate", "hog", "skimage:coffee", "skimage:coffee",
                  "--steps", 10**6],
                 ["analyze", "sample", "hog", "--data", traps, "--n", 10**6]):
        code, _, err = run(capsys, *args)
        assert code == 2 and "is not in the range" in err, (args, err)
    with pytest.raises(featinv.FeatinvError, match="from 1 to 4096"):
        featinv.evaluate(traps, feature="hog", image_size=100000)
    with pytest.raises(featinv.ImageError, match="over the limit"):
        featinv.invert([traps / "strip.png"], feature="hog", size=128)


def test_evaluate_refuses_more_images_than_memory_holds(traps, monkeypatch):
    module = importlib.import_module("featinv.analysis.evaluate")
    monkeypatch.setattr(module, "memory_bytes", lambda: 1_000_000)  # a 1 MB machine
    with pytest.raises(featinv.DataError, match="over half of this machine's"):
        featinv.evaluate(traps, feature="hog", image_size=128)


def test_an_enlarged_image_is_bounded_but_shrinking_is_not(traps):
    from featinv.io.images import shorter_side_size

    assert shorter_side_size(6000, 4000, 4000) == (6000, 4000)  # large, but not enlarged
    assert shorter_side_size(40, 30, 1024) == (1365, 1024)
    with pytest.raises(featinv.ImageError, match="strip: resizing 12000x1 px"):
        shorter_side_size(12000, 1, 64, "strip")
