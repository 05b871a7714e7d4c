"""The optimisation baseline (Mahendran & Vedaldi): priors, convergence, CLI and refusals."""
import json

import pytest
import torch

import featinv
from featinv.errors import FeatinvError
from featinv.inversion.optimize import (OptimizeConfig, alpha_norm, invert_by_optimization,
                              optimize_inversion, total_variation)
from helpers import run_cli as run


def test_priors_on_known_images():
    flat = torch.full((1, 1, 8, 8), 0.5)
    assert float(total_variation(flat, 2.0)) < 1e-7
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)  # d/dj = 1, d/di = 0
    torch.testing.assert_close(total_variation(ramp, 2.0), torch.tensor([1.0]), atol=1e-6,
                               rtol=0)
    torch.testing.assert_close(alpha_norm(flat, 6.0), torch.tensor([0.5 ** 6]))


def _photos(val_subset, n=2, size=64):
    from featinv.analysis.evaluate import load_square_images
    return load_square_images(val_subset, size, n)[0]


@pytest.mark.slow
def test_optimisation_matches_the_features_better_than_a_flat_image(val_subset):
    hog = featinv.get_feature("hog")
    x = _photos(val_subset)
    target = hog(x)
    seen = []
    y = optimize_inversion(hog, target, (64, 64), OptimizeConfig(steps=40),
                           progress=lambda step, obj: seen.append((step, obj)))
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y[:, 0], y[:, 1])  # HOG sees gray: the reconstruction is gray
    assert [s for s, _ in seen] == [10, 20, 30, 40]
    assert seen[-1][1] < seen[0][1]

    def mismatch(images):
        return float(((hog(images) - target).flatten(1).norm(dim=1)
                      / target.flatten(1).norm(dim=1)).mean())
    assert mismatch(y) < 0.6 * mismatch(torch.full_like(x, 0.5))


def test_divergence_is_reported_with_what_to_change(val_subset):
    hog = featinv.get_feature("hog")
    with pytest.raises(FeatinvError, match="diverged.*lower the step size"):
        invert_by_optimization(hog, _photos(val_subset), OptimizeConfig(steps=30, lr=1e4))


@pytest.mark.slow
def test_evaluate_optimize_has_the_decoders_json_keys(capsys, val_subset):
    code, out, err = run(capsys, "evaluate", "--method", "optimize", "-f", "hog", "--data",
                         str(val_subset), "--limit", "3", "--steps", "5", "--image-size", "64",
                         "--json")
    assert code == 0, err
    opt = json.loads(out)
    assert "\r" not in err  # progress in logs: plain lines (none for so short a run)
    code, out, _ = run(capsys, "evaluate", "-f", "hog", "--data", str(val_subset), "--limit",
                       "3", "--json")
    dec = json.loads(out)
    assert set(opt) == set(dec)
    assert opt["method"] == "optimize" and dec["method"] == "decoder"
    assert opt["optimize"]["steps"] == 5 and opt["checkpoint"] is None
    assert opt["seconds_per_image"] > 0 and 0 < opt["normalized_error"] < 2


@pytest.mark.parametrize("name", ["lbp", "sift"])
def test_non_differentiable_representations_are_refused_in_one_line(capsys, val_subset, name):
    code, _, err = run(capsys, "evaluate", "--method", "optimize", "-f", name, "--data",
                       str(val_subset), "--limit", "2")
    assert code == 1
    assert err.count("\n") == 1 and "not differentiable" in err and "--method decoder" in err


def test_invert_optimize_writes_a_png_and_refuses_checkpoints(capsys, tmp_path):
    code, out, err = run(capsys, "invert", "--method", "optimize", "-f", "hog", "--steps", "3",
                         "--size", "48", "skimage:coffee", "-o", str(tmp_path / "c.png"),
                         "--side-by-side")
    assert code == 0, err
    assert (tmp_path / "c.png").stat().st_size > 0
    code, _, err = run(capsys, "invert", "--method", "optimize", "-c", "x.safetensors",
                       "skimage:coffee")
    assert code == 1 and "no --checkpoint" in err



def _slow_first_call(fn, monkeypatch, seconds=1000.0):
    """``fn`` whose first call at each batch shape takes ``seconds`` longer (a cold start:
    kernels chosen and memory allocated per shape), on the clock that featinv.analysis.evaluate times
    with (a real sleep would drown in a busy machine's noise); also the shapes it was called at."""
    import importlib
    import time
    from types import SimpleNamespace

    calls, lost = [], [0.0]
    clock = SimpleNamespace(perf_counter=lambda: time.perf_counter() + lost[0])
    monkeypatch.setattr(importlib.import_module("featinv.analysis.evaluate"), "time", clock)

    def wrapped(*args, **kwargs):
        shape = next(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
        if shape not in calls:
            lost[0] += seconds
        calls.append(shape)
        return fn(*args, **kwargs)
    return wrapped, calls


def test_seconds_per_image_leaves_out_warm_up(monkeypatch):
    """run_timed warms up on a batch of the timed shape, untimed: a slow first call is not in
    seconds_per_image (a cold 8-photo evaluate used to report many times the warm figure)."""
    from featinv.analysis.evaluate import run_timed
    from featinv.inversion.methods import Method

    run, calls = _slow_first_call(lambda x: x.clone(), monkeypatch)
    method = Method("decoder", "fake", 32, run, torch.device("cpu"))
    x = torch.rand(8, 3, 16, 16)
    y, seconds = run_timed(method, x, batch_size=32)
    # one untimed warm-up at the timed batch's shape (not a single image's), one timed batch
    assert torch.equal(y, x) and calls == [(8, 3, 16, 16)] * 2
    assert seconds < 10, seconds  # 1000 s / 8 images = 125 s had the warm-up been timed


@pytest.mark.slow
@pytest.mark.parametrize("method", ["decoder", "optimize"])
def test_evaluate_time_excludes_a_slow_first_batch(image_folder, monkeypatch, method):
    """Both methods of ``evaluate``: the first call at the batch's shape (here 1000 s slower) is
    the untimed warm-up."""
    import featinv.inversion.methods
    from featinv.analysis.evaluate import evaluate
    from featinv.inversion.pipeline import Inverter

    owner = Inverter if method == "decoder" else featinv.inversion.methods
    target = "decode" if method == "decoder" else "invert_by_optimization"
    slow, calls = _slow_first_call(getattr(owner, target), monkeypatch)
    monkeypatch.setattr(owner, target, slow)
    result = evaluate(image_folder, feature="hog", method=method, limit=8, image_size=32,
                      optimize=OptimizeConfig(steps=3), comparator="none")
    assert len(calls) == 2 and calls[0] == calls[1] and result["n_images"] == 8
    assert result["seconds_per_image"] < 10, result  # 1000 s / 8 = 125 s if it were timed
