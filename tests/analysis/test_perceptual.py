"""Realism metrics (featinv.analysis.perceptual, featinv.analysis.compare): hand-computed values on tiny tensors,
the real SqueezeNet weights from ../shared, and the evaluate/compare command lines."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

import featinv
from featinv.analysis import perceptual
from featinv.analysis.compare import compare_folders, pair_files
from featinv.errors import DataError, FeatinvError, ShapeError
from featinv.analysis.perceptual import (Probe, class_agreement, feature_error, find_weights,
                                layer_distance, perceptual_distance, perceptual_scores,
                                realism_metrics, resolve_comparator, squeezenet_probe)

from helpers import write_images
from helpers import run_cli as run

RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
WEIGHTS = "data/weights/squeezenet1_0_deepcompression_caffe.npz"


def pixels(*colours) -> torch.Tensor:
    """A 2x2 image (3, 2, 2) from four RGB triples in reading order."""
    return torch.tensor(colours, dtype=torch.float32).T.reshape(3, 2, 2)


def toy_probe() -> Probe:
    """Taps the pixels themselves and their 2x2 average; the class is the dominant colour."""
    return Probe(nn.Identity(), nn.Sequential(nn.Identity(), nn.AvgPool2d(2)), [1, 2],
                 nn.Flatten(1), ["pixels", "mean"], size=None)


@pytest.fixture
def no_weights(monkeypatch):
    """As offline without ../shared: no environment variable, nothing at the search paths."""
    monkeypatch.delenv(perceptual.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(perceptual, "SEARCH_PATHS", ())


@pytest.fixture(scope="module")
def weights(shared_dir):
    path = shared_dir / WEIGHTS
    if not path.is_file():
        pytest.skip(f"the SqueezeNet weights {path} are not present")
    return path


# -- the formulas, by hand ---------------------------------------------------------------------

def test_layer_distance_by_hand():
    # position 0: (3,4)/5 vs (0,5)/5 -> (0.6,-0.2): 0.40; position 1: (1,0) vs (0,-1) -> 2
    a = torch.tensor([[3.0, 1.0], [4.0, 0.0]]).view(1, 2, 1, 2)
    b = torch.tensor([[0.0, 0.0], [5.0, -2.0]]).view(1, 2, 1, 2)
    assert layer_distance(a, b).item() == pytest.approx((0.40 + 2.0) / 2, abs=1e-6)
    assert layer_distance(a, 7 * a).item() == pytest.approx(0, abs=1e-6)  # scale-free
    assert layer_distance(a, -a).item() == pytest.approx(4, abs=1e-6)  # the largest value


def test_perceptual_distance_and_agreement_by_hand():
    x = torch.stack([pixels(RED, RED, RED, RED),
                     pixels((0.6, 0.8, 0), (0.3, 0.1, 0.2), RED, BLUE),
                     pixels(RED, RED, RED, GREEN)])
    y = torch.stack([pixels(GREEN, GREEN, GREEN, GREEN),
                     0.5 * x[1],                              # same directions everywhere
                     pixels(RED, RED, RED, RED)])
    layers, agree = perceptual_scores(toy_probe(), x, y, batch_size=2)  # two batches
    # image 0: every unit vector differs by 2 at both layers, and red != green
    # image 1: halving changes no unit vector and no argmax
    # image 2: one pixel of four differs (2 / 4); mean (3,1,0)/sqrt(10) vs (1,0,0)
    expected = torch.tensor([[2.0, 2.0], [0.0, 0.0], [0.5, 2 - 6 / math.sqrt(10)]],
                            dtype=torch.float64)
    assert torch.allclose(layers, expected, atol=1e-6)
    assert agree.tolist() == [False, True, True]
    assert torch.allclose(perceptual_distance(toy_probe(), x, y), expected.mean(1), atol=1e-6)
    assert class_agreement(toy_probe(), x, y) == pytest.approx(2 / 3)
    out = realism_metrics(x, y, probe=toy_probe())
    assert out["perceptual_layers"] == pytest.approx({"pixels": 2.5 / 3,
                                                      "mean": (4 - 6 / math.sqrt(10)) / 3})
    assert out["feature_error"] is None and out["comparator"] is None


def test_known_permutation_gives_expected_agreement():
    x = torch.stack([pixels(*[c] * 4) for c in (RED, GREEN, BLUE, RED)])
    assert class_agreement(toy_probe(), x, x.roll(1, 0)) == pytest.approx(1 / 4)  # red, red
    assert class_agreement(toy_probe(), x, x[[3, 1, 2, 0]]) == 1.0  # two reds swapped
    assert class_agreement(toy_probe(), x, x[[1, 2, 0, 3]]) == pytest.approx(1 / 4)


def test_identical_images_give_zero_and_full_agreement():
    x = torch.rand(5, 3, 2, 2)
    assert perceptual_distance(toy_probe(), x, x).abs().max() == 0
    assert class_agreement(toy_probe(), x, x.clone()) == 1.0


def test_feature_error_by_hand():
    x = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    y = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    err = feature_error(nn.Identity(), x, y)
    assert err.dtype == torch.float64 and torch.allclose(err, torch.tensor([4 / 9, 0.0],
                                                                           dtype=torch.float64))
    assert torch.equal(feature_error(nn.Identity(), x, y, device="cpu"), err)
    zero = torch.zeros(1, 3, 1, 1)
    assert feature_error(nn.Identity(), zero, zero).item() == 0  # 0/0 is 0, not NaN
    assert realism_metrics(x, y, comparator=nn.Identity())["feature_error"] == pytest.approx(2 / 9)


def test_feature_error_of_a_registered_representation_in_batches():
    torch.manual_seed(0)
    hog = featinv.get_feature("hog")
    x, y = torch.rand(5, 3, 24, 24), torch.rand(5, 3, 24, 24)
    fx, fy = hog(x).flatten(1).double(), hog(y).flatten(1).double()
    want = ((fy - fx) ** 2).sum(1) / (fx ** 2).sum(1)
    assert torch.allclose(feature_error(hog, x, y, batch_size=2), want)
    assert feature_error(hog, x, x).abs().max() == 0
    with pytest.raises(ShapeError):
        feature_error(hog, x, y[:4])


def test_comparator_choice():
    hog, lbp = featinv.get_feature("hog"), featinv.get_feature("lbp")
    assert resolve_comparator("auto", None, hog) is hog
    assert resolve_comparator("auto", None, lbp) is None  # not differentiable
    assert resolve_comparator("none", None, hog) is None
    assert resolve_comparator("hog", {"cell_size": "4"}).params["cell_size"] == 4
    with pytest.raises(FeatinvError, match="--comparator-param and --comparator-weights need --comparator NAME"):
        resolve_comparator("auto", {"cell_size": "4"}, hog)


# -- weights: passed, found, or one clear error -------------------------------------------------

def test_no_weights_offline_is_one_clear_error(no_weights):
    with pytest.raises(FeatinvError) as info:
        find_weights("auto")
    message = str(info.value)
    assert "pass --perceptual-weights PATH" in message and "\n" not in message
    with pytest.raises(FeatinvError, match="no such file"):
        find_weights("/nonexistent/squeezenet.npz")


def test_weights_from_the_environment(no_weights, monkeypatch, tmp_path):
    path = tmp_path / "w.npz"
    path.write_bytes(b"")
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(path))
    assert find_weights(None) == path and find_weights("auto") == path
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(tmp_path / "gone.npz"))
    with pytest.raises(FeatinvError, match="no such file"):
        find_weights()


def test_a_weights_path_that_is_no_file_is_named_with_where_it_came_from(
        no_weights, monkeypatch, tmp_path, capsys):
    """Round 6: $FEATINV_PERCEPTUAL_WEIGHTS=/dev/zero was '--perceptual-weights /dev/zero: no such
    file' (an option the user did not pass, and a file that exists)."""
    write_images(tmp_path / "a", 2)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, "/dev/zero")
    code, _, err = run(capsys, "compare", tmp_path / "a", tmp_path / "b")
    assert code == 1 and "Error: $FEATINV_PERCEPTUAL_WEIGHTS=/dev/zero: is not a regular file" \
        in err and "--perceptual-weights /dev/zero" not in err, err
    with pytest.raises(FeatinvError) as info:
        find_weights("auto")
    assert str(info.value).startswith("$FEATINV_PERCEPTUAL_WEIGHTS=/dev/zero: is not a regular "
                                      "file") and "unset it" in str(info.value)
    monkeypatch.delenv(perceptual.WEIGHTS_ENV)
    with pytest.raises(FeatinvError, match="^--perceptual-weights .*: is not a regular file"):
        find_weights(str(tmp_path))


