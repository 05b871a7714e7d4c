"""``featinv analyze layers``: the photo and its reconstruction from every shipped layer decoder of
a network (Figure 5's row), with tiny untrained SqueezeNet decoders shipped by a test plugin (the
built-in zoo is emptied for these tests, so they do not depend on which decoders it holds)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import featinv
from featinv.analysis.layers import LABEL_HEIGHT, PAD, labelled_row, layer_strip, shipped_layers
from featinv.inversion import zoo as builtin_zoo

from helpers import Shipper, error_lines, run_cli, tiny_layer_decoders

SIZE = 48
LAYERS = ("pool10", "conv1", "fire5")  # shipped out of order: the strip sorts them by depth


@pytest.fixture(scope="module")
def tiny_entries(tmp_path_factory):
    return tiny_layer_decoders(tmp_path_factory.mktemp("layers"), LAYERS, size=SIZE)


@pytest.fixture
def layerzoo(extra_plugins, tiny_entries, tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_zoo, "ZOO_DIR", tmp_path / "empty-zoo")
    extra_plugins("layerzoo", Shipper(tiny_entries))
    return tiny_entries


@pytest.mark.slow
def test_layers_are_found_and_ordered_by_depth(layerzoo):
    assert shipped_layers() == ("squeezenet", ["squeezenet.conv1", "squeezenet.fire5",
                                               "squeezenet.pool10"])
    assert shipped_layers("SqueezeNet")[0] == "squeezenet"
    with pytest.raises(featinv.FeatinvError, match="No layer of 'alexnet' has a shipped "
                       "decoder. Networks with shipped layer decoders: squeezenet"):
        shipped_layers("alexnet")


@pytest.mark.slow
def test_strip_holds_the_photo_and_each_layer(layerzoo):
    picture, result = layer_strip("skimage:astronaut", size=SIZE)
    assert picture.shape == (3, SIZE + LABEL_HEIGHT + 2 * PAD, 4 * (SIZE + PAD) + PAD)
    assert [row["layer"] for row in result["layers"]] == ["squeezenet.conv1", "squeezenet.fire5",
                                                          "squeezenet.pool10"]
    assert all(row["weights"] == "deepcompression" for row in result["layers"])
    assert all(0 < row["rmse"] < 1 for row in result["layers"])
    photo = featinv.io.images.load_square("skimage:astronaut", SIZE)
    assert torch.allclose(picture[:, PAD:PAD + SIZE, PAD:PAD + SIZE], photo, atol=1 / 255)


def test_labelled_row_writes_each_label_under_its_tile():
    tiles = [torch.full((3, 40, 40), v) for v in (0.2, 0.5, 0.8)]
    picture = labelled_row(tiles, ["photo", "conv1", ""])
    band = picture[:, PAD + 40:, :]
    for i, has_text in enumerate((True, True, False)):
        column = band[:, :, PAD + i * 42:PAD + i * 42 + 40]
        assert bool((column < 0.5).any()) == has_text  # dark text pixels on white
    assert torch.allclose(picture[:, PAD:PAD + 40, PAD + 42:PAD + 82], tiles[1], atol=1 / 255)


@pytest.mark.slow
def test_cli_writes_the_strip_and_prints_each_layer(layerzoo, tmp_path, capsys):
    out = tmp_path / "strip.png"
    code, stdout, err = run_cli(capsys, "analyze", "layers", "skimage:astronaut", "-o", out,
                                "--size", SIZE)
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == ["squeezenet.conv1", "squeezenet.fire5",
                                                          "squeezenet.pool10"]
    assert lines[-1].endswith("strip.png") and "RMS error" in lines[0]
    assert Image.open(out).size == (4 * (SIZE + PAD) + PAD, SIZE + LABEL_HEIGHT + 2 * PAD)
    code, _, err = run_cli(capsys, "analyze", "layers", "skimage:astronaut", "-o", out)
    assert code == 1 and "exists" in err  # no --overwrite
    code, _, err = run_cli(capsys, "analyze", "layers", "skimage:astronaut", "-n", "alexnet",
                           "-o", tmp_path / "b.png")
    assert code == 1 and len(error_lines(err)) == 1 and "Networks with shipped layer" in err


@pytest.mark.slow
def test_several_networks_need_a_name(layerzoo, extra_plugins, tmp_path, capsys):
    other = tiny_layer_decoders(tmp_path, ("conv1",), "alexnet", 64, weights="random")
    extra_plugins("alexzoo", Shipper(other))
    with pytest.raises(featinv.FeatinvError, match=r"several networks \(alexnet, squeezenet\); "
                       "pick one with -n NAME"):
        shipped_layers()
    assert shipped_layers("alexnet") == ("alexnet", ["alexnet.conv1"])
    code, out, err = run_cli(capsys, "analyze", "layers", "skimage:coffee", "-n", "alexnet",
                             "-o", tmp_path / "a.png")
    assert code == 0 and out.splitlines()[0].startswith("alexnet.conv1: RMS error")
    assert Image.open(tmp_path / "a.png").size == (2 * (64 + PAD) + PAD, 64 + LABEL_HEIGHT + 2 * PAD)


def test_no_network_with_layer_decoders_is_one_line(extra_plugins, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(builtin_zoo, "ZOO_DIR", tmp_path / "empty-zoo")
    extra_plugins("nothing", Shipper([]))
    code, out, err = run_cli(capsys, "analyze", "layers", "skimage:astronaut", "-o",
                             tmp_path / "s.png")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "No layer of any network has a shipped decoder" in err
