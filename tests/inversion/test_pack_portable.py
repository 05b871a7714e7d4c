"""A packed decoder carries its recipe but not the paths of the machine that trained it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, write_images
from featinv.inversion.shipped import pack, without_machine_paths
from featinv.io import checkpoint
from featinv.training.config import TrainConfig
from featinv.training.loop import train

ZOO = REPO / "featinv" / "zoo"


def _absolute_strings(value) -> list[str]:
    """Every string in a JSON value that looks like an absolute path."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _absolute_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _absolute_strings(v)]
    if isinstance(value, str) and (value.startswith("/") or value[1:3] in (":\\", ":/")):
        return [value]
    return []


@pytest.mark.parametrize("path", sorted(ZOO.glob("*.safetensors")), ids=lambda p: p.name)
def test_shipped_decoders_hold_no_paths_of_the_training_machine(path):
    meta = checkpoint.read_meta(path)
    assert not _absolute_strings(meta), _absolute_strings(meta)
    assert meta["training"]["data"] == "train"  # the recipe keeps the folder's own name


def test_pack_reduces_every_path_to_its_last_name(tmp_path):
    write_images(tmp_path / "photos" / "train", 16)
    run = tmp_path / "runs" / "hog"
    train(TrainConfig(feature="hog", data=str(tmp_path / "photos" / "train"), out=str(run),
                      val=str(tmp_path / "photos" / "train"), image_size=32, batch_size=8,
                      budget=16, workers=0, device="cpu", precision="fp32", threads=1),
          log=lambda _m: None)
    packed = pack(run, tmp_path / "hog.safetensors")
    meta = checkpoint.read_meta(packed)
    assert not _absolute_strings(meta), _absolute_strings(meta)
    assert (meta["training"]["data"], meta["training"]["out"]) == ("train", "hog")
    assert str(tmp_path) not in json.dumps(meta)


def test_paths_are_shortened_on_both_kinds_of_separator():
    short = without_machine_paths({"data": "/home/me/photos/", "feature_cache": "C:\\cache\\sift",
                                   "val": None, "lr": 0.001,
                                   "params": {"weights": "/w/squeezenet.npz", "cell_size": 8}})
    assert short == {"data": "photos", "feature_cache": "sift", "val": None, "lr": 0.001,
                     "params": {"weights": "squeezenet.npz", "cell_size": 8}}


# round 14 (issue 24) N8: a path or URL in feature.params (or a forged feature.plugin) was copied
# into every packed file, config.json and model card
@pytest.mark.parametrize("weights", ["/home/me/sq.safetensors", "C:\\w\\sq.npz", "~/sq.npz",
                                     "https://example.com/x.safetensors", "hf-hub:evil/repo"])
def test_pack_carries_no_path_or_url_of_the_representations_parameters(weights, tmp_path):
    from featinv.inversion.pack_meta import PackedMetadata

    source = ZOO / "squeezenet.conv1.safetensors"
    tensors, _ = checkpoint.load(source)
    meta = checkpoint.read_meta(source)
    meta["feature"]["params"]["weights"] = weights
    meta["feature"]["plugin"] = "os"
    forged = checkpoint.atomic_save(tensors, tmp_path / "forged.safetensors", meta)
    with pytest.warns(PackedMetadata) as caught:
        packed = pack(forged, tmp_path / "packed.safetensors")
    feature = checkpoint.read_meta(packed)["feature"]
    assert feature["params"]["weights"] == "deepcompression"  # the default, whose
    assert feature["weights_sha256"] == meta["feature"]["weights_sha256"]  # weights these are
    assert feature["plugin"] == "featinv.features.squeezenet"
    said = [str(w.message) for w in caught]
    assert f"is a path or URL, which a packed decoder does not carry: the packed file stores " \
           f"the default 'deepcompression' instead" in said[0]
    assert "its feature.plugin 'os' is not the plugin that provides 'squeezenet.conv1' here" \
        in said[1]


def test_a_parameter_whose_default_changes_the_layout_is_not_dropped():
    from featinv import CellGrid, CheckpointError, FeatureSpec, Param
    from featinv.inversion.pack_meta import portable_feature

    spec = FeatureSpec(name="tabled", description="x", input="gray", differentiable=True,
                       build=lambda table: None, params=(Param("table", "builtin"),),
                       rule=lambda table: CellGrid(1 if table == "builtin" else 2, 4))
    feature = {"name": "tabled", "params": {"table": "/data/t.txt"}, "plugin": None}
    with pytest.raises(CheckpointError, match=r"src: not packed: its feature.params.table "
                       r"'/data/t.txt' is a path or URL, and with the default, 'tabled' gives "
                       r"another layout"):
        portable_feature(feature, spec, 32, "src")
    plain = {"name": "tabled", "params": {"table": "builtin"}}
    assert portable_feature(plain, spec, 32, "src") == plain
