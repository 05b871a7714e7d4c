"""The API behind ``featinv invert`` and ``featinv analyze``: several methods side by side, output
names, the method checks (raised once, by the API) and the analyses' pictures."""

import pytest
import torch

import featinv

from helpers import write_images
from featinv.analysis.evaluate import load_square_images
from featinv.analysis.figures import (interpolation_strip, load_pair, perturbation_study,
                                      reconstruction_strip, sampled_images, topk_strip,
                                      unit_images)
from featinv.choices import PERTURBATIONS
from featinv.errors import FeatinvError
from featinv.inversion.batch import invert_files, output_labels
from featinv.inversion.methods import FP32_ONLY, NEED_SOURCE, make_method, make_methods
from featinv.io.outputs import output_paths, plan_inputs


@pytest.fixture(scope="module")
def hog():
    return make_methods("decoder", ["hog"], device="cpu")[0]


@pytest.mark.parametrize("kwargs, message", [
    ({}, NEED_SOURCE),
    ({"features": ["hog", "lbp"], "checkpoints": ["a.safetensors"]},
     "2 --feature names for 1 --checkpoint files"),
    ({"method": "optimize", "features": ["hog"], "checkpoints": ["a.safetensors"]},
     "--method optimize takes --feature NAME and no --checkpoint"),
    ({"method": "optimize"}, "--method optimize takes --feature NAME"),
    ({"method": "optimize", "features": ["hog"], "decoder_name": "realistic"},
     "no --checkpoint or --decoder"),
    ({"method": "optimize", "features": ["hog"], "precision": "bf16"}, FP32_ONLY),
    ({"method": "sideways", "features": ["hog"]}, "Unknown method 'sideways'"),
])
def test_make_methods_refuses_wrong_combinations_before_loading(kwargs, message):
    with pytest.raises(FeatinvError) as info:
        make_methods(**kwargs)
    assert message in str(info.value)


def test_make_method_refuses_a_checkpoint_for_the_baseline():
    with pytest.raises(FeatinvError, match="--method optimize reads no --checkpoint"):
        make_method("optimize", "hog", "a.safetensors")
    with pytest.raises(FeatinvError, match="reads no --checkpoint or --decoder"):
        make_method("optimize", "hog", decoder_name="realistic")
    with pytest.raises(FeatinvError, match="applies to decoders"):
        make_method("optimize", "hog", precision="fp16")
    with pytest.raises(FeatinvError, match="Pass --feature NAME"):
        make_method("decoder")


def test_make_methods_builds_one_per_name_in_order():
    methods = make_methods("optimize", ["hog", "dct"], device="cpu",
                           progress_for=lambda name: None)
    assert [m.label for m in methods] == ["hog.optimize", "dct.optimize"]


def test_output_labels_and_paths(hog, tmp_path):
    assert output_labels([hog, hog]) == ["hog", "hog-2"]
    assert output_labels([hog, hog], side_by_side=True) == ["hog-hog-2"]
    images = write_images(tmp_path / "in", 2)
    inputs = plan_inputs([tmp_path / "in"])
    paths = output_paths(inputs, ["hog"], tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["img000.hog.png", "img001.hog.png"]
    assert output_paths(inputs[:1], ["hog"], tmp_path / "one.png") == {
        (images[0], "hog"): tmp_path / "one.png"}
    with pytest.raises(FeatinvError, match="names one PNG, but 2 pictures"):
        output_paths(inputs, ["hog"], tmp_path / "one.png")


def test_invert_files_writes_one_png_per_method_or_one_side_by_side(hog, tmp_path):
    write_images(tmp_path / "in", 2, size=(40, 32))
    written = []
    report = invert_files([tmp_path / "in"], [hog, hog], tmp_path / "out",
                          on_written=written.append)
    assert report.n_inputs == 2 and not report.failed
    assert written == report.written
    assert sorted(p.name for p in report.written) == [
        "img000.hog-2.png", "img000.hog.png", "img001.hog-2.png", "img001.hog.png"]
    report = invert_files([tmp_path / "in" / "img000.png"], [hog, hog], tmp_path / "sbs",
                          side_by_side=True)
    from PIL import Image
    [path] = report.written
    assert path.name == "img000.hog-hog-2.png"
    assert Image.open(path).size[0] > 3 * 40  # input | two reconstructions


def test_invert_files_reports_unreadable_images_and_goes_on(hog, tmp_path):
    write_images(tmp_path / "in", 1)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    errors = []
    report = invert_files([tmp_path / "in"], [hog], tmp_path / "out",
                          on_error=lambda exc, path: errors.append(path))
    assert [p.name for p in report.written] == ["img000.hog.png"]
    assert errors == [tmp_path / "in" / "broken.png"] == [p for p, _ in report.failed]


def test_invert_files_refuses_outputs_onto_inputs_and_existing_files(hog, tmp_path):
    write_images(tmp_path / "in", 1)
    checkpoint = tmp_path / "out" / "img000.hog.png"  # as if a protected input were there
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"x")
    with pytest.raises(FeatinvError, match="one of the inputs"):
        invert_files([tmp_path / "in"], [hog], tmp_path / "out", protect=[checkpoint],
                     overwrite=True)
    with pytest.raises(FeatinvError, match="exists already"):
        invert_files([tmp_path / "in"], [hog], tmp_path / "out")
    with pytest.raises(FeatinvError, match="at least one method"):
        invert_files([tmp_path / "in"], [], tmp_path / "out")


@pytest.fixture(scope="module")
def photos(val_subset):
    return load_square_images(val_subset, 128, 4)[0]


