"""The default training recipe, budgets, the weight EMA and the other recipe levers (issue 23)."""
from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO, quiet, run_cli, train_configs, write_images
from featinv.errors import FeatinvError, Interrupted
from featinv.training import loop
from featinv.choices import PRESETS
from featinv.training.config import (DEFAULT_BUDGET, ONECYCLE_RAMP, TrainConfig, check_config,
                                     low_res_plan, lr_at, total_steps)
from featinv.training.loop import STATE_FILE, train

ROOT = REPO


config = train_configs(image_size=32, batch_size=8, threads=1)


def test_the_defaults_are_the_measured_recipe():
    """What a user gets with no option but the feature, data and output (docs/recipe.md)."""
    cfg = TrainConfig(feature="hog", data="d", out="o")
    assert (cfg.preset, cfg.schedule, cfg.lr, cfg.batch_size) == ("residual", "onecycle", 5e-3, 32)
    assert cfg.width is None and PRESETS["residual"]["width"] == 0.25
    assert cfg.low_res_first == "auto" and cfg.ema == 0.0 and cfg.pixel_distance == "l2"
    assert cfg.epochs is None and cfg.budget is None
    assert cfg.crop_scale == (0.8, 1.0)
    assert total_steps(cfg, steps_per_epoch=10) == math.ceil(DEFAULT_BUDGET / 32)
    assert cfg.precision == "auto" and cfg.channels_last is None  # resolved per machine


def test_low_resolution_first_by_default_where_it_applies():
    """auto: half the training size for the first half of the steps, for grid layouts only."""
    cfg = TrainConfig(feature="hog", data="d", out="o", image_size=128)
    assert low_res_plan(cfg, "grid") == (64, 0.5)
    assert low_res_plan(cfg, "vector") is None  # a vector decoder makes one image size
    assert low_res_plan(TrainConfig(**{**cfg.__dict__, "feature_cache": "c"}), "grid") is None
    assert low_res_plan(TrainConfig(**{**cfg.__dict__, "image_size": 48}), "grid") is None
    assert low_res_plan(TrainConfig(**{**cfg.__dict__, "low_res_first": "off"}), "grid") is None
    explicit = TrainConfig(**{**cfg.__dict__, "low_res_first": "48:0.25"})
    assert low_res_plan(explicit, "grid") == (48, 0.25)
    with pytest.raises(FeatinvError, match="gives a vector"):
        low_res_plan(explicit, "vector")


def test_old_runs_with_a_null_width_resume_at_the_width_they_had(tmp_path):
    """Runs saved before widths were stored resume with the preset's width of their time."""
    from featinv.errors import CheckpointError
    from featinv.training.config import check_resumable, config_json

    now = TrainConfig(feature="hog", data="d", out="o", preset="residual", width=0.125)
    stored = {**config_json(now), "width": None}
    check_resumable(stored, now, tmp_path)  # 0.125 then, 0.125 now
    with pytest.raises(CheckpointError, match="width"):
        check_resumable(stored, TrainConfig(**{**now.__dict__, "width": 0.25}), tmp_path)


