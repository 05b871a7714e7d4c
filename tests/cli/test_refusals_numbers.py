"""Nonsense is not accepted as a number (issue 24, defect 5): weights with NaN, loss weights and
learning rates that vanish in float32, NaN or infinite analysis settings, integer images read at
the wrong bit depth. Each is refused in one line (or read right), never a black picture with
exit 0."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import featinv
from helpers import REPO, error_lines, run_cli, write_images
from featinv.errors import CheckpointError, FeatinvError, ImageError
from featinv.io.images import load_image
from featinv.training.config import TrainConfig, check_config, parse_losses

SHIPPED = REPO / "featinv" / "zoo" / "hog.safetensors"


def poisoned(path: Path, value: float, which: int = 0) -> Path:
    """The shipped HOG decoder with one weight tensor set to ``value``."""
    with safe_open(str(SHIPPED), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[which]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] = value
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_decoder_with_nan_weights_is_refused(tmp_path, capsys, value):
    bad = poisoned(tmp_path / "bad.safetensors", value, which=3)
    with pytest.raises(CheckpointError, match="NaN or infinite values"):
        featinv.load_decoder(bad)
    for args in (["invert", "-c", bad, "skimage:coffee", "-o", tmp_path / "out"],
                 ["pack", bad, "-o", tmp_path / "packed.safetensors"]):
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and "NaN or infinite" in err and len(error_lines(err)) == 1, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "packed.safetensors").exists()


def test_cnn_weights_with_nan_are_refused(tmp_path):
    from torchvision.models import squeezenet1_0

    state = {k: v.clone() for k, v in squeezenet1_0(weights=None).state_dict().items()}
    state["features.0.bias"][0] = math.nan
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(FeatinvError, match="NaN or infinite"):
        featinv.get_feature("squeezenet.fire2", weights=str(tmp_path / "w.safetensors"))


@pytest.mark.parametrize("text, match", [
    ("pixel=1e-320", "between"), ("pixel=1e-40", "between"), ("pixel=1e40", "between"),
    ("pixel=nan", "positive"), ("pixel=inf", "positive"), ("pixel=-1", "positive"),
    ("pixel,pixel=2", "twice"), ("pixel=1,PIXEL=1", "twice"), ("feature,feature", "twice"),
    ("pixel=1e-30", "every weight is below 0.0001"), ("pixel=1e-9", "every weight is below"),
    ("pixel=1e-5,feature=1e-6", "scale them up"),
])
def test_loss_weights_that_vanish_or_repeat_are_refused(text, match):
    with pytest.raises(FeatinvError, match=match):
        parse_losses(text)


@pytest.mark.parametrize("text", ["pixel=1e-4", "pixel=1,feature=1e-12", "pixel=2e-6,feature=0.01"])
def test_small_loss_weights_beside_a_usable_one_are_accepted(text):
    """Round 13 N2: only a loss whose largest weight sinks the gradients under Adam's eps is
    refused; a tiny term beside a usable one is the user's choice."""
    assert parse_losses(text)


def config(**kw) -> TrainConfig:
    return TrainConfig(**{"feature": "hog", "data": "d", "out": "o", **kw})


@pytest.mark.parametrize("change, match", [
    (dict(lr=1e-320), "^lr"), (dict(lr=1e-12), "^lr"), (dict(disc_lr=1e-300), "^disc_lr"),
    (dict(crop_scale=(1e-300, 1.0)), "^crop_scale"), (dict(crop_scale=(math.nan, 1.0)),
                                                        "^crop_scale"),
    (dict(width=1e-300), "^width"), (dict(memory_budget=math.inf), "^memory_budget"),
    (dict(memory_budget=math.nan), "^memory_budget"), (dict(seed=-1), "^seed"),
    (dict(seed=10**30), "^seed"),
    (dict(comparator="nosuch"), "^comparator is for the feature loss"),
    (dict(comparator_weights="w.npz"), "^comparator_weights is for the feature loss"),
    (dict(disc_conditional=True), "^disc_conditional is for the adversarial loss"),
    (dict(disc_width=1e9), "^disc_width"), (dict(disc_width=1e-300), "^disc_width"),
    (dict(disc_width=math.nan), "^disc_width"), (dict(preview=-1), "^preview"),
    # round 7: --disc-lr 1e39 was 'RuntimeError: value cannot be converted to type float without
    # overflow'; --memory-budget 1e-320 passed although $FEATINV_MEMORY_BUDGET refuses it
    (dict(disc_lr=1e39), "^disc_lr=.* beyond float32"), (dict(lr=1e300), "^lr=.* beyond"),
    (dict(memory_budget=1e-320), "^memory_budget"),
])
def test_training_numbers_that_cannot_train_are_refused_up_front(change, match):
    with pytest.raises(FeatinvError, match=match):
        check_config(config(**change))


