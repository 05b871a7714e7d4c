"""SqueezeNet's ImageNet weights ship in the package (weights name ``deepcompression``), decoders
record the weights they were trained against, and other weights are said in one line."""
from __future__ import annotations

import shutil
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import featinv
from featinv.decoders.networks import build_decoder
from featinv.errors import CheckpointError
from featinv.features import squeezenet
from featinv.inversion.encoder_weights import WeightsMismatch
from featinv.inversion.load import extractor_for, load_decoder
from featinv.io.checkpoint import decoder_metadata, read_meta, save_decoder, weights_fingerprint

from helpers import REPO, error_lines, run_cli, write_images

SHIPPED = squeezenet.SHIPPED_WEIGHTS["deepcompression"][0]


def test_weights_ship_in_the_package_with_their_licence():
    folder = REPO / "featinv" / "weights"
    assert SHIPPED.parent == folder and SHIPPED.is_file()
    assert SHIPPED.stat().st_size < 5 * 1024 * 1024  # 0.9 MB as shipped
    notice = (folder / "NOTICE.md").read_text()
    assert "BSD 2-clause" in notice and "songhan/SqueezeNet-Deep-Compression" in notice
    assert "Redistribution and use" in (folder / "LICENSE-SqueezeNet.txt").read_text()
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = data["tool"]["setuptools"]["package-data"]["featinv"]
    for name in (SHIPPED.name, "LICENSE-SqueezeNet.txt", "NOTICE.md"):
        assert any(Path("weights", name).match(pattern) for pattern in shipped), name


def test_default_weights_are_the_shipped_ones_in_caffe_convention():
    ext = featinv.get_feature("squeezenet.conv1")
    assert ext.params == {"weights": "deepcompression", "convention": "auto"}
    assert ext.module.preprocess.convention.name == "caffe"
    with np.load(SHIPPED, allow_pickle=False) as data:
        first = torch.from_numpy(data["features.0.weight"])
    assert torch.equal(ext.module.body[0].weight, first)
    # the same weights as a file named *caffe*: the same features
    x = torch.rand(1, 3, 64, 64)
    by_file = featinv.get_feature("squeezenet.conv1", weights=str(SHIPPED))
    assert torch.equal(ext(x), by_file(x))


def _tiny(tmp_path, weights="deepcompression", layer="conv1", name="dec.safetensors"):
    """An untrained, tiny decoder of ``squeezenet.<layer>`` trained-as-if on ``weights``."""
    ext = featinv.get_feature(f"squeezenet.{layer}", weights=weights)
    decoder = build_decoder(ext.spec, ext.layout(48, 48), 48, "compact", 0.125)
    with torch.no_grad():  # as training sets them: its pictures stay near [0, 1]
        decoder.set_feature_stats(ext(torch.rand(4, 3, 48, 48,
                                                 generator=torch.Generator().manual_seed(0))))
    return save_decoder(decoder, tmp_path / name, decoder_metadata(ext, decoder)), ext


@pytest.mark.slow
def test_metadata_names_and_fingerprints_the_weights(tmp_path):
    path, ext = _tiny(tmp_path)
    feature = read_meta(path)["feature"]
    assert feature["params"]["weights"] == "deepcompression"
    assert feature["weights_sha256"] == weights_fingerprint(ext.module)
    assert len(feature["weights_sha256"]) == 64
    other = featinv.get_feature("squeezenet.conv1", weights="random")
    assert weights_fingerprint(other.module) != feature["weights_sha256"]
    hog = featinv.get_feature("hog")
    assert weights_fingerprint(hog.module) is None
    assert "weights_sha256" not in decoder_metadata(hog, load_decoder("hog"))["feature"]


def _changed_copy(tmp_path, name="changed_caffe.npz") -> Path:
    with np.load(SHIPPED, allow_pickle=False) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    arrays["features.0.bias"] = arrays["features.0.bias"] + 1
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


