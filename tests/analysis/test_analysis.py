"""The paper's analyses (featinv.analysis.analyses) and the `featinv analyze` commands."""
import json

import pytest
import torch

import featinv
from featinv.analysis.analyses import (FeatureSampler, interpolate, perturbation_errors, topk_variants,
                              unit_features)
from featinv.errors import FeatinvError
from featinv.analysis.evaluate import load_square_images
from featinv.inversion.load import extractor_for, reconstruct
from featinv.analysis.perturb import NAMES
from helpers import run_cli as run


@pytest.fixture(scope="module")
def hog_decoder():
    decoder = featinv.load_decoder("hog")
    return extractor_for(decoder), decoder


@pytest.fixture(scope="module")
def photos(val_subset):
    return load_square_images(val_subset, 128, 8)[0]


@pytest.fixture(scope="module")
def scores_decoder(tmp_path_factory, train_subset):
    """A small decoder for SqueezeNet's class scores (random weights, as the tests may use)."""
    from featinv.training.loop import TrainConfig, train
    out = tmp_path_factory.mktemp("pool10")
    train(TrainConfig(feature="squeezenet.pool10", params={"weights": "random"},
                      data=str(train_subset), out=str(out), image_size=64, epochs=1, limit=16,
                      batch_size=8, width=0.125, workers=0), log=lambda m: None)
    return out / "decoder.safetensors"


@pytest.mark.slow
def test_perturbations_raise_the_error_of_the_shipped_hog_decoder(hog_decoder, photos):
    errors = perturbation_errors(*hog_decoder, photos)
    assert list(errors) == list(NAMES)
    for name in NAMES[1:]:
        assert errors[name] > errors["none"], (name, errors)


def test_unknown_perturbation_is_named(hog_decoder, photos):
    with pytest.raises(FeatinvError, match="Unknown perturbation.*shuffle"):
        perturbation_errors(*hog_decoder, photos[:2], ["shuffle"])


@pytest.mark.slow
def test_interpolation_ends_at_the_two_reconstructions(hog_decoder, photos):
    extractor, decoder = hog_decoder
    strip = interpolate(extractor, decoder, photos[0], photos[1], steps=4)
    assert strip.shape == (4, 3, 128, 128)
    ends = reconstruct(extractor, decoder, photos[:2])
    torch.testing.assert_close(strip[0], ends[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(strip[-1], ends[1], atol=1e-5, rtol=0)
    assert (strip[1] - strip[0]).abs().mean() > 1e-3


def test_histogram_samples_match_sparsity_and_ranges():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 6, 4, 4, generator=gen).clamp_min(0)  # about half zeros
    feats[:, 0] = 0  # a channel that is never active
    sampler = FeatureSampler(feats)
    k = round(float((feats.flatten(1) != 0).sum(1).double().mean()))
    samples = sampler.histogram(5, contrast=1.0, seed=1)
    assert samples.shape == (5, 6, 4, 4)
    assert ((samples.flatten(1) != 0).sum(1) == k).all()
    assert (samples[:, 0] == 0).all()
    hi = feats.flatten(1).max(0).values
    assert (samples.flatten(1) <= hi + 1e-6).all() and (samples >= 0).all()
    assert torch.equal(sampler.histogram(5, 2.0, seed=1), 2 * samples)


def test_truncated_gaussian_matches_sparsity_and_mean():
    gen = torch.Generator().manual_seed(0)
    feats = (torch.randn(400, 64, generator=gen) * 2 - 1).clamp_min(0)
    sampler = FeatureSampler(feats)
    s = sampler.gaussian(400, contrast=1.0, seed=3)
    real_nz, fake_nz = (feats != 0).float().mean(), (s != 0).float().mean()
    assert abs(float(real_nz - fake_nz)) < 0.02
    assert abs(float(feats[feats != 0].mean() - s[s != 0].mean())) < 0.05


def test_topk_variants_split_the_scores():
    scores = torch.tensor([[5.0, 1.0, 4.0, 2.0, 3.0]])
    v = topk_variants(scores, k=2)
    assert v["top"].tolist() == [[5.0, 0, 4.0, 0, 0]]
    assert torch.equal(v["top"] + v["all-but-top"], v["all"])
    with pytest.raises(FeatinvError, match="class-score layer"):
        topk_variants(torch.zeros(1, 3, 4, 4))


def test_unit_features_have_one_active_unit(hog_decoder):
    _, decoder = hog_decoder
    f = unit_features(decoder, 7)
    assert f.shape == (1, 31, 16, 16) and (f != 0).sum() == 1 and f[0, 7, 8, 8] > 0
    with pytest.raises(FeatinvError, match="out of range"):
        unit_features(decoder, 31)


@pytest.mark.slow
def test_analyze_perturb_writes_json_and_chart(capsys, tmp_path, val_subset):
    code, out, err = run(capsys, "analyze", "perturb", "hog", "lbp", "--data", str(val_subset),
                         "--limit", "4", "-p", "binarize", "-p", "none", "-o", str(tmp_path))
    assert code == 0, err
    result = json.loads((tmp_path / "perturb.json").read_text())
    assert [row["layer"] for row in result["layers"]] == ["hog", "lbp"]
    assert set(result["layers"][0]["errors"]) == {"binarize", "none"}
    assert (tmp_path / "perturb.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_analyze_interpolate_sample_unit(capsys, tmp_path, val_subset):
    from PIL import Image
    code, _, err = run(capsys, "analyze", "interpolate", "hog", "skimage:astronaut",
                       "skimage:coffee", "--steps", "3", "-o", str(tmp_path / "i.png"))
    assert code == 0, err
    assert Image.open(tmp_path / "i.png").width > 5 * 128  # A | 3 steps | B
    for method in ("histogram", "gaussian"):
        code, _, err = run(capsys, "analyze", "sample", "hog", "--data", str(val_subset),
                           "--limit", "8", "--n", "2", "--method", method,
                           "-o", str(tmp_path / f"{method}.png"))
        assert code == 0, err
    code, _, err = run(capsys, "analyze", "unit", "hog", "-u", "0", "-u", "30",
                       "-o", str(tmp_path / "u.png"))
    assert code == 0, err


@pytest.mark.slow
def test_analyze_topk_on_class_scores(capsys, tmp_path, scores_decoder):
    code, out, err = run(capsys, "analyze", "topk", str(scores_decoder), "skimage:coffee",
                         "-k", "5", "-o", str(tmp_path))
    assert code == 0, err
    result = json.loads((tmp_path / "topk.json").read_text())
    assert set(result["distance"]["skimage:coffee"]) == {"all", "top", "all-but-top"}
    assert (tmp_path / "coffee.topk.png").exists()
    code, _, err = run(capsys, "analyze", "topk", str(scores_decoder), "skimage:coffee",
                       "-o", str(tmp_path))  # a second run does not replace the first's files
    assert code == 1 and "--overwrite" in err
    code, _, err = run(capsys, "analyze", "topk", "hog", "skimage:coffee", "-o",
                       str(tmp_path / "hog"))
    assert code == 1 and "class-score layer" in err
