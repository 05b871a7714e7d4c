"""A new decoder's feature statistics come from the training images the run loaded, not from a
second read of the data folder: a file the run skips (and says so) does not count."""
from __future__ import annotations

import shutil

import torch
from safetensors.torch import load_file

from helpers import train_configs, write_images
from featinv.training.loop import train

config = train_configs(image_size=32, batch_size=4, budget=4, preset="residual", width=0.125,
                       threads=1)


def feature_stats(out) -> tuple[torch.Tensor, torch.Tensor]:
    tensors = load_file(str(out / "decoder.safetensors"))
    return tensors["feature_mean"], tensors["feature_std"]


def test_a_skipped_file_does_not_change_the_statistics(tmp_path):
    write_images(tmp_path / "clean", 4)
    shutil.copytree(tmp_path / "clean", tmp_path / "with_junk")
    (tmp_path / "with_junk" / "000_junk.png").write_bytes(b"not an image")  # first in order
    train(config(tmp_path / "clean", tmp_path / "a"), log=lambda _m: None)
    logs: list[str] = []
    train(config(tmp_path / "with_junk", tmp_path / "b"), log=logs.append)
    assert any(m.startswith("skipping") and "000_junk.png" in m for m in logs)
    (mean_a, std_a), (mean_b, std_b) = feature_stats(tmp_path / "a"), feature_stats(tmp_path / "b")
    assert torch.equal(mean_a, mean_b) and torch.equal(std_a, std_b)
    assert float(std_a.min()) > 1e-6  # statistics of real images, not the untouched defaults
