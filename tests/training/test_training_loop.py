"""The training loop's data paths, schedule, stopping and run folder (issue: training speed)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from helpers import quiet, saved_step, train_command, train_configs, write_images
from featinv.io import checkpoint
from featinv.datasets.folders import (EpochBatches, FolderImages, MemoryImages, TrainImages, augment,
                          crop_plan, scan_folder, store_side)
from featinv.errors import DataError, FeatinvError, PluginError
from featinv.training.run_folder import LOCK_FILE
from featinv.training.loop import STATE_FILE, TrainConfig, train
from featinv.training.config import check_config, effective_lr, lr_at, warmup_steps

CPU = torch.device("cpu")


config = train_configs(image_size=32, epochs=1, batch_size=8)


# -- data -------------------------------------------------------------------------------------

def test_memory_and_folder_sources_give_identical_batches(tmp_path):
    """The device-resident store and the loader processes make the same batches, seed for seed."""
    write_images(tmp_path / "d", 10, size=(60, 44))
    write_images(tmp_path / "d", 3, size=(90, 200), seed=3)  # larger: shrunk to the store side
    files = scan_folder(tmp_path / "d")
    crop_scale = (0.5, 1.0)
    images = TrainImages(files, store_side(32, crop_scale))
    sampler = EpochBatches(len(images), 4, seed=7)
    memory = MemoryImages(images, CPU, workers=0)
    folder = FolderImages(images, sampler, workers=2, pin_memory=False)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        pairs = zip(memory.batches(sampler), folder.batches(sampler))
        for (idx_a, imgs_a, _), (idx_b, imgs_b, _) in pairs:
            assert idx_a == idx_b
            crops = [crop_plan(7, epoch, i, im.shape[2], im.shape[1], crop_scale)
                     for i, im in zip(idx_a, imgs_a)]
            assert torch.equal(augment(imgs_a, crops, 32, CPU), augment(imgs_b, crops, 32, CPU))
    assert max(min(im.shape[1:]) for im in memory.images) == store_side(32, crop_scale)


def test_augment_crops_resizes_and_flips():
    img = torch.arange(3 * 6 * 8, dtype=torch.uint8).reshape(3, 6, 8)
    crops = [crop_plan(0, 0, 0, 8, 6, (1.0, 1.0))]
    exact = crops[0].__class__(left=1, top=0, side=6, flip=True)
    out = augment([img], [exact], 6, CPU)
    assert out.shape == (1, 3, 6, 6) and out.dtype == torch.float32
    assert torch.equal(out[0], img[:, :, 1:7].flip(-1).float() / 255)  # same size: an exact copy
    small = augment([img], crops, 3, CPU)
    assert small.shape == (1, 3, 3, 3) and 0 <= small.min() and small.max() <= 1


@pytest.mark.slow
def test_training_from_memory_and_from_files_gives_the_same_decoder(tmp_path):
    write_images(tmp_path / "data", 16)
    common = dict(crop_scale=(0.6, 1.0), epochs=2)
    train(config(tmp_path / "data", tmp_path / "mem", data_store="memory", **common), log=quiet)
    train(config(tmp_path / "data", tmp_path / "files", data_store="files", workers=2, **common),
          log=quiet)
    a = load_file(str(tmp_path / "mem" / "decoder.safetensors"))
    b = load_file(str(tmp_path / "files" / "decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_data_store_auto_follows_the_memory_budget(tmp_path, monkeypatch):
    write_images(tmp_path / "data", 8)
    logs = []
    train(config(tmp_path / "data", tmp_path / "a"), log=logs.append)
    assert any("in memory (RAM)" in m for m in logs)
    logs.clear()
    # a budget of 100 bytes: below what --memory-budget accepts, far below these images' size
    monkeypatch.setattr("featinv.training.data.memory_budget", lambda *_: 100)
    train(config(tmp_path / "data", tmp_path / "b"), log=logs.append)
    assert any("over the" in m and "budget" in m for m in logs)


# -- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("change, match", [
    (dict(lr=float("nan")), "^lr"), (dict(lr=-1.0), "^lr"),
    (dict(width=float("nan")), "^width"), (dict(width=0.0), "^width"),
    (dict(width=-1.0), "^width"), (dict(limit=0), "^limit"), (dict(limit=-1), "^limit"),
    (dict(image_size=100000), "^image_size"), (dict(batch_size=0), "^batch_size"),
    (dict(val_every=-1), "^val_every"), (dict(save_minutes=0.0), "^save_minutes"),
    (dict(save_minutes=1e-320), "^save_minutes must be a finite number of at least 0.01"),
    (dict(ema=1e-320), "averages over less than two steps"), (dict(ema=0.3), "no average"),
    (dict(data_store="disk"), "^data_store"), (dict(schedule="exponential"), "^Unknown schedule"),
])
def test_absurd_settings_are_refused_up_front(tmp_path, change, match):
    with pytest.raises(FeatinvError, match=match):
        check_config(config(tmp_path, tmp_path / "o", **change))


def test_learning_rate_rule_for_large_batches():
    base = TrainConfig(feature="hog", data=".", out=".", lr=1e-3, schedule="step",
                       batch_size=64)
    assert effective_lr(base) == pytest.approx(1e-3)
    big = TrainConfig(feature="hog", data=".", out=".", batch_size=256, lr=1e-3,
                      schedule="step")
    assert effective_lr(big) == pytest.approx(2e-3)  # sqrt(256 / 64) = 2
    assert warmup_steps(base, 100) == 0 and warmup_steps(big, 100) == 100
    ramp = [lr_at(big, s, 1000, warmup=100) for s in (0, 49, 99, 100)]
    assert ramp[0] == pytest.approx(2e-5) and ramp[1] == pytest.approx(1e-3)
    assert ramp[2] == ramp[3] == pytest.approx(2e-3)
    # one-cycle ramps up by itself: no separate warm-up unless asked for
    cycle = TrainConfig(feature="hog", data=".", out=".", batch_size=256, schedule="onecycle")
    assert warmup_steps(cycle, 100) == 0
    assert warmup_steps(TrainConfig(**{**cycle.__dict__, "warmup": 7}), 100) == 7


def test_settings_resolved_for_the_machine_are_logged(tmp_path):
    write_images(tmp_path / "data", 8)
    logs = []
    train(config(tmp_path / "data", tmp_path / "r", precision="auto", threads=1), log=logs.append)
    line = next(m for m in logs if m.startswith("settings:"))
    assert "precision " in line and "channels_last True" in line and "1 CPU threads" in line
    meta = checkpoint.read_meta(tmp_path / "r" / "decoder.safetensors")
    assert meta["training"]["precision"] in ("fp32", "bf16")  # resolved, not "auto"


# -- validation and checkpoints ---------------------------------------------------------------

@pytest.mark.slow
def test_validation_runs_every_n_epochs_and_after_the_last(tmp_path):
    write_images(tmp_path / "data", 8)
    train(config(tmp_path / "data", tmp_path / "r", val=str(tmp_path / "data"), epochs=5,
                 val_every=2), log=quiet)
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val_normalized_error" in r] == [2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "r").glob("val_epoch*.png")) == [
        "val_epoch002.png", "val_epoch004.png", "val_epoch005.png"]


@pytest.mark.slow
def test_automatic_validation_costs_little(tmp_path):
    """With the default schedule, validating 40 images after 8-image epochs is too dear to do
    every epoch: it runs after the first (to measure it) and the last, and rarely between."""
    write_images(tmp_path / "data", 8)
    write_images(tmp_path / "val", 40, seed=1)
    train(config(tmp_path / "data", tmp_path / "r", val=str(tmp_path / "val"), epochs=6),
          log=quiet)
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    validated = [r["epoch"] for r in records if "val_normalized_error" in r]
    assert validated[0] == 1 and validated[-1] == 6 and len(validated) < 6


@pytest.mark.parametrize("val_images", [1, "duplicates", "val_limit"])
def test_too_few_distinct_validation_images_fail_before_training(tmp_path, val_images):
    write_images(tmp_path / "data", 8)
    kw = {}
    if val_images == 1:
        write_images(tmp_path / "val", 1)
    elif val_images == "duplicates":
        (path,) = write_images(tmp_path / "val", 1)
        (tmp_path / "val" / "copy.png").write_bytes(path.read_bytes())
    else:
        write_images(tmp_path / "val", 4)
        kw["val_limit"] = 1
    with pytest.raises(DataError, match="at least 2 different"):
        train(config(tmp_path / "data", tmp_path / "r", val=str(tmp_path / "val"), **kw),
              log=quiet)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # nothing trained, nothing lost


@pytest.mark.slow
def test_checkpoints_follow_the_umask(tmp_path):
    write_images(tmp_path / "data", 8)
    old = os.umask(0o022)
    try:
        train(config(tmp_path / "data", tmp_path / "r"), log=quiet)
    finally:
        os.umask(old)
    for name in ("decoder.safetensors", STATE_FILE):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o644


def test_plugin_features_that_are_not_finite_are_named_before_training(tmp_path, monkeypatch):
    from featinv.representation.spec import Extractor

    write_images(tmp_path / "data", 8)
    real = Extractor._run

    def nan_features(self, images, with_report):
        out, report = real(self, images, with_report)
        return out * float("nan"), report

    monkeypatch.setattr(Extractor, "_run", nan_features)
    with pytest.raises(PluginError, match="hog .*plugin .*NaN"):
        train(config(tmp_path / "data", tmp_path / "r"), log=quiet)


@pytest.mark.slow
def test_resume_accepts_the_default_width_spelled_out(tmp_path):
    write_images(tmp_path / "data", 8)
    train(config(tmp_path / "data", tmp_path / "r", preset="residual", save_every=1), log=quiet)
    last = train(config(tmp_path / "data", tmp_path / "r", preset="residual", width=0.25,
                        epochs=2), resume=True, log=quiet)
    assert last["epoch"] == 2


# -- the run folder ---------------------------------------------------------------------------

@pytest.mark.slow
def test_a_finished_run_is_not_replaced_without_overwrite(tmp_path):
    write_images(tmp_path / "data", 8)
    out = tmp_path / "r"
    train(config(tmp_path / "data", out, val=str(tmp_path / "data"), epochs=2, val_every=1),
          log=quiet)
    before = (out / "decoder.safetensors").read_bytes()
    with pytest.raises(FeatinvError, match="already holds a run.*--resume.*--overwrite"):
        train(config(tmp_path / "data", out), log=quiet)
    assert (out / "decoder.safetensors").read_bytes() == before
    train(config(tmp_path / "data", out, val=str(tmp_path / "data"), overwrite=True), log=quiet)
    assert sorted(p.name for p in out.glob("val_epoch*.png")) == ["val_epoch001.png"]  # no stale


@pytest.mark.slow
def test_resume_without_a_training_state_keeps_the_decoder(tmp_path):
    write_images(tmp_path / "data", 8)
    out = tmp_path / "r"
    train(config(tmp_path / "data", out), log=quiet)
    (out / STATE_FILE).unlink()
    before = (out / "decoder.safetensors").read_bytes()
    with pytest.raises(FeatinvError, match="no train_state.safetensors to resume from"):
        train(config(tmp_path / "data", out, epochs=2), resume=True, log=quiet)
    assert (out / "decoder.safetensors").read_bytes() == before


def test_out_that_is_a_file_is_refused(tmp_path):
    write_images(tmp_path / "data", 8)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FeatinvError, match="is a file, not a folder"):
        train(config(tmp_path / "data", tmp_path / "file"), log=quiet)


cli = train_command  # hog at 48 px, batches of 8


def wait_for_steps(proc, out, steps: int) -> None:
    """Wait until the run has trained a few steps (it logs progress lines as it goes)."""
    deadline = time.monotonic() + 120
    while saved_step(out) < steps and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                          (signal.SIGHUP, 129)])  # round 7: SIGHUP lost the run
def test_a_signalled_run_saves_exits_and_resumes_to_the_same_weights(tmp_path, signum, code):
    write_images(tmp_path / "data", 64)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    subprocess.run(cli(tmp_path / "data", straight, "--epochs", "3"), check=True,
                   capture_output=True)
    proc = subprocess.Popen(cli(tmp_path / "data", stopped, "--epochs", "3", "--save-every", "2"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_steps(proc, stopped, 2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"Interrupted by {signal.Signals(signum).name}" in err and "--resume" in err
    at_stop = saved_step(stopped)
    assert 2 <= at_stop < 24
    assert sorted(p.name for p in stopped.iterdir()) == sorted(
        ["decoder.safetensors", STATE_FILE, "metrics.jsonl"][: 2 + (at_stop >= 8)]
        + [p.name for p in stopped.glob("val_epoch*.png")])  # only complete files, no .tmp, no lock
    subprocess.run(cli(tmp_path / "data", stopped, "--epochs", "3", "--resume"), check=True,
                   capture_output=True)
    a = load_file(str(straight / "decoder.safetensors"))
    b = load_file(str(stopped / "decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    write_images(tmp_path / "data", 64)
    out = tmp_path / "r"
    first = subprocess.Popen(cli(tmp_path / "data", out, "--epochs", "20"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(cli(tmp_path / "data", out, "--epochs", "1", "--resume"),
                                capture_output=True, text=True)
        assert second.returncode == 1
        assert f"Another featinv train (process {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / LOCK_FILE).exists()  # a killed run leaves its lock behind...
    done = subprocess.run(cli(tmp_path / "data", out, "--epochs", "1", "--overwrite"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # ...which the next run takes over
    assert not (out / LOCK_FILE).exists()


# -- compiling --------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["hog", "lbp"])
def test_the_training_step_compiles_as_one_graph(name):
    """No graph breaks (and so no host syncs) in features + decoder: --compile captures it all."""
    import torch._dynamo as dynamo

    from featinv.decoders.networks import build_decoder
    from featinv.representation.registry import get_feature
    from featinv.training.loop import EncoderDecoder

    extractor = get_feature(name)
    extractor.check_finite_input = False
    x = torch.rand(2, 3, 32, 32)
    decoder = build_decoder(extractor.spec, extractor.layout(32, 32), 32, "residual", None)
    decoder.set_feature_stats(extractor(x))
    step = EncoderDecoder(extractor, decoder, None, "fp32", torch.channels_last)
    dynamo.reset()
    explained = dynamo.explain(step)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
        [str(b.reason)[:200] for b in explained.break_reasons]


def test_hog_orientation_bins_without_host_sync_match_the_cpu_path(monkeypatch):
    """The GPU/compiled path decides boundary pixels densely (no nonzero()); same bins."""
    from featinv.features import hog

    g = torch.Generator().manual_seed(0)
    gx = torch.randn(2, 40, 40, generator=g)
    gy = torch.randn(2, 40, 40, generator=g)
    gx[0, :10] = 0  # on a bin boundary for odd O
    gy[1, :5] = gx[1, :5]  # 45 degrees
    sparse = hog._orientation_bins(gx, gy, 9)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    dense = hog._orientation_bins(gx, gy, 9)
    assert torch.equal(sparse, dense)


def test_jpegs_decoded_in_batches_match_the_cpu_decoder(tmp_path):
    """The GPU decoding path (run here on the CPU): same sizes, pixels within decoder rounding;
    a file that is no JPEG inside still goes through the usual decoder."""
    from PIL import Image

    folder = tmp_path / "d"
    folder.mkdir()
    rng = torch.Generator().manual_seed(0)
    for i, size in enumerate([(60, 44), (300, 200), (44, 60)]):
        coarse = (torch.rand(3, 4, 4, generator=rng) * 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(coarse).resize(size, Image.BICUBIC).save(folder / f"{i}.jpg", quality=95)
    (folder / "3.png").write_bytes((folder / "0.jpg").read_bytes())  # a JPEG named .png
    write_images(folder, 1, size=(50, 50))  # a real PNG
    files = scan_folder(folder)
    images = TrainImages(files, 64)
    sampler = EpochBatches(len(files), 8, seed=0)
    (indices, batch, _), = FolderImages(images, sampler, 0, False, decode_on=CPU).batches(sampler)
    images.raw_jpeg = False
    expected = [images[i][1] for i in indices]
    for got, want in zip(batch, expected):
        assert got.dtype == torch.uint8 and got.shape == want.shape
        assert (got.float() - want.float()).abs().mean() < 3  # decoders and resizers round apart


@pytest.mark.slow
def test_a_loss_that_blows_up_before_any_checkpoint_says_so(tmp_path):
    write_images(tmp_path / "data", 16)
    with pytest.raises(FeatinvError, match="no checkpoint had been written yet"):
        train(config(tmp_path / "data", tmp_path / "r", lr=1e30, epochs=3, log_every=1),
              log=quiet)


def test_ctrl_c_in_other_commands_exits_130(monkeypatch, capsys):
    """Not only train: any command stopped by Ctrl-C says so and exits 130, without a traceback
    (click turns the KeyboardInterrupt into an Abort, which featinv maps back)."""
    from featinv.cli import main as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.cli.commands["zoo"], "callback", interrupted)
    with pytest.raises(SystemExit) as stop:
        cli.main(["zoo"])
    assert stop.value.code == 130
    err = capsys.readouterr().err
    assert "Interrupted." in err and "Traceback" not in err and "Aborted" not in err