@pytest.mark.slow
def test_squeezenet_probe_is_featinvs_network(weights, shared_dir):
    probe = squeezenet_probe(weights)
    assert probe.names == perceptual.DEFAULT_LAYERS and probe.weights == str(weights)
    assert probe.preprocess.convention.name == "caffe"
    photos = sorted((shared_dir / "data" / "val").glob("*.jpg"))[:2]
    x = torch.stack([featinv.io.images.load_square(p, 64) for p in photos])
    big = nn.functional.interpolate(x, size=(227, 227), mode="bilinear", antialias=True)
    acts, logits = probe(x)
    with torch.no_grad():
        fire5 = featinv.get_feature("squeezenet.fire5", weights=str(weights))(big)
        pool10 = featinv.get_feature("squeezenet.pool10", weights=str(weights))(big)
    assert acts[2].shape == (2, 256, 27, 27) and torch.allclose(acts[2], fire5, atol=1e-4)
    assert torch.allclose(logits, pool10, atol=1e-4)
    layers, agree = perceptual_scores(probe, x, x[[0, 0]])  # the same photo, another one
    assert layers[0].abs().max() < 1e-6 and bool(agree[0])
    assert bool((layers[1] > 0.05).all()) and bool((layers[1] < 4).all())
    with pytest.raises(FeatinvError, match="perceptual layers"):
        squeezenet_probe(weights, layers=("conv10",))


