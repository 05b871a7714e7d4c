"""Runs recover from what kills them (issue 24, defect 6): a run killed before its first
checkpoint can be resumed or restarted, a full disk while saving is the checkpoint-write
message with the previous checkpoint intact, a crafted training state or lock file is refused or
taken over in one line."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from helpers import saved_step, write_images
from featinv.errors import CheckpointError, FeatinvError
from featinv.training.loop import STATE_FILE, TrainConfig, train
from featinv.training.run_folder import LOCK_FILE

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def config(data, out, **kw) -> TrainConfig:
    base = dict(feature="hog", data=str(data), out=str(out), image_size=16, epochs=1,
                batch_size=4, workers=0, device="cpu", precision="fp32")
    return TrainConfig(**{**base, **kw})


def cli(data, out, *extra):
    return [sys.executable, "-m", "featinv", "train", "-f", "hog", "--data", str(data), "--out",
            str(out), "--image-size", "16", "--batch-size", "4", "--workers", "0", "--device",
            "cpu", "--precision", "fp32", "--threads", "1", *extra]


@pytest.fixture
def data(tmp_path):
    write_images(tmp_path / "data", 8, size=(24, 20))
    return tmp_path / "data"


# -- killed before the first checkpoint -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("left", [["metrics.jsonl"], ["metrics.jsonl", "val_epoch001.png"],
                                  ["val_epoch001.png", "val_epoch002.png"]])
@pytest.mark.parametrize("resume", [True, False])
def test_what_a_run_killed_before_its_first_checkpoint_left_is_replaced(data, tmp_path, left,
                                                                       resume):
    out = tmp_path / "run"
    out.mkdir()
    for name in left:
        (out / name).write_bytes(b'{"epoch": 1, "step": 2}\n')
    messages = []
    train(config(data, out), resume=resume, log=messages.append)
    assert any("holds no checkpoint" in m and "starting over" in m for m in messages), messages
    assert saved_step(out) == 2
    assert not (out / "val_epoch002.png").exists()
    records = (out / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 1 and json.loads(records[0])["step"] == 2  # its own record only


@pytest.mark.slow
def test_a_real_sigkill_after_the_first_epoch(data, tmp_path):
    """Killed once metrics.jsonl has a record but no checkpoint exists (no --val, checkpoints
    every 100 minutes): --resume starts over (a plain rerun too, tested above)."""
    write_images(tmp_path / "more", 64, size=(24, 20))
    out = tmp_path / "run"
    proc = subprocess.Popen(cli(tmp_path / "more", out, "--epochs", "200", "--save-minutes",
                                "100"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "metrics.jsonl").exists() and not (out / STATE_FILE).exists()
    done = subprocess.run(cli(data, out, "--epochs", "1", "--resume"), env=ENV,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "holds no checkpoint" in done.stderr, done.stderr
    assert saved_step(out) == 2


# -- a full disk --------------------------------------------------------------------------------

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from featinv.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("limit", [20_000, 200_000])
def test_a_save_that_cannot_be_written_is_the_checkpoint_message(data, tmp_path, limit):
    """A real write failure inside safetensors' writer (a file-size limit stands in for a full
    disk): one line, exit 1, no temporary file left, the previous checkpoint intact."""
    out = tmp_path / "run"
    subprocess.run(cli(data, out, "--epochs", "1", "--width", "0.25"), env=ENV, check=True,
                   capture_output=True)
    before = {n: (out / n).read_bytes() for n in ("decoder.safetensors", STATE_FILE)}
    if max(len(b) for b in before.values()) <= limit:
        pytest.skip("the checkpoint is smaller than the limit")
    args = cli(data, out, "--epochs", "2", "--width", "0.25", "--resume")[3:]
    done = subprocess.run([sys.executable, "-c", LIMITED.format(limit=limit), *args], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Could not write the checkpoint" in lines[0], done.stderr
    assert "File too large" in lines[0] and "previous checkpoint there is intact" in lines[0]
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
    assert {n: (out / n).read_bytes() for n in before} == before
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("message", [
    "Error while serializing: I/O error: No space left on device (os error 28)",
    "Error while serializing: I/O error: Disk quota exceeded (os error 122)",
])
def test_safetensors_write_errors_are_the_checkpoint_message(data, tmp_path, monkeypatch,
                                                             message):
    from safetensors import SafetensorError

    import featinv.io.checkpoint as ckpt

    out = tmp_path / "run"

    def full(*_a, **_k):
        raise SafetensorError(message)

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(FeatinvError, match=r"Could not write the checkpoint .*\((No space left "
                                           r"on device|Disk quota exceeded)\).*start again"):
        train(config(data, out), log=lambda m: None)
    assert not list(out.glob(".*.tmp")) and not (out / "decoder.safetensors").exists()


@pytest.mark.slow
def test_a_replacing_run_whose_first_save_fails_puts_the_old_run_back(data, tmp_path,
                                                                      monkeypatch):
    """--overwrite, then the disk fills while the decoder is written and the state is not: the
    half-written new checkpoint goes, the old run comes back."""
    from safetensors import SafetensorError

    import featinv.io.checkpoint as ckpt

    out = tmp_path / "run"
    train(config(data, out), log=lambda m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real, calls = ckpt.save_file, []

    def fills_up(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the training state, after the decoder
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", fills_up)
    with pytest.raises(FeatinvError, match="No space left on device.*run it replaces is put back"):
        train(config(data, out, overwrite=True, seed=1), log=lambda m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


# -- a crafted training state -------------------------------------------------------------------

def rewrite_state(path: Path, **changes) -> None:
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["featinv"])
    meta.update(changes)
    save_file(tensors, str(path), metadata={"featinv": json.dumps(meta)})


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    dict(step=-1), dict(step=10**30), dict(step=1e30), dict(step="3"), dict(step=None),
    dict(step=True), dict(step=2**62), dict(history="x"), dict(history=[1, 2]),
    dict(history=[{"epoch": 1, "step": 99}]), dict(config=[]), dict(step=10**6),
])
def test_a_crafted_training_state_is_refused_in_one_line(data, tmp_path, change):
    out = tmp_path / "run"
    train(config(data, out), log=lambda m: None)
    rewrite_state(out / STATE_FILE, **change)
    with pytest.raises(CheckpointError, match="invalid|past the"):
        train(config(data, out, epochs=3), resume=True, log=lambda m: None)


@pytest.mark.slow
def test_crafted_optimizer_settings_are_refused_and_true_ones_resume(data, tmp_path):
    """Round 6: a training state whose Adam settings were rewritten (betas [5, 5], eps -1, weight
    decay 1e300) resumed: exit 0 with eps -1, or NaN after two steps blamed on --lr."""
    out = tmp_path / "run"
    train(config(data, out), log=lambda m: None)
    with safe_open(str(out / STATE_FILE), framework="pt") as f:
        groups = json.loads(f.metadata()["featinv"])["param_groups"]
    for key, value in (("betas", [5, 5]), ("eps", -1.0), ("weight_decay", 1e300),
                       ("amsgrad", True)):
        rewrite_state(out / STATE_FILE, param_groups=[{**groups[0], key: value}])
        with pytest.raises(CheckpointError, match=f"its {key} .* is not this run's"):
            train(config(data, out, epochs=3), resume=True, log=lambda m: None)
    # the learning rate is the schedule's, and the kernels may differ (a GPU run on a CPU)
    rewrite_state(out / STATE_FILE, param_groups=[{**groups[0], "lr": 123.0, "fused": None,
                                                   "foreach": True}])
    train(config(data, out, epochs=3), resume=True, log=lambda m: None)


def test_a_resume_with_other_training_settings_says_which(data, tmp_path):
    """Round 7: --resume with another --lr, --seed, --schedule, ... (none of which change what
    the weights mean) continued without a word, mixing two runs' settings."""
    out, lines = tmp_path / "run", []
    train(config(data, out), log=lambda m: None)
    train(config(data, out, epochs=2), resume=True, log=lines.append)
    assert not [m for m in lines if "differ" in m]  # the same settings: nothing said
    lines.clear()
    train(config(data, out, epochs=3, lr=0.002, seed=5, schedule="constant"), resume=True,
          log=lines.append)  # (a constant --lr 0.1 diverges: not saved, since round 10)
    said = [m for m in lines if "settings that differ" in m]
    assert len(said) == 1 and "lr" in said[0] and "-> 0.002" in said[0]
    assert "seed 0 -> 5" in said[0] and "schedule" in said[0] and "epochs" not in said[0]


