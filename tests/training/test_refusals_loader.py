"""Issue 24 D18: a data-loader worker (``--workers N``) that fails ends ``train`` at once with one
line saying what failed and what to do, exit code 1, the run's checkpoint kept. Before, a worker
that could not write its batch to shared memory printed a traceback from its queue's thread and
training waited for that batch for ever.

The workers are forked from the test process: what is patched here, they inherit.
"""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch

from featinv.datasets import folders, loader
from featinv.errors import DataError
from helpers import error_lines, run_cli, write_images

TOO_LARGE = "unable to write to file </torch_1_2>: File too large (27)"  # torch's words


def _cannot_share(*_args, **_kwargs):
    raise RuntimeError(TOO_LARGE)


def _train(capfd, tmp_path, *args):
    return run_cli(capfd, "train", "-f", "hog", "--data", tmp_path / "data", "-o",
                   tmp_path / "run", "--image-size", 16, "--batch-size", 4, "--device", "cpu",
                   *args)


@pytest.fixture
def trained(tmp_path, capfd):
    """A run of one epoch, trained without loader processes: the checkpoint to keep."""
    write_images(tmp_path / "data", 8)
    code, _, err = _train(capfd, tmp_path, "--epochs", 1, "--workers", 0)
    assert code == 0, err
    return tmp_path / "run"


def _resume_failing(capfd, tmp_path, store: str):
    start = time.monotonic()
    code, out, err = _train(capfd, tmp_path, "--epochs", 2, "--workers", 1, "--data-store",
                            store, "--resume")
    assert time.monotonic() - start < 60  # it hung for ever
    assert code == 1 and "Traceback" not in err and "RuntimeError" not in err, err
    return error_lines(err)


@pytest.mark.parametrize("store", ["files", "memory"])
def test_a_worker_that_cannot_write_shared_memory_ends_the_run_in_one_line(
        tmp_path, capfd, monkeypatch, trained, store):
    before = {name: (trained / name).read_bytes()
              for name in ("decoder.safetensors", "train_state.safetensors")}
    monkeypatch.setattr(torch.UntypedStorage, "_share_fd_cpu_", _cannot_share)
    monkeypatch.setattr(torch.UntypedStorage, "_share_filename_cpu_", _cannot_share)
    assert _resume_failing(capfd, tmp_path, store) == [
        "Error: A data-loader worker failed: cannot write shared memory (File too large); try "
        "--workers 0 (the training process then reads the images itself)."]
    for name, data in before.items():
        assert (trained / name).read_bytes() == data, name


def test_a_featinv_error_in_a_worker_is_its_own_line(tmp_path, capfd, monkeypatch, trained):
    def unreadable(self, index):
        raise DataError("None of the training images can be read any more.")

    monkeypatch.setattr(folders.TrainImages, "__getitem__", unreadable)
    assert _resume_failing(capfd, tmp_path, "files") == [
        "Error: None of the training images can be read any more."]


def test_a_killed_worker_ends_the_run_in_one_line(tmp_path, capfd, monkeypatch, trained):
    def killed(self, index):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(folders.TrainImages, "__getitem__", killed)
    lines = _resume_failing(capfd, tmp_path, "files")
    assert len(lines) == 1 and lines[0].startswith(
        "Error: A data-loader worker failed: DataLoader worker (pid") and \
        lines[0].endswith("; try --workers 0 (the training process then reads the images "
                          "itself)."), lines


def test_the_reason_is_what_the_system_said():
    assert loader._os_reason(RuntimeError(TOO_LARGE)) == "File too large"
    assert loader._os_reason(OSError("Too many open files")) == "Too many open files"
    wrapped = RuntimeError("Caught OSError in DataLoader worker process 0.\nOriginal Traceback "
                           "(most recent call last):\n  File \"x\", line 1\nOSError: [Errno 28] "
                           "No space left on device\n")
    assert str(loader._worker_error(wrapped)) == (
        "A data-loader worker failed: [Errno 28] No space left on device; try --workers 0 (the "
        "training process then reads the images itself).")
    late = loader._worker_error(RuntimeError("DataLoader timed out after 600 seconds"))
    assert "no batch came for 600 s" in str(late)


def test_any_exception_in_a_worker_is_one_line(tmp_path, capfd, monkeypatch, trained):
    def out_of_memory(self, index):
        raise MemoryError()

    monkeypatch.setattr(folders.TrainImages, "__getitem__", out_of_memory)
    assert _resume_failing(capfd, tmp_path, "files") == [
        "Error: A data-loader worker failed: MemoryError; try --workers 0 (the training process "
        "then reads the images itself)."]
