"""``featinv audit``: re-identification ranks and rates, the audit of shipped and freshly trained
decoders (JSON + HTML), and its one-line errors. Offline: tiny images, random-weight models."""
import json
import re

import pytest
import torch

import featinv
from featinv.analysis.reidentify import bootstrap_interval, check_gallery, ranks, summary
from featinv.errors import DataError

from helpers import error_lines, run_cli, write_images

# an independent space that needs no weight file: resnet18's pooled features, random weights
OFFLINE_REID = ("--reid-feature", "torchvision.resnet18.avgpool", "--reid-param",
                "pretrained=false", "--perceptual-weights", "none")


def test_ranks_count_ties_against_the_match():
    g = torch.eye(6)
    assert ranks(g, g).tolist() == [1] * 6  # perfect reconstructions
    assert ranks(g, torch.zeros(6, 6)).tolist() == [6] * 6  # all alike: never re-identified
    shifted = 0.4 * g + 0.6 * g[[1, 2, 3, 4, 5, 0]]  # closer to the next photo than its own
    assert ranks(g, shifted).tolist() == [2] * 6
    noisy = g * 3 + 0.1 * torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert ranks(g * 3, noisy).tolist() == [1] * 6
    assert ranks(g * 3, noisy * 100, cosine=True).tolist() == [1] * 6  # scale-free


def test_summary_rates_chance_and_interval():
    r = torch.tensor([1, 1, 2, 7, 1, 3, 9, 1, 5, 10])
    s = summary(r, samples=500)
    assert s["top1"] == 0.4 and s["top5"] == 0.7
    assert s["top1_chance"] == 0.1 and s["top5_chance"] == 0.5
    lo, hi = s["top1_interval"]
    assert 0.0 <= lo < 0.4 < hi <= 1.0
    assert s["cmc"][0] == 0.4 and s["cmc"][4] == 0.7 and s["cmc"][-1] == 1.0
    assert bootstrap_interval(torch.ones(5, dtype=torch.long), 1) == (1.0, 1.0)
    with pytest.raises(DataError, match="at least 2"):
        check_gallery(1)


def _audit(capsys, tmp_path, *args):
    code, out, err = run_cli(capsys, "audit", *args, "-o", tmp_path / "audit", "--bootstrap", 200)
    assert code == 0, err
    result = json.loads((tmp_path / "audit" / "audit.json").read_text())
    page = (tmp_path / "audit" / "audit.html").read_text()
    return result, page, out


@pytest.mark.slow
def test_audit_of_shipped_decoders(capsys, tmp_path, image_folder, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    result, page, out = _audit(capsys, tmp_path, "-f", "hog,lbp", "--data", image_folder,
                               "--image-size", 32, "--show", 3, "--open", *OFFLINE_REID)
    assert opened == [(tmp_path / "audit" / "audit.html").resolve().as_uri()]
    rows = result["representations"]
    assert result["n_images"] == 12 and [r["leak_rank"] for r in rows] == [1, 2]
    assert {r["label"] for r in rows} == {"hog", "lbp"}
    assert result["independent_space"] == "torchvision.resnet18.avgpool"
    for row in rows:
        assert 0 < row["normalized_error"] < 2 and row["image_size"] == 32
        for space in ("own", "independent"):
            block = row[space]
            assert block["top1_chance"] == pytest.approx(1 / 12)
            assert block["top5_chance"] == pytest.approx(5 / 12)
            assert sorted(block["ranks"]) == sorted(i["%s_rank" % space] for i in row["images"])
            assert block["top1"] == sum(r == 1 for r in block["ranks"]) / 12
        assert row["perceptual_distance"] is None and row["class_agreement"] is None
    # the ranking: most leaking first
    assert (rows[0]["independent"]["top1"], rows[0]["independent"]["top5"]) >= (
        rows[1]["independent"]["top1"], rows[1]["independent"]["top5"])
    # self-contained HTML: images inline, nothing fetched
    assert page.count('src="data:image/jpeg;base64,') == 2 * 3 * 2
    assert page.count('src="data:image/png;base64,') == 1  # the chart
    assert not re.search(r"(src|href)=\"(https?:|//)", page) and "<script" not in page
    assert 'id="ranking"' in page and "chance (guessing)" in page
    assert "leak" in out and "hog" in out


@pytest.mark.slow
def test_audit_with_squeezenet(capsys, tmp_path, val_subset, shared_dir):
    weights = shared_dir / "data" / "weights" / "squeezenet1_0_deepcompression_caffe.npz"
    if not weights.is_file():
        pytest.skip(f"no SqueezeNet weights at {weights}")
    result, page, _ = _audit(capsys, tmp_path, "-f", "hog", "--data", val_subset, "--limit", 8,
                             "--image-size", 64, "--perceptual-weights", weights, "--show", 2)
    row = result["representations"][0]
    assert result["independent_space"].startswith("SqueezeNet 1.0 fire9")
    assert 0 < row["perceptual_distance"] < 4 and 0 <= row["class_agreement"] <= 1
    assert all(i["same_class"] in (True, False) for i in row["images"])
    # HOG reconstructions of distinct photos are recognisable well above chance (1/8)
    assert row["own"]["top1"] > 0.5


@pytest.mark.slow
def test_audit_trains_a_vector_decoder_first(capsys, tmp_path, image_folder, extra_plugins):
    class Plugin:  # a plugin declaring a vector layout: the fully-connected decoder family
        @featinv.hookimpl
        def featinv_register_features(self, register):
            register(featinv.FeatureSpec(
                name="colourstats", description="mean and std of each colour", input="rgb",
                differentiable=True, build=lambda: _Stats(),
                rule=lambda: featinv.FixedVector(6)))

    extra_plugins("stats-plugin", Plugin())
    result, page, _ = _audit(capsys, tmp_path, "-f", "colourstats", "--data", image_folder,
                             "--train-data", image_folder, "--epochs", 1, "--image-size", 32,
                             *OFFLINE_REID)
    trained = tmp_path / "audit" / "decoders" / "colourstats" / "decoder.safetensors"
    assert trained.is_file()
    assert featinv.load_decoder(trained).config["family"] == "fc_upconv"
    row = result["representations"][0]
    assert row["checkpoint"] == str(trained) and row["own"]["n"] == 12


@pytest.mark.parametrize("args, wanted", [
    (["-f", "hog", "--limit", 1], "needs at least 2 of them (got 1)"),
    (["-f", "lbp", "-c", "featinv/zoo/hog.safetensors"], "is a decoder for 'hog', not 'lbp'"),
    (["-f", "hgo"], "Did you mean 'hog'"),
    (["-f", "torchvision.resnet18.avgpool"], "No shipped decoder for 'torchvision.resnet18"),
    (["-f", "hog", "--reid-feature", "torchvision.resnet18.nosuch"], "has no node 'nosuch'"),
    # issue 24 D15: -p was ignored for a shipped decoder or a -c file of other parameters
    (["-f", "lbp", "-p", "cell_size=8"],
     "The decoder shipped for 'lbp' was trained with cell_size=16, not 8 (-p): pass "
     "--train-data DIR"),
    (["-f", "hog", "-c", "featinv/zoo/hog.safetensors", "-p", "cell_size=4"],
     "hog.safetensors: a decoder trained with cell_size=8, not 4 (-p)"),
])
def test_bad_input_is_one_clear_line(capsys, tmp_path, image_folder, args, wanted):
    code, out, err = run_cli(capsys, "audit", *args, "--data", image_folder, "--image-size", 32,
                             "-o", tmp_path / "a", "--perceptual-weights", "none")
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and wanted in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "a" / "audit.html").exists()