def test_train_help_and_docs_state_the_defaults(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "onecycle" in text and f"{DEFAULT_BUDGET:,}" in text and "residual" in text
    docs = (ROOT / "docs" / "cli.md").read_text()
    assert f"{DEFAULT_BUDGET:,}" in docs and "recipe.md" in docs


@pytest.mark.parametrize("schedule", ["linear", "onecycle", "cosine"])
def test_a_budget_sizes_the_schedule(schedule):
    cfg = TrainConfig(feature="hog", data="d", out="o", budget=1000, batch_size=8,
                      schedule=schedule, lr=1e-3)
    total = total_steps(cfg, steps_per_epoch=7)
    assert total == 125  # 1000 images in batches of 8, whatever the epoch length
    rates = [lr_at(cfg, s, total) for s in range(total)]
    assert rates[-1] < 0.03 * max(rates)  # decays to (nearly) zero at the budget's end
    peak_at = rates.index(max(rates))
    if schedule == "onecycle":
        assert abs(peak_at - ONECYCLE_RAMP * total) <= 1 and rates[0] < 0.1 * max(rates)
    else:
        assert peak_at == 0
    twice = TrainConfig(**{**cfg.__dict__, "budget": 2000})
    assert total_steps(twice, 7) == 2 * total


def test_epochs_and_budget_together_are_refused():
    with pytest.raises(FeatinvError, match="Give epochs or budget, not both"):
        check_config(TrainConfig(feature="hog", data="d", out="o", budget=10, epochs=2))
    for bad in (0, -5, 10**13):
        with pytest.raises(FeatinvError, match="^budget must be a whole number"):
            check_config(TrainConfig(feature="hog", data="d", out="o", budget=bad))


def test_an_average_with_a_fine_tuned_encoder_is_refused():
    with pytest.raises(FeatinvError, match="ema cannot be used with finetune_encoder"):
        check_config(TrainConfig(feature="hog", data="d", out="o", ema=0.99,
                                 finetune_encoder=True))


@pytest.mark.parametrize("field, value, match", [
    ("ema", 1.0, "^ema"), ("ema", float("nan"), "^ema"), ("ema", -0.1, "^ema"),
    ("low_res_first", "64", None), ("low_res_first", "x:0.5", "^low_res_first"),
    ("low_res_first", "16:1.5", "^low_res_first"), ("low_res_first", "64:0.5", "not below"),
])
def test_recipe_levers_are_checked(field, value, match):
    cfg = TrainConfig(feature="hog", data="d", out="o", image_size=32, **{field: value})
    if field == "low_res_first" and value == "64":
        cfg = TrainConfig(feature="hog", data="d", out="o", image_size=128, low_res_first=value)
        check_config(cfg)  # SIZE alone: the first half
        return
    with pytest.raises(FeatinvError, match=match):
        check_config(cfg)


def test_a_budget_ends_the_run_inside_an_epoch(tmp_path):
    write_images(tmp_path / "data", 16)
    out = tmp_path / "run"
    train(config(tmp_path / "data", out, budget=40, val=str(tmp_path / "data")), log=quiet)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 5]  # 2 steps per epoch, 5 steps in all
    assert records[-1]["images_seen"] == 40 and "val_normalized_error" in records[-1]


def test_the_saved_decoder_is_the_weight_average(tmp_path):
    write_images(tmp_path / "data", 16)
    out = tmp_path / "run"
    train(config(tmp_path / "data", out, budget=48, ema=0.5), log=quiet)
    saved = load_file(str(out / "decoder.safetensors"))
    state = load_file(str(out / STATE_FILE))
    body = [k for k in saved if k.startswith("body.") and k.endswith("weight")]
    assert body
    for key in body:
        assert torch.equal(saved[key].float(), state[f"ema.module.{key}"].float())
    assert any(not torch.equal(state[f"ema.module.{k}"], state[f"decoder.{k}"]) for k in body)


