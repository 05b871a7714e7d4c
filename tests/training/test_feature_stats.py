"""A new decoder's feature statistics come from the training images the run loaded, not from a
second read of the data folder: a file the run skips (and says so) does not count."""
from __future__ import annotations

import shutil

import pytest
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


def test_a_channel_constant_over_the_batch_gets_a_floor_not_1e_6():
    """A ReLU channel no image of the batch excites: its std is 1% of the channels' mean std,
    so a photo that does excite it gives inputs of tens, not millions (saturated pictures)."""
    from featinv.decoders.networks import Decoder
    from featinv.representation.layout import GridLayout

    layout = GridLayout(channels=3, height=4, width=4)
    decoder = Decoder(torch.nn.Identity(), layout, {"image_size": 16})
    feats = torch.rand(8, 3, 4, 4) * torch.tensor([2.0, 4.0, 0.0]).view(1, 3, 1, 1)
    decoder.set_feature_stats(feats)
    std = decoder.feature_std
    assert float(std[2]) == pytest.approx(0.01 * float(feats.std([0, 2, 3]).mean()))
    assert torch.equal(std[:2], feats.std([0, 2, 3])[:2])
    excited = torch.zeros(1, 3, 4, 4)
    excited[:, 2] = 1.0
    assert float(decoder(excited).abs().max()) < 200