def test_threads_and_workers_follow_the_cores_this_process_may_use(monkeypatch):
    """Round 6: --threads 1000000 crashed torch (segfault or 'can't start new thread'), and the
    default 2 loader processes under taskset with one CPU made PyTorch warn about them."""
    from featinv.training.distributed import World
    from featinv.training.resolve import resolve_defaults

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    cpu, world = torch.device("cpu"), World()
    with pytest.raises(FeatinvError, match="--threads 1000000 is more than the 1 CPU core"):
        resolve_defaults(config(threads=10**6), cpu, world)
    resolved = resolve_defaults(config(workers=100000), cpu, world)
    assert resolved.workers == 1 and resolved.threads == 1
    assert resolve_defaults(config(workers=0), cpu, world).workers == 0


def test_a_warmup_longer_than_the_run_is_refused(tmp_path, capsys):
    """Round 6: --warmup 10**21 trained at a learning rate of 5e-24 and exited 0."""
    write_images(tmp_path / "data", 8)
    args = ["train", "-f", "hog", "--data", tmp_path / "data", "--image-size", "32",
            "--batch-size", "4", "--budget", "16", "--workers", "0", "--device", "cpu"]
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "run", "--warmup", str(10**21))
    assert code == 1 and "--warmup 1000000000000000000000 is longer than the run (4 steps)" \
        in err and len(error_lines(err)) == 1, err
    assert not (tmp_path / "run" / "decoder.safetensors").exists()


def test_sensible_small_values_still_pass():
    check_config(config(lr=1e-6, loss="pixel=1e-3,feature=1e-4", comparator="hog",
                        crop_scale=(0.1, 1.0), width=0.05))


def test_a_misspelled_comparator_is_refused_on_the_command_line(tmp_path, capsys):
    write_images(tmp_path / "data", 4)
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", tmp_path / "data", "--out",
                           tmp_path / "run", "--comparator", "nosuch")
    assert code == 1 and "--comparator is for the feature loss" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [
    ["unit", "hog", "-u", "3", "--value", "nan"], ["unit", "hog", "-u", "3", "--value", "inf"],
    ["unit", "hog", "-u", "3", "--value", "-inf"], ["unit", "hog", "-u", "3", "--value", "1e300"],
    ["sample", "hog", "--data", "DATA", "--contrast", "nan"],
    ["sample", "hog", "--data", "DATA", "--contrast", "inf"],
    ["sample", "hog", "--data", "DATA", "--contrast", "0"],
    ["sample", "hog", "--data", "DATA", "--contrast", "-2"],
    ["sample", "hog", "--data", "DATA", "--seed", "-1"],
    ["sample", "hog", "--data", "DATA", "--contrast", "1e-320"],  # round 6: "above 0"
    ["unit", "hog", "-u", "3", "--value", "1e-320"],  # round 13 N10: 0 in float32
    ["unit", "hog", "-u", "3", "--value", "-1e-40"],
    ["unit", "hog", "-u", "3", "-u", "1", "-u", "3"],  # round 13 N10: the same picture twice
])
def test_analysis_settings_that_give_black_pictures_are_refused(tmp_path, capsys, args):
    write_images(tmp_path / "data", 4)
    args = [str(tmp_path / "data") if a == "DATA" else a for a in args]
    code, _, err = run_cli(capsys, "analyze", *args, "-o", tmp_path / "x.png")
    assert code == 2 and "Traceback" not in err, err
    assert not (tmp_path / "x.png").exists()