def test_a_run_with_an_average_resumes_to_the_same_weights(tmp_path, monkeypatch):
    write_images(tmp_path / "data", 16)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    settings = dict(budget=64, ema=0.7, schedule="onecycle", low_res_first="16:0.5",
                    pixel_distance="l1")
    train(config(tmp_path / "data", straight, **settings), log=quiet)
    real_step = loop.Run._train_step

    def signal_at_step_three(self, *args):  # as if SIGTERM arrived during step 3
        terms = real_step(self, *args)
        if self.step == 3:
            self.stop.signum = signal.SIGTERM
        return terms

    with monkeypatch.context() as patch:
        patch.setattr(loop.Run, "_train_step", signal_at_step_three)
        with pytest.raises(Interrupted):
            train(config(tmp_path / "data", stopped, **settings), log=quiet)
    train(config(tmp_path / "data", stopped, **settings), resume=True, log=quiet)
    a = load_file(str(straight / "decoder.safetensors"))
    b = load_file(str(stopped / "decoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = load_file(str(straight / STATE_FILE)), load_file(str(stopped / STATE_FILE))
    assert all(torch.equal(sa[k], sb[k]) for k in sa if k.startswith("ema."))


def test_low_resolution_first_trains_smaller_crops_then_the_full_size(tmp_path, monkeypatch):
    write_images(tmp_path / "data", 16)
    sizes = []
    real = loop.augment
    monkeypatch.setattr(loop, "augment", lambda images, crops, size, device:
                        sizes.append(size) or real(images, crops, size, device))
    train(config(tmp_path / "data", tmp_path / "run", budget=80, low_res_first="16:0.4"),
          log=quiet)
    assert sizes == [16] * 4 + [32] * 6


def test_l1_trains_on_the_mean_absolute_error():
    from featinv.decoders.networks import build_decoder
    from featinv.representation.registry import get_feature
    from featinv.training.step import EncoderDecoder, optimizer_step

    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    hog = get_feature("hog")
    decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "residual")
    model = EncoderDecoder(hog, decoder, None, "fp32", torch.contiguous_format)
    decoder.eval()  # batch norm on running statistics: the same output in both passes
    with torch.no_grad():
        expected = (decoder(hog(x), size=(32, 32)) - x).abs().mean()
    opt = torch.optim.SGD(decoder.parameters(), lr=0.0)
    loss = optimizer_step(model, opt, x, pixel_distance="l1")["loss"]
    assert torch.allclose(loss, expected, atol=1e-6)


def test_the_residual_fine_preset_moves_capacity_to_fine_scales():
    """``residual_fine``: more blocks at the grid, a wider up-sampling path, capped coarse levels;
    a checkpoint's config rebuilds the same network."""
    import featinv
    from featinv.decoders.networks import build_decoder, rebuild_decoder
    from featinv.representation.layout import GridLayout

    spec, layout = featinv.get_spec("lbp"), GridLayout(58, 8, 8)
    base = build_decoder(spec, layout, 128, preset="residual", width=0.25).body
    fine = build_decoder(spec, layout, 128, preset="residual_fine", width=0.25)
    body = fine.body
    assert len(body.local) - 2 == 6 and len(base.local) - 2 == 2  # blocks (+ norm, act)
    up_fine = [m.conv[0].out_channels for m in body.expand if hasattr(m, "conv")]
    up_base = [m.conv[0].out_channels for m in base.expand if hasattr(m, "conv")]
    assert up_fine == [96, 48, 24] and up_base == [32, 16, 16]  # 3x the grid's 64 channels
    assert max(s[0][0].out_channels for s in body.down) == 128  # 512 x 0.25
    rebuilt = rebuild_decoder(spec, fine.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == \
        {k: v.shape for k, v in fine.state_dict().items()}


def test_validation_waits_until_batch_norm_has_left_the_low_resolution_phase(tmp_path,
                                                                             monkeypatch):
    write_images(tmp_path / "data", 16)
    monkeypatch.setattr(loop, "BN_SETTLE", 2)
    lines = []
    out = tmp_path / "run"
    train(config(tmp_path / "data", out, budget=80, low_res_first="16:0.4", val_every=1,
                 val=str(tmp_path / "data")), log=lines.append)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    validated = [r["step"] for r in records if "val_normalized_error" in r]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
    assert validated == [6, 8, 10]  # 16 px until step 4, then 2 steps for batch norm
    assert any("validation at 32 px waits" in line for line in lines)
    no_low_res = tmp_path / "plain"
    train(config(tmp_path / "data", no_low_res, budget=80, low_res_first="off", val_every=1,
                 val=str(tmp_path / "data")), log=quiet)
    records = [json.loads(x) for x in (no_low_res / "metrics.jsonl").read_text().splitlines()]
    assert all("val_normalized_error" in r for r in records)