def test_one_photo_is_refused(capsys, tmp_path):
    write_images(tmp_path / "one", 1)
    code, _, err = run_cli(capsys, "audit", "-f", "hog", "--data", tmp_path / "one")
    assert code == 1 and "needs at least 2 of them (got 1)" in error_lines(err)[0]


class _Stats(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], 1)


@pytest.mark.slow
def test_audit_json_is_alone_on_stdout(capsys, tmp_path, image_folder):
    """Round 7: 'audit --json' printed the two file paths before the JSON, so 'audit --json |
    jq' failed; with --json the paths go to stderr."""
    result, _, out = _audit(capsys, tmp_path, "-f", "hog", "--data", image_folder,
                            "--image-size", 32, "--show", 0, "--json", "--reid-feature", "none",
                            "--perceptual-weights", "none")
    assert json.loads(out) == result


def test_a_decoder_trained_earlier_is_reused_only_for_the_same_request(capsys, tmp_path,
                                                                        image_folder):
    """Issue 24 D15: 'audit --overwrite' with other -p reused OUT/decoders/NAME, trained for the
    old parameters, and reported its numbers. A decoder trained earlier is reused only when it
    was trained as this audit asks; else --overwrite trains a new one in its place, and without
    it the audit is refused saying what differs."""
    from featinv.io.checkpoint import read_meta

    out = tmp_path / "audit"
    trained = out / "decoders" / "dct" / "decoder.safetensors"
    train = ("--train-data", image_folder, "--epochs", 1, "--train-limit", 4)
    base = ("audit", "-f", "dct", "--data", image_folder, "--limit", 4, "--image-size", 16,
            "--bootstrap", 10, "--reid-feature", "none", "--perceptual-weights", "none",
            "-o", out)

    def params():
        return read_meta(trained)["feature"]["params"]

    code, _, err = run_cli(capsys, *base, *train)
    assert code == 0 and params()["coefficients"] == 15, err
    first = trained.read_bytes()
    code, _, err = run_cli(capsys, *base, *train, "--overwrite")  # the same request: reused
    assert code == 0 and "using the decoder trained earlier" in err and \
        trained.read_bytes() == first
    code, _, err = run_cli(capsys, *base, "-p", "coefficients=3", "--overwrite")
    assert code == 1 and error_lines(err) == [
        f"Error: {trained}: the decoder trained there earlier is not the one this audit asks "
        "for (coefficients=15, not 3); pass --train-data DIR and --overwrite to train a new one "
        "in its place, or choose another -o."]
    code, _, err = run_cli(capsys, *base, *train, "-p", "coefficients=3", "--overwrite")
    assert code == 0 and "is not the one asked for (coefficients=15, not 3): training a new " \
        "one in its place" in err and "using the decoder trained earlier" not in err
    assert params()["coefficients"] == 3
    result = json.loads((out / "audit.json").read_text())
    assert result["representations"][0]["checkpoint"] == str(trained)
    for name in ("audit.json", "audit.html"):
        (out / name).unlink()
    for option, value, said in (("--epochs", 2, "--epochs 1, not 2"),
                                ("--image-size", 24, "--image-size 16, not 24")):
        args = [*base, *train, "-p", "coefficients=3"]
        args[args.index(option) + 1] = value  # given once: a repeated option is refused
        code, _, err = run_cli(capsys, *args)
        assert code == 1 and len(error_lines(err)) == 1 and f"({said}); pass --overwrite to " \
            "train a new one in its place, or choose another -o." in err, err
    assert params()["coefficients"] == 3 and not (out / "audit.json").exists()