def test_the_python_api_refuses_them_too():
    from featinv.analysis.analyses import FeatureSampler, unit_features

    decoder = featinv.load_decoder("hog")
    for value in (math.nan, math.inf, 1e300):
        with pytest.raises(FeatinvError, match="--value"):
            unit_features(decoder, 3, value)
    sampler = FeatureSampler(torch.rand(16, 31, 4, 4))
    for contrast in (math.nan, math.inf, 0.0, -1.0, 1e-320):
        with pytest.raises(FeatinvError, match="--contrast"):
            sampler.histogram(2, contrast)
        with pytest.raises(FeatinvError, match="--contrast"):
            sampler.gaussian(2, contrast)


@pytest.mark.parametrize("args", [
    ["audit", "-f", "hog", "--data", "DATA", "--bootstrap", str(10**11)],
    ["audit", "-f", "hog", "--data", "DATA", "--seed", str(10**23)],
    ["analyze", "perturb", "hog", "--data", "DATA", "--seed", str(10**23)],
    ["analyze", "perturb", "hog", "--data", "DATA", "--seed", "-1"],
])
def test_seeds_and_bootstrap_samples_beyond_their_range_are_refused(tmp_path, capsys, args):
    """Round 6: --bootstrap 10**11 asked for 3.2 TB after the whole audit had run, and a seed of
    10**23 was 'ValueError: Overflow when unpacking long long'; both now fail before any work."""
    write_images(tmp_path / "data", 4)
    args = [str(tmp_path / "data") if a == "DATA" else a for a in args]
    code, _, err = run_cli(capsys, *args, "-o", tmp_path / "out")
    assert code == 2 and "is not in the range" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_the_bootstrap_is_bounded_and_drawn_in_chunks_from_the_python_api_too():
    from featinv.analysis.reidentify import bootstrap_interval

    ranks = torch.randint(1, 20, (5000,), generator=torch.Generator().manual_seed(1))
    with pytest.raises(FeatinvError, match="--bootstrap"):
        bootstrap_interval(ranks, 1, samples=10**11)
    # 1000 samples of a 5000-photo gallery come in two chunks, the draws of one call
    gen = torch.Generator().manual_seed(0)
    rates = (ranks <= 1).double()[torch.randint(5000, (1000, 5000), generator=gen)].mean(1)
    one_call = torch.quantile(rates, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    assert list(bootstrap_interval(ranks, 1, samples=1000)) == one_call
    lo, hi = bootstrap_interval(ranks[:50], 1, samples=100_000)
    assert 0 <= lo < hi <= 1


@pytest.mark.parametrize("top", [255, 65535, 2**31 - 1])
def test_integer_images_are_read_at_their_bit_depth(tmp_path, top):
    """32-bit integer TIFFs (and 8/16-bit values stored in them) are rescaled by the range
    their values use: a gradient stays a gradient, not almost pure white."""
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    Image.fromarray((ramp * top).astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    x = load_image(tmp_path / "i.tif")
    assert abs(float(x.mean()) - 0.5) < 0.01 and float(x.max()) == 1.0


def test_negative_integer_images_are_refused(tmp_path):
    ramp = np.linspace(-1, 1, 64 * 64).reshape(64, 64)
    Image.fromarray((ramp * 2**30).astype(np.int32)).save(tmp_path / "n.tif")
    with pytest.raises(ImageError, match="negative values"):
        load_image(tmp_path / "n.tif")


@pytest.mark.slow
def test_a_training_state_with_nan_is_refused(tmp_path):
    from featinv.training.loop import STATE_FILE, train

    write_images(tmp_path / "data", 8)
    cfg = dict(feature="hog", data=str(tmp_path / "data"), out=str(tmp_path / "run"),
               image_size=16, epochs=1, batch_size=4, workers=0, device="cpu")
    train(TrainConfig(**cfg), log=lambda m: None)
    path = tmp_path / "run" / STATE_FILE
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    key = next(k for k in sorted(tensors) if k.startswith("opt.") and tensors[k].numel() > 1)
    tensors[key] = torch.full_like(tensors[key], math.nan)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        train(TrainConfig(**{**cfg, "epochs": 2}), resume=True, log=lambda m: None)


@pytest.mark.parametrize("step", ["1e-320", "1e-40", "1e-12"])
def test_a_step_size_that_vanishes_in_float32_is_refused(tmp_path, capsys, step):
    """--method optimize --step-size 1e-320 returned the random start (a flat grey picture)
    with exit 0, as --lr 1e-320 trained nothing."""
    code, _, err = run_cli(capsys, "invert", "-f", "hog", "skimage:coffee", "--method",
                           "optimize", "--steps", "2", "--step-size", step, "-o",
                           tmp_path / "x.png")
    [line] = error_lines(err)
    assert code == 1 and "--step-size" in line and "too small" in line, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["invert", "evaluate"])
@pytest.mark.parametrize("option", ["--step-size", "--lambda-tv", "--lambda-alpha"])
def test_optimisation_weights_beyond_float32_are_refused(tmp_path, capsys, command, option):
    """Round 6: --step-size 1e300 was 'RuntimeError: value cannot be converted to type float
    without overflow' through the generic wrapper (evaluate), or a per-image failure."""
    write_images(tmp_path / "data", 4)
    where = (["skimage:coffee", "-o", tmp_path / "x.png"] if command == "invert"
             else ["--data", tmp_path / "data"])
    code, _, err = run_cli(capsys, command, "-f", "hog", "--method", "optimize", "--steps", "2",
                           option, "1e300", *where)
    [line] = error_lines(err)
    assert code == 1 and f"{option} 1e+300: must be at most 1e+30" in line, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["invert", "evaluate"])
