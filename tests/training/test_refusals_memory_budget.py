"""Issue 24, round 13 N10 (rest): ``train`` keeps within ``$FEATINV_MEMORY_BUDGET`` as the other
commands do (it trained normally under 0.001 GB, which invert refused)."""
from __future__ import annotations

import pytest
import torch

from featinv.errors import DataError
from featinv.training.data import load_data, memory_room
from featinv.training.distributed import World
from helpers import error_lines, run_cli, train_configs, write_images

config = train_configs(image_size=128, batch_size=4)


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "train", 3, size=(64, 64))
    write_images(tmp_path / "val", 3, size=(64, 64), seed=1)
    return tmp_path


def test_a_batch_over_the_budget_is_refused_before_any_image_is_decoded(photos, monkeypatch,
                                                                         capsys):
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.001")
    code, out, err = run_cli(capsys, "train", "-f", "hog", "--data", photos / "train", "--val",
                             photos / "val", "-o", photos / "run", "--image-size", 128,
                             "--batch-size", 4, "--device", "cpu", "--workers", 0, "--budget", 8)
    assert code == 1 and error_lines(err) == [
        "Error: Training at 128 px holds at least 3.3 MB for a batch of 4 images and 3 "
        "validation images, more than the $FEATINV_MEMORY_BUDGET of 0.001 GB; use a smaller "
        "--batch-size, --image-size or --val-limit."], err
    assert not (photos / "run" / "decoder.safetensors").exists()


def test_the_api_says_it_in_its_words(photos, monkeypatch):
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.001")
    cfg = config(photos / "train", photos / "run")
    with pytest.raises(DataError, match=r"a batch of 4 images, more than the \$FEATINV_MEMORY_"
                                        r"BUDGET of 0\.001 GB; use a smaller batch_size or "
                                        r"image_size\."):
        memory_room(cfg, 0, World())


def test_images_that_do_not_fit_what_is_left_are_read_from_disk(photos, monkeypatch):
    """3.29 MB of batch and validation images leave 6 kB of a 3.3 MB budget: 'auto' reads the
    36 kB of decoded training images from disk, 'memory' is refused."""
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.0033")
    cfg = config(photos / "train", photos / "run", val=str(photos / "val"))
    data = load_data(cfg, torch.device("cpu"), World(), log=lambda m: None)
    assert data.where.startswith("read as needed (36.9 kB decoded, over the 6.8 kB budget)")
    import dataclasses

    with pytest.raises(DataError, match=r"^data_store='memory': the 3 training images take about "
                                        r"36\.9 kB decoded, more than the \$FEATINV_MEMORY_BUDGET "
                                        r"of 0\.0033 GB leaves beside a step's batch and the "
                                        r"validation images; use data_store='files'"):
        load_data(dataclasses.replace(cfg, data_store="memory"), torch.device("cpu"), World(),
                  log=lambda m: None)
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "1")
    data = load_data(cfg, torch.device("cpu"), World(), log=lambda m: None)
    assert data.where.startswith("in memory (RAM)")


def test_processes_on_one_machine_share_it(photos, monkeypatch):
    """Each process holds its share of the batch; those on one machine share its budget."""
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.004")
    cfg = config(photos / "train", photos / "run")
    batch = 4 * 3 * 128 * 128 * 4 * 4
    assert memory_room(cfg, 0, World()) == 4_000_000 - batch
    assert memory_room(cfg, 0, World(size=2, local_size=2)) == 2_000_000 - batch // 2
    assert memory_room(cfg, 0, World(size=2, local_size=1)) == 4_000_000 - batch // 2