# -- lock files ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("lock", ["pid1", "garbage", "negative", "huge", "fifo", "dev_zero",
                                  "dev_urandom", "not_featinv"])
def test_a_lock_that_names_no_featinv_run_is_taken_over(data, tmp_path, lock):
    """A lock naming process 1, this test's own (no featinv) process, nonsense, or a lock
    that is a FIFO or a link to an endless device: taken over without hanging."""
    import socket

    out = tmp_path / "run"
    out.mkdir()
    path = out / LOCK_FILE
    host = socket.gethostname()
    if lock == "pid1":
        path.write_text(json.dumps({"pid": 1, "host": host}))
    elif lock == "not_featinv":
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        path.write_text(json.dumps({"pid": sleeper.pid, "host": host}))
    elif lock == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif lock == "negative":
        path.write_text(json.dumps({"pid": -5, "host": host}))
    elif lock == "huge":
        path.write_text(json.dumps({"pid": 10**30, "host": host}))
    elif lock == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if lock == "dev_zero" else "/dev/urandom")
    try:
        done = subprocess.run(cli(data, out, "--epochs", "1"), env=ENV, capture_output=True,
                              text=True, timeout=120)
    finally:
        if lock == "not_featinv":
            sleeper.kill()
            sleeper.wait()
    assert done.returncode == 0, done.stderr
    assert saved_step(out) == 2 and not path.exists() and not path.is_symlink()


@pytest.mark.slow
def test_a_live_featinv_run_still_holds_its_folder(data, tmp_path):
    """...while a lock naming a live featinv train (the real case) is still respected."""
    out = tmp_path / "run"
    write_images(tmp_path / "more", 64, size=(24, 20))
    first = subprocess.Popen(cli(tmp_path / "more", out, "--epochs", "200"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(cli(data, out, "--epochs", "1", "--resume"), env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and f"process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()


# -- periodic checkpoints -----------------------------------------------------------------------

@pytest.mark.slow
def test_save_every_also_saves_on_the_last_step_of_an_epoch(data, tmp_path, monkeypatch):
    """A save due on an epoch's last step was skipped (the epoch's end saves only at the end of
    the run or with validation): with one step per epoch, --save-every and --save-minutes never
    saved, and a run killed at step 90 of 100 left nothing to resume."""
    from featinv.training.loop import Run

    steps, real = [], Run.save

    def save(self, record):
        steps.append(self.step)
        return real(self, record)

    monkeypatch.setattr(Run, "save", save)
    train(config(data, tmp_path / "run", epochs=5, batch_size=8, save_every=2),
          log=lambda m: None)  # 8 images: one step per epoch
    assert steps == [2, 4, 5]