# -- evaluate and compare ---------------------------------------------------------------------

REALISM_KEYS = {"comparator", "feature_error", "perceptual_weights", "perceptual_distance",
                "perceptual_layers", "class_agreement"}


@pytest.mark.slow
def test_evaluate_json_keys_with_default_comparator(capsys, image_folder):
    code, out, _ = run(capsys, "evaluate", "-f", "hog", "--data", str(image_folder),
                       "--image-size", "32", "--json", "--device", "cpu")
    result = json.loads(out)
    assert code == 0 and REALISM_KEYS <= set(result)
    assert result["comparator"] == "hog" and 0 < result["feature_error"] < 10
    assert result["perceptual_distance"] is None and result["class_agreement"] is None
    code, out, _ = run(capsys, "evaluate", "-f", "lbp", "--data", str(image_folder),
                       "--image-size", "32", "--json", "--device", "cpu")
    assert json.loads(out)["feature_error"] is None  # LBP is not differentiable
    code, out, _ = run(capsys, "evaluate", "-f", "lbp", "--data", str(image_folder),
                       "--image-size", "32", "--json", "--comparator", "hog",
                       "--comparator-param", "cell_size=4", "--device", "cpu")
    assert json.loads(out)["comparator"] == "hog" and json.loads(out)["feature_error"] > 0
    code, _, err = run(capsys, "evaluate", "-f", "lbp", "--data", str(image_folder),
                       "--comparator", "squeezenet.fire5", "--comparator-weights",
                       str(image_folder / "missing.npz"))
    assert code == 1 and "missing.npz does not exist" in err  # handed on as weights=PATH