@pytest.mark.slow
def test_perturbation_study_gives_figure_7s_table(photos, val_subset, tmp_path):
    from safetensors.torch import load_file

    from featinv.inversion.load import ZOO_DIR
    from featinv.io import checkpoint

    # the shipped conv1 decoder with SqueezeNet's own conv1 weights as its encoder: what
    # --finetune-encoder writes, with the encoder unchanged (so the errors match)
    layer = "squeezenet.conv1"
    meta = checkpoint.read_meta(ZOO_DIR / f"{layer}.safetensors")
    meta["training"]["finetune_encoder"] = True
    encoder = featinv.get_feature(layer).module.state_dict()
    tensors = {**load_file(ZOO_DIR / f"{layer}.safetensors"),
               **{checkpoint.ENCODER_PREFIX + k: v.clone() for k, v in encoder.items()}}
    auto = tmp_path / "conv1_autoencoder.safetensors"
    checkpoint.atomic_save(tensors, auto, meta)
    rows = []
    result = perturbation_study([layer], photos, names=["none", "binarize"],
                                autoencoders=[auto], device="cpu", on_layer=rows.append)
    assert result["n_images"] == 4 and result["data"] is None and result["seed"] == 0
    assert result["layers"] == rows and rows[0]["layer"] == layer
    assert list(rows[0]["errors"]) == ["none", "binarize"]
    assert result["autoencoder"] == [{"layer": layer, "decoder": str(auto),
                                      "error": pytest.approx(rows[0]["errors"]["none"])}]
    with pytest.raises(FeatinvError, match="hog: this decoder was not trained with "
                       "--finetune-encoder, so it is no autoencoder"):
        perturbation_study(["hog"], photos, names=["none"], autoencoders=["hog"], device="cpu")
    from_folder = perturbation_study(["hog"], val_subset, limit=4, device="cpu")
    assert from_folder["data"] == str(val_subset) and from_folder["n_images"] == 4
    assert list(from_folder["layers"][0]["errors"]) == list(PERTURBATIONS)


@pytest.mark.slow
def test_the_strips_hold_one_picture_per_panel(photos):
    extractor, decoder = load_pair("hog", "cpu")
    pad = 2
    strip = reconstruction_strip(["hog", "hog"], photos[0], device="cpu")
    assert strip.shape == (3, 128 + 2 * pad, 3 * (128 + pad) + pad)
    assert interpolation_strip(extractor, decoder, photos[0], photos[1], 3).shape[-1] == \
        5 * (128 + pad) + pad
    sampled = sampled_images(extractor, decoder, photos, method="gaussian", count=2)
    assert sampled.shape[-1] == 2 * (128 + pad) + pad
    units = unit_images(decoder, [0, 1, 2])
    assert units.shape[-1] == 3 * (128 + pad) + pad
    with pytest.raises(FeatinvError, match="Unknown sampler"):
        sampled_images(extractor, decoder, photos, method="uniform")


@pytest.mark.slow
def test_topk_strip_measures_each_variant(tmp_path, train_subset):
    from featinv.training.loop import TrainConfig, train
    out = tmp_path / "pool10"
    train(TrainConfig(feature="squeezenet.pool10", params={"weights": "random"},
                      data=str(train_subset), out=str(out), image_size=32, epochs=1, limit=8,
                      batch_size=8, width=0.125, workers=0, val=None), log=lambda m: None)
    extractor, decoder = load_pair(out / "decoder.safetensors", "cpu")
    strip, distances = topk_strip(extractor, decoder, torch.rand(3, 32, 32), 2)
    assert strip.shape[-1] == 4 * (32 + 2) + 2
    assert list(distances) == ["all", "top", "all-but-top"]
    assert all(d >= 0 for d in distances.values())


def test_feature_picture_draws_a_file_and_refuses_one_too_small(tmp_path):
    from PIL import Image

    import featinv
    from featinv.analysis.visualize import feature_picture

    hog = featinv.get_feature("hog")
    picture = feature_picture(hog, "skimage:coffee", size=64)
    assert picture.ndim == 3 and picture.shape[0] == 3 and min(picture.shape[1:]) >= 64
    lbp = featinv.get_feature("lbp")
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(FeatinvError, match=f"too small: lbp .*e.g. size={lbp.rule.smallest_side}"):
        feature_picture(lbp, tmp_path / "tiny.png", name="LBP")


@pytest.mark.parametrize("out", ["SRC", "SRC/recs", "SRC/sub/x.png"])
def test_reconstructions_are_never_written_into_an_input_folder(tmp_path, capsys, out):
    """Round 13 N9: '-o' equal to (or inside) an input folder wrote the reconstructions among
    the photos, and the next audit of that folder scored them as photos."""
    from helpers import run_cli

    src = tmp_path / "photos"
    write_images(src, 1)
    (src / "sub").mkdir()
    target = out.replace("SRC", str(src))
    code, _, err = run_cli(capsys, "invert", "-f", "hog", src, "-o", target)
    assert code == 1 and "is inside the input folder" in err and "Traceback" not in err
    assert sorted(p.name for p in src.rglob("*.png")) == ["img000.png"]
    code, _, err = run_cli(capsys, "invert", "-f", "hog", src, "-o", tmp_path / "recs")
    assert code == 0, err  # a folder beside it is fine, and so is a file input's own folder
    code, _, err = run_cli(capsys, "invert", "-f", "hog", src / "img000.png", "-o", src / "sub")
    assert code == 0, err
