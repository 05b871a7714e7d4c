"""Distributed training: a 2-process torchrun job on the CPU (gloo), against a single process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import featinv
from featinv.datasets.folders import EpochBatches
from featinv.errors import DataError

from helpers import write_images

pytestmark = pytest.mark.slow  # every test here takes seconds (CONTRIBUTING.md)


# the compact preset has no batch norm, so two processes' halves of a batch give exactly the
# gradient of the whole batch (the residual preset's batch norm sees each half on its own)
PAPER_STYLE = ("--preset", "compact", "--schedule", "step", "--crop-scale", "1.0")


def train_args(data, out, epochs, *extra):
    return ["-m", "featinv", "train", "-f", "hog", "--data", str(data), "--val", str(data),
            "--out", str(out), "--image-size", "32", "--epochs", str(epochs), "--batch-size", "8",
            "--workers", "0", "--device", "cpu", "--val-limit", "8", "--lr", "2e-3",
            "--precision", "fp32", *PAPER_STYLE, *extra]


def run(args, processes=1):
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch + args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def max_difference(a, b) -> float:
    wa, wb = load_file(str(a / "decoder.safetensors")), load_file(str(b / "decoder.safetensors"))
    assert wa.keys() == wb.keys()
    return max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-epoch run on one process and on two."""
    root = tmp_path_factory.mktemp("ddp")
    write_images(root / "data", 24)
    one, two = root / "one", root / "two"
    run(train_args(root / "data", one, 2))
    two_log = run(train_args(root / "data", two, 2), processes=2)
    return root, one, two, two_log


def test_two_processes_train_the_same_decoder_as_one(runs):
    _, one, two, log = runs
    # the global batch of 8 is split 4 + 4; averaged gradients equal the full batch's
    assert max_difference(one, two) < 1e-5
    meta = featinv.load_decoder(two / "decoder.safetensors").meta
    assert meta["progress"]["world_size"] == 2 and meta["progress"]["step"] == 6


def test_only_rank_zero_logs_and_writes(runs):
    _, _, two, log = runs
    records = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert log.stderr.count("epoch 1: val normalized error") == 1
    assert log.stdout.count("wrote ") == 1


def test_distributed_checkpoint_inverts_images(runs):
    root, _, two, _ = runs
    [out] = featinv.invert([next((root / "data").iterdir())],
                           checkpoint=two / "decoder.safetensors", size=32)
    assert out.shape[0] == 3 and min(out.shape[1:]) == 32 and torch.isfinite(out).all()
    assert 0 <= out.min() and out.max() <= 1


def test_resume_across_world_sizes(runs, tmp_path):
    """Two processes -> one, and one -> two, continue to the same weights."""
    root, one, two, _ = runs
    a, b = tmp_path / "a", tmp_path / "b"
    import shutil

    shutil.copytree(two, a)
    shutil.copytree(one, b)
    run(train_args(root / "data", a, 3, "--resume"))
    run(train_args(root / "data", b, 3, "--resume"), processes=2)
    assert max_difference(a, b) < 1e-5
    for folder in (a, b):
        epochs = [json.loads(x)["epoch"] for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2, 3]


def test_batches_split_global_batches_over_ranks():
    ranks = [EpochBatches(10, 4, seed=1, rank=r, world=2) for r in range(2)]
    single = EpochBatches(10, 4, seed=1)
    for r in ranks + [single]:
        r.set_epoch(3)
    merged = [sorted(a + b) for a, b in zip(*ranks)]
    full = [sorted(b) for b in single]
    assert merged[:2] == full[:2]
    # the short last batch of 2 splits 1 + 1; 10 images, 3 steps on every rank
    assert merged[2] == full[2] and all(len(list(r)) == 3 for r in ranks)
    last = list(ranks[0])[2]
    ranks[0].set_epoch(3, start_batch=2)  # resuming mid-epoch
    assert list(ranks[0]) == [last]


def test_uneven_last_batch_is_padded_so_every_rank_gets_images():
    ranks = [EpochBatches(9, 4, seed=0, rank=r, world=4) for r in range(4)]
    for r in ranks:
        assert [len(b) for b in r] == [1, 1, 1]


def test_batch_size_must_split_over_ranks():
    with pytest.raises(DataError, match="multiple of 3"):
        EpochBatches(10, 8, seed=0, rank=0, world=3)


def test_two_processes_train_with_a_discriminator_as_one(tmp_path):
    """The adversarial loss under DDP: the discriminator's gradients are averaged too."""
    write_images(tmp_path / "data", 16)
    adversarial = ("--loss", "pixel,adversarial=0.1")
    run(train_args(tmp_path / "data", tmp_path / "one", 1, *adversarial))
    run(train_args(tmp_path / "data", tmp_path / "two", 1, *adversarial), processes=2)
    assert max_difference(tmp_path / "one", tmp_path / "two") < 1e-4
    state = load_file(str(tmp_path / "two" / "train_state.safetensors"))
    assert any(k.startswith("discriminator.") for k in state)