@pytest.mark.slow
def test_evaluate_with_perceptual_weights(capsys, image_folder, weights):
    code, out, _ = run(capsys, "evaluate", "-f", "hog", "--data", str(image_folder),
                       "--limit", "3", "--image-size", "32", "--device", "cpu",
                       "--perceptual-weights", str(weights), "--json")
    result = json.loads(out)
    assert code == 0 and result["perceptual_weights"] == str(weights)
    assert list(result["perceptual_layers"]) == list(perceptual.DEFAULT_LAYERS)
    assert 0 < result["perceptual_distance"] < 4
    assert result["perceptual_distance"] == pytest.approx(
        sum(result["perceptual_layers"].values()) / 5)
    assert result["class_agreement"] in (0, 1 / 3, 2 / 3, 1)


def test_evaluate_without_weights_offline(capsys, image_folder, no_weights):
    code, out, err = run(capsys, "evaluate", "-f", "hog", "--data", str(image_folder),
                         "--perceptual-weights", "auto")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("Error: The perceptual distance and class agreement need SqueezeNet")
    assert "--perceptual-weights PATH" in err and "Traceback" not in err


@pytest.fixture
def pairs(tmp_path):
    """originals/ (a, b, c, sub/d) and recon/ holding copies named as invert names them."""
    orig, recon = tmp_path / "originals", tmp_path / "recon"
    paths = write_images(orig, 3, size=(40, 40)) + write_images(orig / "sub", 1, (40, 40), 1)
    (recon / "sub").mkdir(parents=True)
    shutil.copy(paths[0], recon / "img000.hog.png")
    shutil.copy(paths[1], recon / "img001.png")
    shutil.copy(paths[3], recon / "sub" / "img000.hog.png")
    shutil.copy(paths[2], recon / "stray.png")
    return orig, recon


def test_pairing_by_relative_name(pairs):
    orig, recon = pairs
    found, unmatched = pair_files(orig, recon)
    assert [(o.relative_to(orig).as_posix(), r.relative_to(recon).as_posix())
            for o, r in found] == [("img000.png", "img000.hog.png"),
                                   ("img001.png", "img001.png"),
                                   ("sub/img000.png", "sub/img000.hog.png")]
    assert [p.name for p in unmatched] == ["stray.png"]
    shutil.copy(recon / "img001.png", recon / "img000.lbp.png")
    with pytest.raises(DataError, match="several reconstructions .* --suffix"):
        pair_files(orig, recon)
    found, unmatched = pair_files(orig, recon, suffix=".hog")
    assert [r.name for _, r in found] == ["img000.hog.png", "img000.hog.png"]
    assert unmatched == []  # img001.png, img000.lbp.png, stray.png are not asked for
    shutil.copy(recon / "stray.png", recon / "stray.hog.png")
    assert [p.name for p in pair_files(orig, recon, suffix=".hog")[1]] == ["stray.hog.png"]
    with pytest.raises(DataError, match="both the originals and the reconstructions"):
        pair_files(orig, orig)


def test_compare_copies_scores_perfect(pairs, no_weights):
    orig, recon = pairs
    result = compare_folders(orig, recon, image_size=32, comparator="hog",
                             perceptual_weights=None)
    assert result["n_images"] == 3 and result["normalized_error"] == 0
    assert result["feature_error"] == 0 and result["ssim"] == pytest.approx(1)
    with pytest.raises(FeatinvError, match="--perceptual-weights PATH"):
        compare_folders(orig, recon)  # perceptual metrics are on by default


@pytest.mark.slow
def test_compare_cli_json(capsys, pairs, weights):
    orig, recon = pairs
    (recon / "img002.png").write_bytes(b"not an image")
    code, out, err = run(capsys, "compare", str(orig), str(recon), "--image-size", "32",
                         "--perceptual-weights", str(weights), "--json", "--device", "cpu")
    result = json.loads(out)
    assert code == 1 and "img002.png" in err and "skipping 1 reconstruction(s)" in err
    assert "stray.png" in err and len(err.strip().splitlines()) == 2
    assert result["unmatched"] == [str(recon / "stray.png")] and len(result["failed"]) == 1
    assert REALISM_KEYS <= set(result) and result["n_images"] == 3
    assert result["perceptual_distance"] == pytest.approx(0, abs=1e-6)
    assert result["class_agreement"] == 1 and result["feature_error"] is None