@pytest.mark.slow
def test_other_weights_are_one_warning(tmp_path, capsys):
    path, _ = _tiny(tmp_path)
    decoder = load_decoder(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extractor_for(decoder)  # the stored weights: no warning
    with pytest.warns(WeightsMismatch, match="trained on features of weights='deepcompression'"):
        extractor_for(decoder, weights=str(_changed_copy(tmp_path)))
    # a weights file changed after training: the CLI says so on one line, and still inverts
    copy = tmp_path / "mine_caffe.npz"
    shutil.copy(SHIPPED, copy)
    trained, _ = _tiny(tmp_path, weights=str(copy), name="on_file.safetensors")
    _changed_copy(tmp_path, copy.name)
    image = write_images(tmp_path / "images", 1, size=(48, 48))[0]
    code, out, err = run_cli(capsys, "invert", "-c", trained, image, "-o", tmp_path / "out")
    assert code == 0 and out.strip().endswith(".png")
    warned = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warned) == 1 and "mine_caffe.npz" in warned[0] and "sha256" in warned[0]
    assert "may be poor" in warned[0] and not error_lines(err)


def test_missing_weights_file_falls_back_to_the_shipped_copy(tmp_path):
    copy = tmp_path / "elsewhere" / "squeezenet1_0_deepcompression_caffe.npz"
    copy.parent.mkdir()
    shutil.copy(SHIPPED, copy)
    path, _ = _tiny(tmp_path, weights=str(copy))
    shutil.rmtree(copy.parent)  # the trainer's copy is not on this machine
    decoder = load_decoder(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ext = extractor_for(decoder)
    assert ext.params["weights"] == "deepcompression"
    # other weights that are gone: one line naming them
    changed = _changed_copy(tmp_path)
    path, _ = _tiny(tmp_path, weights=str(changed), name="gone.safetensors")
    changed.unlink()
    with pytest.raises(CheckpointError) as info:
        extractor_for(load_decoder(path))
    message = str(info.value)
    assert "changed_caffe.npz" in message and "cannot be loaded here" in message
    assert "\n" not in message


@pytest.mark.slow
def test_invert_with_other_weights_says_so_on_one_line(tmp_path, capsys):
    path, _ = _tiny(tmp_path)
    image = write_images(tmp_path / "images", 1, size=(48, 48))[0]
    changed = _changed_copy(tmp_path)
    code, out, err = run_cli(capsys, "invert", "-c", path, image, "-o", tmp_path / "a",
                             "--weights", changed)
    warned = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert code == 0 and out.strip().endswith(".png") and len(warned) == 1
    assert "weights='deepcompression'" in warned[0] and "changed_caffe.npz" in warned[0]
    code, _, err = run_cli(capsys, "invert", "-c", path, image, "-o", tmp_path / "b",
                           "--weights", "deepcompression")
    assert code == 0 and "Warning" not in err  # the weights it was trained on
    code, _, err = run_cli(capsys, "invert", "-f", "hog", image, "-o", tmp_path / "c",
                           "--weights", changed)
    assert code == 1 and len(error_lines(err)) == 1 and "'hog' has no weights" in err


def test_a_fine_tuned_encoder_keeps_the_preprocessing_it_was_trained_with(tmp_path):
    """A decoder trained with --finetune-encoder on deepcompression features computes them with
    Caffe's preprocessing, as in training (it used torchvision's: the autoencoder's error went
    from 0.29 in training to 0.69 in evaluate)."""
    import torch

    from featinv.inversion.encoder_weights import encoder_for
    from featinv.inversion.load import load_decoder
    from helpers import tiny_layer_decoders

    original = featinv.get_feature("squeezenet.conv1")  # deepcompression: Caffe convention
    entry = tiny_layer_decoders(tmp_path, ("conv1",), size=32)[0]
    decoder = load_decoder(entry.file)
    decoder.encoder_state = {k: v.clone() for k, v in original.module.state_dict().items()}
    rebuilt = encoder_for(decoder)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), original(x), atol=1e-5)
