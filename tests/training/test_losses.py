"""Feature-space and adversarial losses (the paper's Appendix A), at tiny scale."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import featinv
from helpers import quiet, train_configs, write_images
from featinv.io import checkpoint
from featinv.errors import FeatinvError
from featinv.training.losses import Discriminator, Objective
from featinv.representation.registry import get_feature
from featinv.training.loop import STATE_FILE, TrainConfig, train
from featinv.training.config import parse_losses


config = train_configs(image_size=32, epochs=1, batch_size=4, preset="residual")


def test_loss_specifications():
    assert parse_losses("pixel") == {"pixel": 1.0}
    assert parse_losses("pixel, feature=0.5,ADVERSARIAL") == {
        "pixel": 1.0, "feature": 0.5, "adversarial": 0.005}
    for bad, match in [("pixel,style", "Unknown loss 'style'"), ("feature=x", "a number"),
                       ("feature=-1", "positive"), ("", "names no loss")]:
        with pytest.raises(FeatinvError, match=match):
            parse_losses(bad)


def test_feature_loss_is_the_normalised_distance_in_the_comparator():
    hog = get_feature("hog")
    objective = Objective({"feature": 1.0}, comparator=hog)
    x = torch.rand(2, 3, 32, 32)
    y = torch.rand(2, 3, 32, 32)
    total, parts = objective.generator_loss(x, x.clone(), None)
    assert parts["feature"].item() == 0.0
    total, parts = objective.generator_loss(x, y, None)
    fx, fy = hog(x), hog(y)
    expected = ((fy - fx) ** 2).sum() / (fx ** 2).sum()
    assert torch.allclose(parts["feature"], expected, rtol=1e-5)
    assert torch.equal(total, parts["feature"])


@pytest.mark.slow
def test_adversarial_terms_and_the_discriminator_step():
    torch.manual_seed(0)
    disc = Discriminator(3, width=0.125)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    objective = Objective({"pixel": 1.0, "adversarial": 0.5}, discriminator=disc, disc_opt=opt)
    x = torch.rand(4, 3, 32, 32)
    y = torch.rand(4, 3, 32, 32, requires_grad=True)
    total, parts = objective.generator_loss(x, y, None)
    with torch.no_grad():
        expected = F.softplus(-disc(y)).mean()
    assert torch.allclose(parts["adversarial"], expected)
    assert torch.allclose(total, F.mse_loss(y, x) + 0.5 * expected)
    total.backward()
    assert y.grad is not None and all(p.grad is None for p in disc.parameters())  # D untouched
    before = [p.detach().clone() for p in disc.parameters()]
    losses = [objective.discriminator_step(x, y, None).item() for _ in range(30)]
    assert any(not torch.equal(a, b) for a, b in zip(before, disc.parameters()))
    assert losses[-1] < losses[0]  # it learns to tell these photos from these reconstructions


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["pixel,feature", "pixel,adversarial", "feature,adversarial"])
def test_training_with_each_loss_term(tmp_path, loss):
    write_images(tmp_path / "data", 8)
    last = train(config(tmp_path / "data", tmp_path / "r", loss=loss, epochs=2,
                        val=str(tmp_path / "data")), log=quiet)
    for name in parse_losses(loss):
        assert f"train_{name}" in last
    assert ("train_disc" in last) == ("adversarial" in loss)
    decoder = featinv.load_decoder(tmp_path / "r" / "decoder.safetensors")
    assert decoder.meta["training"]["loss"] == loss
    assert not any(k.startswith("discriminator") for k in load_file(
        str(tmp_path / "r" / "decoder.safetensors")))  # the decoder file holds the decoder
    images = featinv.invert([torch.rand(3, 32, 32)], checkpoint=tmp_path / "r" / "decoder.safetensors")
    assert images[0].shape == (3, 32, 32)


@pytest.mark.slow
def test_a_non_differentiable_representation_needs_a_comparator(tmp_path):
    write_images(tmp_path / "data", 8)
    with pytest.raises(FeatinvError, match="'lbp' is not; name one with --comparator"):
        train(config(tmp_path / "data", tmp_path / "r", feature="lbp", loss="pixel,feature"),
              log=quiet)
    last = train(config(tmp_path / "data", tmp_path / "r2", feature="lbp",
                        loss="pixel,feature", comparator="hog"), log=quiet)
    assert last["train_feature"] > 0


@pytest.mark.slow
def test_resume_with_a_discriminator_matches_a_straight_run(tmp_path):
    write_images(tmp_path / "data", 16)
    kw = dict(loss="pixel,adversarial=0.1", epochs=2, schedule="constant")
    train(config(tmp_path / "data", tmp_path / "straight", **kw), log=quiet)
    train(config(tmp_path / "data", tmp_path / "cut", **{**kw, "epochs": 1}), log=quiet)
    state = load_file(str(tmp_path / "cut" / STATE_FILE))
    assert any(k.startswith("discriminator.") for k in state)
    assert any(k.startswith("disc_opt.") for k in state)
    train(config(tmp_path / "data", tmp_path / "cut", **kw), resume=True, log=quiet)
    a = load_file(str(tmp_path / "straight" / "decoder.safetensors"))
    b = load_file(str(tmp_path / "cut" / "decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FeatinvError, match="loss="):
        train(config(tmp_path / "data", tmp_path / "cut", epochs=3), resume=True, log=quiet)


@pytest.mark.slow
def test_fine_tuning_a_pixel_decoder_with_other_losses(tmp_path):
    write_images(tmp_path / "data", 8)
    train(config(tmp_path / "data", tmp_path / "pixel"), log=quiet)
    logs = []
    train(config(tmp_path / "data", tmp_path / "tuned", loss="pixel,adversarial",
                 init_from=str(tmp_path / "pixel" / "decoder.safetensors")), log=logs.append)
    assert any("starting from the weights of" in m for m in logs)
    assert not any("resuming" in m for m in logs)  # a fresh start, not a resume
    with pytest.raises(FeatinvError, match=r"^init_from='.*differs from the one this run builds; "
                       r"use the same preset, width and image_size\.$"):  # the API's words
        train(config(tmp_path / "data", tmp_path / "wide", width=0.5,
                     init_from=str(tmp_path / "pixel" / "decoder.safetensors")), log=quiet)
    meta = checkpoint.read_meta(tmp_path / "tuned" / "decoder.safetensors")
    assert meta["training"]["init_from"].endswith("decoder.safetensors")
