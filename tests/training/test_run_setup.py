"""A run's configuration: frozen, checked once, resolved into a new object (the caller's is left
as it was), and what resolution fills in is checked where it is filled in."""
from __future__ import annotations

import dataclasses

import pytest

from helpers import quiet, train_configs, write_images
from featinv.errors import FeatinvError
from featinv.io import checkpoint
from featinv.training import loop
from featinv.training.config import DEFAULT_IMAGE_SIZE
from featinv.training.resolve import resolve_representation

config = train_configs(image_size=32, batch_size=4, budget=4, threads=1)


def test_the_config_is_frozen(tmp_path):
    cfg = config(tmp_path, tmp_path / "o")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 2  # type: ignore[misc]
    assert dataclasses.replace(cfg, epochs=2).epochs == 2


def test_a_run_checks_once_and_leaves_the_callers_config_alone(tmp_path, monkeypatch):
    write_images(tmp_path / "data", 4)
    checked = []
    real = loop.check_config
    monkeypatch.setattr(loop, "check_config", lambda cfg: checked.append(cfg) or real(cfg))
    cfg = config(tmp_path / "data", tmp_path / "run", preset="compact")
    before = dataclasses.asdict(cfg)
    loop.train(cfg, log=quiet)
    assert checked == [cfg] and dataclasses.asdict(cfg) == before
    stored = checkpoint.read_meta(tmp_path / "run" / "decoder.safetensors")["training"]
    assert stored["width"] == 0.25 and cfg.width is None  # the preset's, resolved for the run
    assert stored["params"] and not cfg.params  # hog's parameters with their defaults


def test_resolution_fills_in_the_training_side_and_checks_it(tmp_path):
    cfg = config(tmp_path, tmp_path / "o", image_size=None)
    assert resolve_representation(cfg, {}, None).image_size == DEFAULT_IMAGE_SIZE
    assert resolve_representation(cfg, {}, 227).image_size == 227
    given = resolve_representation(dataclasses.replace(cfg, image_size=64), {}, 227)
    assert given.image_size == 64 and given.width == 0.25 and cfg.image_size is None
    with pytest.raises(FeatinvError, match="image_size must be a whole number from 8"):
        resolve_representation(cfg, {}, 4)  # a plugin's own side, out of range
    with pytest.raises(FeatinvError, match="64 px is not below the training size 48 px"):
        resolve_representation(dataclasses.replace(cfg, low_res_first="64:0.5"), {}, 48)
