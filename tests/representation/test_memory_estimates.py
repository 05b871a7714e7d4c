"""A representation's own memory is estimated before it runs (issue 24, defect 4): HOG, LBP,
SIFT and SqueezeNet declare what their forward pass takes (``FeatureSpec.memory``), the
declarations bound the peak measured in a child process, and a batch whose estimate passes the
memory free is refused in one line naming the largest --max-side that fits, before the
representation allocates anything; the rest of a batch is done."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import featinv
import featinv.limits
from featinv.representation.extract import load_features
from featinv.representation.memory import estimate
from featinv.representation.spec import FeatureSpec
from helpers import error_lines, run_cli

MEASURE = """
import json, sys, torch
torch.set_num_threads(1)
import featinv
def peak():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmHWM:"))
ext = featinv.get_feature(sys.argv[1], **json.loads(sys.argv[3]))
side = int(sys.argv[2])
with torch.no_grad():
    ext(torch.rand(1, 3, 96, 96))
    x = torch.rand(1, 3, side, side)
    before = peak()
    ext(x)
print(peak() - before)
"""


def peak_growth(name: str, side: int, **params) -> int:
    """Bytes the peak grew by while ``name`` ran on one ``side x side`` image, in a child."""
    done = subprocess.run([sys.executable, "-c", MEASURE, name, str(side), json.dumps(params)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("name, params", [("hog", {}), ("hog", {"cell_size": 2}), ("lbp", {}),
                                          ("sift", {}), ("squeezenet.fire9", {})])
def test_the_declared_memory_bounds_the_measured_peak(name, params):
    side = 1024
    ext = featinv.get_feature(name, **params)
    declared = estimate(ext.spec.memory, side, side, ext.params)
    measured = peak_growth(name, side, **params)
    assert measured <= declared <= 2 * measured, (measured, declared)


@pytest.fixture
def little_free(monkeypatch):
    """A machine with 100 MB free."""
    monkeypatch.setattr(featinv.limits, "memory_available", lambda: 100 * 10**6)


def test_too_large_is_refused_before_the_representation_runs(little_free, monkeypatch):
    sift = featinv.get_feature("sift")
    monkeypatch.setattr(sift.module, "forward", lambda *a: pytest.fail("ran"))
    with pytest.raises(featinv.FeatinvError) as info:
        sift(torch.zeros(1, 3, 1024, 1024))
    message = str(info.value)
    assert message.startswith("sift: the features of an image of 1024x1024 px (width x height) "
                               "would need about 0.3 GB, more than the 0.1 GB of memory free now; "
                               "use max_side=")  # the API's words (the CLI's: --max-side N)
    side = int(message.split("max_side=")[1].split()[0])
    assert 500 < side < 1024
    assert estimate(sift.spec.memory, side, side, sift.params) <= 100 * 10**6
    assert estimate(sift.spec.memory, side + 1, side + 1, sift.params) > 100 * 10**6
    with pytest.raises(featinv.FeatinvError, match=r"4 images .*\(batch_size\)"):
        sift(torch.zeros(4, 3, 400, 400))


def test_the_estimate_follows_the_parameters(little_free):
    hog = featinv.get_feature("hog")
    hog(torch.rand(1, 3, 640, 640))  # 49 MB at cell 8: not even looked at
    with pytest.raises(featinv.FeatinvError, match="hog: .* 640x640 px .* max_side="):
        featinv.get_feature("hog", cell_size=2)(torch.rand(1, 3, 640, 640))  # 164 MB


def test_the_budget_bounds_it_too(monkeypatch):
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.1")
    with pytest.raises(featinv.FeatinvError, match=r"memory budget of 0\.1 GB \(the "
                                                   r"\$FEATINV_MEMORY_BUDGET of 0\.1 GB\)"):
        featinv.get_feature("lbp", cell_size=2)(torch.zeros(1, 3, 1024, 1024))


def test_a_batch_reports_the_image_and_does_the_rest(little_free, tmp_path, capsys):
    ramp = np.linspace(0, 255, 1024, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(ramp, (1024, 1024))).convert("RGB").save(tmp_path / "big.png")
    Image.fromarray(np.broadcast_to(ramp[::8], (128, 128))).convert("RGB").save(
        tmp_path / "small.png")
    code, _, err = run_cli(capsys, "extract", "-f", "sift", tmp_path / "big.png",
                           tmp_path / "small.png", "-o", tmp_path / "f.npz")
    assert code == 1 and "Traceback" not in err
    (line,) = error_lines(err)
    assert "big.png" in line and "would need about 0.3 GB" in line and "--max-side" in line
    features, meta = load_features(tmp_path / "f.npz")
    assert len(features) == 1 and meta["images"][0]["path"].endswith("small.png")


@pytest.mark.parametrize("memory", [-1, float("nan"), "a lot", True])
def test_a_bad_declaration_is_refused(memory):
    with pytest.raises(ValueError, match="memory must be bytes per input pixel"):
        FeatureSpec(name="x", description="x", input="gray", differentiable=False,
                    build=lambda: None, rule=lambda: None, memory=memory)


def test_a_number_is_bytes_per_pixel_and_none_is_not_checked():
    assert estimate(285, 100, 200, {}) == 285 * 100 * 200
    assert estimate(None, 4096, 4096, {}) is None
