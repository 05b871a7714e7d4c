"""Training survives what users do to it: SIGKILL, NaNs, a full disk, bad files in the data."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from featinv.io import checkpoint
from featinv.errors import DataError, FeatinvError
from featinv.training.loop import STATE_FILE, TrainConfig, train

from helpers import saved_step, write_images

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli_args(data, out, *extra):
    return [sys.executable, "-m", "featinv", "train", "-f", "hog", "--data", str(data),
            "--out", str(out), "--image-size", "48", "--epochs", "2", "--batch-size", "8",
            "--workers", "0", "--device", "cpu", "--save-every", "1", *extra]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_weights(tmp_path):
    """SIGKILL at an arbitrary moment (mid-step or mid-save), resume: identical weights."""
    write_images(tmp_path / "data", 64)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(cli_args(tmp_path / "data", straight), env=ENV, check=True,
                   capture_output=True)
    total = saved_step(straight)
    assert total == 16

    proc = subprocess.Popen(cli_args(tmp_path / "data", killed), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while saved_step(killed) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = saved_step(killed)
    assert 3 <= at_kill < total, f"the run was not killed part-way (step {at_kill} of {total})"

    subprocess.run(cli_args(tmp_path / "data", killed, "--resume"), env=ENV, check=True,
                   capture_output=True)
    a = load_file(str(straight / "decoder.safetensors"))
    b = load_file(str(killed / "decoder.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def small_config(data, out, **kw):
    base = dict(feature="hog", data=str(data), out=str(out), image_size=32, epochs=1,
                batch_size=8, workers=0, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    write_images(tmp_path / "data", 16)
    train(small_config(tmp_path / "data", tmp_path / "run"), log=lambda m: None)
    with pytest.raises(FeatinvError, match="(NaN|nan|inf).*last checkpoint .* is kept"):
        train(small_config(tmp_path / "data", tmp_path / "run", epochs=6, lr=1e30,
                           save_every=1), resume=True, log=lambda m: None)
    # every step was checkpointed until the weights blew up; what is on disk is finite and loads
    step = saved_step(tmp_path / "run")
    assert 2 <= step < 12
    import featinv

    decoder = featinv.load_decoder(tmp_path / "run" / "decoder.safetensors")
    assert decoder.meta["progress"]["step"] == step
    assert all(torch.isfinite(p).all() for p in decoder.state_dict().values())


@pytest.mark.slow
def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    write_images(tmp_path / "data", 16)
    train(small_config(tmp_path / "data", tmp_path / "run"), log=lambda m: None)
    before = (tmp_path / "run" / STATE_FILE).read_bytes()
    real_save = checkpoint.save_file

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)  # part of the file made it to disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(FeatinvError, match="No space left on device.*previous checkpoint"):
        train(small_config(tmp_path / "data", tmp_path / "run", epochs=2), resume=True,
              log=lambda m: None)
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert (tmp_path / "run" / STATE_FILE).read_bytes() == before
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no temporary files left behind
    # and the run goes on from there
    last = train(small_config(tmp_path / "data", tmp_path / "run", epochs=2), resume=True,
                 log=lambda m: None)
    assert last["epoch"] == 2


def test_empty_or_unreadable_data_folder_fails_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        train(small_config(tmp_path / "empty", tmp_path / "run"), log=lambda m: None)
    assert not (tmp_path / "run" / "decoder.safetensors").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_text("not a picture")
    (bad / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no readable images \(2 files failed; the first: "):
        train(small_config(bad, tmp_path / "run"), log=lambda m: None)
    with pytest.raises(DataError, match="does not exist"):
        train(small_config(tmp_path / "missing", tmp_path / "run"), log=lambda m: None)


@pytest.mark.slow
def test_bad_training_files_are_reported_and_skipped(tmp_path, capsys):
    paths = write_images(tmp_path / "data", 16)
    (tmp_path / "data" / "notes.jpg").write_text("hello")
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) // 3])  # header fine, pixels truncated
    messages = []
    last = train(small_config(tmp_path / "data", tmp_path / "run"), log=messages.append)
    assert last["epoch"] == 1
    assert any("notes.jpg: not an image file" in m for m in messages)
    err = capsys.readouterr().err
    assert err.count(f"{paths[3]}: cannot decode image") == 1  # reported once, at its first use


@pytest.mark.slow
def test_a_batch_larger_than_the_data_is_cut_to_the_data(tmp_path):
    """--batch-size 64 on 6 images trains with batches of 6: images seen, the learning rate and
    the stored config say so (they claimed 64 images a step), and the run resumes."""
    write_images(tmp_path / "data", 6)
    logs = []
    last = train(small_config(tmp_path / "data", tmp_path / "run", batch_size=64, epochs=2),
                 log=logs.append)
    assert any("--batch-size 64 is more than the 6 training images: batches of 6" in m
               for m in logs)
    assert last["images_seen"] == 2 * 6 and last["step"] == 2
    meta = checkpoint.read_meta(tmp_path / "run" / "decoder.safetensors")
    assert meta["training"]["batch_size"] == 6
    again = train(small_config(tmp_path / "data", tmp_path / "run", batch_size=64, epochs=3),
                  resume=True, log=lambda m: None)
    assert again["step"] == 3


def test_one_image_per_step_is_refused_before_training(tmp_path):
    write_images(tmp_path / "data", 4)
    with pytest.raises(DataError, match="batch norm, which needs at least 2 images per step; "
                       r"this run has 1 \(4 training image\(s\), --batch-size 1\)"):
        train(small_config(tmp_path / "data", tmp_path / "run", batch_size=1),
              log=lambda m: None)
    write_images(tmp_path / "one", 1)
    with pytest.raises(DataError, match=r"has 1 \(1 training image\(s\), --batch-size 1\)"):
        train(small_config(tmp_path / "one", tmp_path / "run"), log=lambda m: None)
    assert not (tmp_path / "run" / "decoder.safetensors").exists()


@pytest.mark.slow
def test_a_last_batch_of_one_image_is_left_out(tmp_path):
    """9 images at batch 8: a second step of 1 image would crash batch norm; it is left out."""
    write_images(tmp_path / "data", 9)
    last = train(small_config(tmp_path / "data", tmp_path / "run"), log=lambda m: None)
    assert last["step"] == 1


@pytest.mark.slow
def test_loader_processes_beyond_the_usable_cores_are_not_started(tmp_path, monkeypatch):
    """Under taskset with one CPU, the default --workers 2 made PyTorch warn 'This DataLoader
    will create 2 worker processes ... suggested max number of worker ... is 1' (round 6): the
    loader processes are cut to the cores this process may use."""
    import warnings

    write_images(tmp_path / "data", 8)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    logs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(small_config(tmp_path / "data", tmp_path / "run", workers=2, batch_size=4,
                           data_store="files"), log=logs.append)
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]
    assert any("read by 1 loader processes" in line for line in logs), logs