def test_optimisation_steps_beyond_a_million_are_refused(tmp_path, capsys, command):
    """Round 7: --steps 100000000000 was accepted and ran for years (killed by timeout)."""
    write_images(tmp_path / "data", 4)
    where = (["skimage:coffee", "-o", tmp_path / "x.png"] if command == "invert"
             else ["--data", tmp_path / "data"])
    code, _, err = run_cli(capsys, command, "-f", "hog", "--method", "optimize", "--steps",
                           "100000000000", *where)
    [line] = error_lines(err)
    assert code == 1 and "--steps 100000000000: give a whole number from 1 to 1,000,000" in line
    assert not (tmp_path / "x.png").exists()


def test_divergence_names_the_options_to_change():
    from featinv.inversion.optimize import OptimizeConfig, invert_by_optimization

    with pytest.raises(FeatinvError, match="--step-size 1e\\+20.*--lambda-tv"):
        invert_by_optimization(featinv.get_feature("hog"), torch.rand(1, 3, 32, 32),
                               OptimizeConfig(steps=3, lr=1e20))


@pytest.mark.parametrize("args, option", [
    (["extract", "-f", "hog", "-p", "cell_size=8", "-p", "cell_size=4", "IMG", "-o", "OUT"],
     "--param"),
    (["extract", "-f", "squeezenet.fire5", "-p", "weights=random", "--weights", "imagenet",
      "IMG", "-o", "OUT"], "--param"),
    (["compare", "DATA", "DATA", "--comparator", "hog", "--comparator-param", "cell_size=4",
      "--comparator-param", "cell_size=8"], "--comparator-param"),
    (["train", "-f", "hog", "--data", "DATA", "-o", "OUT", "-p", "cell_size=8",
      "-p", "cell_size= 2"], "--param"),
])
def test_a_parameter_given_twice_with_two_values_is_refused(tmp_path, capsys, args, option):
    """``-p cell_size=8 -p cell_size=4`` silently kept the last value (as ``--loss pixel,pixel=2``
    did); ``-p weights=X --weights Y`` kept Y."""
    (img,) = write_images(tmp_path / "data", 1)
    args = [img if a == "IMG" else tmp_path / "data" if a == "DATA" else tmp_path / "out" if
            a == "OUT" else a for a in args]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and ("twice" in err or "disagree" in err), err
    assert option in err and not (tmp_path / "out").exists()


def test_a_parameter_repeated_with_the_same_value_is_taken():
    from featinv.cli.options import params_with_weights

    assert params_with_weights(("cell_size=8", " cell_size = 8"), None) == {"cell_size": "8"}
    assert params_with_weights(("weights=random",), "random") == {"weights": "random"}
