"""A decoder reference means one thing wherever it is given (issue 24, defect 2): a bare name is
a shipped decoder, never a file or folder of the current folder; a path is a path (``-c``, or
text that looks like one: ``./hog``, ``a/b``, ``x.safetensors``); ``local-dir:``, ``zoo:`` and
``hf-hub:`` say what they are. ``featinv.inversion.sources`` decides it for every caller."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featinv
from featinv import CheckpointError, FeatinvError, UnknownFeatureError
from featinv.inversion import sources
from featinv.inversion.load import ZOO_DIR, load_decoder
from featinv.io.checkpoint import read_meta
from featinv.training.loop import TrainConfig, train

from helpers import error_lines, run_cli, write_images


def pixels(path) -> np.ndarray:
    """A PNG's pixels; the bytes differ where its featinv mark names another decoder source."""
    with Image.open(path) as image:
        return np.asarray(image)

SHIPPED_HOG = ZOO_DIR / "hog.safetensors"
REALISTIC = ZOO_DIR / "hog.realistic.safetensors"


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def lookalikes(tmp_path, monkeypatch):
    """A working folder holding things named like shipped decoders: a training run ``hog/``
    (a real HOG decoder that is not the shipped default), a file ``lbp`` of junk, an empty
    folder ``sift/``, a run ``hog.realistic/`` (the default HOG decoder) and a run ``myrun/``."""
    (tmp_path / "hog").mkdir()
    shutil.copy(REALISTIC, tmp_path / "hog" / "decoder.safetensors")
    (tmp_path / "lbp").write_bytes(b"not a decoder")
    (tmp_path / "sift").mkdir()
    (tmp_path / "hog.realistic").mkdir()
    shutil.copy(SHIPPED_HOG, tmp_path / "hog.realistic" / "decoder.safetensors")
    (tmp_path / "myrun").mkdir()
    shutil.copy(REALISTIC, tmp_path / "myrun" / "decoder.safetensors")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_bare_names_are_shipped_decoders_whatever_the_folder_holds(lookalikes):
    shipped = load_decoder(SHIPPED_HOG)
    assert same_weights(load_decoder("hog"), shipped)
    assert not same_weights(load_decoder("hog"), load_decoder(REALISTIC))
    assert same_weights(load_decoder("hog.realistic"), load_decoder(REALISTIC))
    assert same_weights(load_decoder("hog", decoder="realistic"), load_decoder(REALISTIC))
    assert load_decoder("lbp").meta["feature"]["name"] == "lbp"  # not the junk file
    assert load_decoder("sift").meta["feature"]["name"] == "sift"  # not the empty folder
    assert sources.decoder_file("hog").parent == ZOO_DIR


@pytest.mark.slow
def test_paths_are_paths(lookalikes):
    run = load_decoder(REALISTIC)
    for ref in ("./hog", "hog/", str(lookalikes / "hog"), "./hog/decoder.safetensors",
                Path("hog"), "local-dir:hog", f"local-dir:{lookalikes / 'hog'}"):
        assert same_weights(load_decoder(ref), run), ref
    assert same_weights(load_decoder("./hog.realistic"), load_decoder(SHIPPED_HOG))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_decoder("./lbp")
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint"):
        load_decoder("./sift")
    with pytest.raises(CheckpointError, match="is not a folder; local-dir: takes a folder"):
        load_decoder("local-dir:lbp")


def test_a_bare_name_that_is_no_shipped_decoder_points_at_the_path(lookalikes):
    with pytest.raises(UnknownFeatureError, match=r"write \./myrun"):
        load_decoder("myrun")
    with pytest.raises(UnknownFeatureError) as info:
        load_decoder("nosuchname")  # nothing of that name here: no hint about a path
    assert "./" not in str(info.value)


@pytest.mark.slow
def test_invert_and_python_invert_use_the_shipped_decoder(lookalikes, capsys):
    code, out, err = run_cli(capsys, "invert", "-f", "hog", "skimage:coffee", "--size", "64",
                             "-o", "named.png")
    assert code == 0, err
    code, _, err = run_cli(capsys, "invert", "-c", SHIPPED_HOG, "skimage:coffee", "--size", "64",
                           "-o", "shipped.png")
    assert code == 0, err
    code, _, err = run_cli(capsys, "invert", "-c", "hog", "skimage:coffee", "--size", "64",
                           "-o", "run.png")  # -c takes a path: the run in ./hog
    assert code == 0, err
    named, shipped, run = (pixels(n) for n in ("named.png", "shipped.png", "run.png"))
    assert np.array_equal(named, shipped) and not np.array_equal(named, run)
    a = featinv.invert(["skimage:coffee"], feature="hog", size=64)[0]
    b = featinv.invert(["skimage:coffee"], checkpoint=SHIPPED_HOG, size=64)[0]
    c = featinv.invert(["skimage:coffee"], checkpoint="hog", size=64)[0]  # a path, as -c
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = featinv.invert(["skimage:coffee"], feature="hog.realistic", size=64)[0]
    assert torch.equal(d, featinv.invert(["skimage:coffee"], checkpoint=REALISTIC, size=64)[0])
    for feature in ("lbp", "sift"):  # a junk file and an empty folder of that name: no effect
        code, _, err = run_cli(capsys, "invert", "-f", feature, "skimage:coffee", "--size", "64",
                               "-o", f"{feature}.png")
        assert code == 0, err


@pytest.mark.slow
def test_variants_and_schemes_in_invert(lookalikes, capsys):
    code, out, err = run_cli(capsys, "invert", "-f", "hog.realistic", "skimage:coffee",
                             "--size", "64", "-o", "out")
    assert code == 0, err
    assert out.strip().endswith("coffee.hog.realistic.png")
    code, _, err = run_cli(capsys, "invert", "-c", "zoo:hog.realistic", "skimage:coffee",
                           "--size", "64", "-o", "zoo.png")
    assert code == 0, err
    assert np.array_equal(pixels("zoo.png"), pixels("out/coffee.hog.realistic.png"))
    code, _, err = run_cli(capsys, "invert", "-c", "sift.realistic", "skimage:coffee", "-o", "x")
    assert code == 1 and len(error_lines(err)) == 1
    code, _, err = run_cli(capsys, "invert", "-c", "lbp.nosuch", "skimage:coffee", "-o", "x")
    [line] = error_lines(err)
    assert "not found" in line
    code, _, err = run_cli(capsys, "invert", "-c", "hog", "--decoder", "realistic",
                           "skimage:coffee", "-o", "x")
    [line] = error_lines(err)
    assert "is a file" in line and code == 1


def test_dash_c_with_a_shipped_name_that_is_no_path_says_how_to_get_it(lookalikes, capsys):
    code, _, err = run_cli(capsys, "invert", "-c", "hog.realistic/nothing", "skimage:coffee",
                           "-o", "x")
    assert code == 1 and "not found" in err
    shutil.rmtree("hog")
    code, _, err = run_cli(capsys, "invert", "-c", "hog", "skimage:coffee", "-o", "x")
    [line] = error_lines(err)
    assert code == 1 and "takes a path" in line and "-f hog" in line and "zoo:hog" in line
    code, _, err = run_cli(capsys, "pack", "hog", "-o", "x.safetensors")  # pack reads as -c does
    [line] = error_lines(err)
    assert code == 1 and "zoo:hog" in line
    code, _, err = run_cli(capsys, "pack", "zoo:hog", "-o", "x.safetensors")
    assert code == 0, err


@pytest.mark.slow
def test_evaluate_reports_the_decoder_it_used(lookalikes, capsys):
    import json

    write_images(lookalikes / "photos", 3, size=(64, 64))
    results = {}
    for label, args in {"named": ["-f", "hog"], "shipped": ["-c", SHIPPED_HOG],
                        "run": ["-c", "hog"]}.items():
        code, out, err = run_cli(capsys, "evaluate", *args, "--data", "photos", "--json",
                                 "--image-size", "64", "--comparator", "none")
        assert code == 0, err
        results[label] = json.loads(out)
    assert results["named"]["checkpoint"] == "zoo:hog"
    assert results["run"]["checkpoint"] == "hog"
    metric = "normalized_error"
    assert results["named"][metric] == results["shipped"][metric] != results["run"][metric]


@pytest.mark.slow
def test_analyze_takes_names_and_paths_the_same_way(lookalikes, capsys):
    outputs = {}
    for label, ref in {"named": "hog", "shipped": SHIPPED_HOG, "run": "./hog"}.items():
        code, _, err = run_cli(capsys, "analyze", "unit", ref, "-u", "0", "-o", f"{label}.png")
        assert code == 0, err
        outputs[label] = pixels(f"{label}.png")
    assert np.array_equal(outputs["named"], outputs["shipped"])
    assert not np.array_equal(outputs["named"], outputs["run"])
    code, _, err = run_cli(capsys, "analyze", "unit", "myrun", "-u", "0", "-o", "m.png")
    [line] = error_lines(err)
    assert code == 1 and "./myrun" in line


@pytest.mark.slow
def test_init_from_a_name_is_the_shipped_decoder(lookalikes):
    write_images(lookalikes / "data", 8)
    base = dict(feature="hog", data="data", image_size=32, epochs=1, batch_size=4, workers=0,
                device="cpu", precision="fp32", preset="residual")
    shutil.rmtree("hog")
    train(TrainConfig(**base, out="hog"), log=lambda _: None)  # a 32 px run named hog
    logs = []
    train(TrainConfig(**base, out="tuned", init_from="./hog"), log=logs.append)
    assert any("starting from the weights of ./hog" in m for m in logs)
    # the bare name is the shipped 128 px decoder, which does not fit a 32 px run
    with pytest.raises(CheckpointError, match="differs from the one this run builds"):
        train(TrainConfig(**base, out="named", init_from="hog"), log=lambda _: None)
    assert read_meta(Path("tuned") / "decoder.safetensors")["training"]["init_from"] == "./hog"


def test_mismatched_decoders_are_refused_naming_both(lookalikes):
    with pytest.raises(CheckpointError, match=r"is a decoder for 'hog', not 'lbp'"):
        load_decoder("./hog", feature="lbp")
    with pytest.raises(CheckpointError) as info:
        load_decoder("hog", feature="hog", params={"cell_size": 4})
    message = str(info.value)
    assert "cell_size=8" in message and "cell_size=4" in message and "\n" not in message
    assert load_decoder("hog", feature="hog", params={"cell_size": 8})  # the same: accepted
    with pytest.raises(FeatinvError, match="not both"):
        load_decoder(Path("hog"), decoder="hf-hub:org/name")


def test_what_looks_like_a_path():
    for text in ("./hog", "../hog", "a/b", "a\\b", "~/runs/hog", "hog.safetensors",
                 "/abs/hog", ".hidden"):
        assert sources.looks_like_path(text), text
    for text in ("hog", "hog.realistic", "alexnet.conv1", "squeezenet.fire9"):
        assert not sources.looks_like_path(text), text
    assert sources.checkpoint_ref("hog") == Path("hog")
    assert sources.checkpoint_ref("hf-hub:org/name") == "hf-hub:org/name"
    assert sources.split_variant("hog.realistic") == ("hog", "realistic")
    assert sources.split_variant("hog") == ("hog", None)
    assert sources.split_variant("alexnet.conv1") == ("alexnet.conv1", None)


@pytest.mark.parametrize("ref, decoder, words", [
    ("", None, "names no decoder"), ("   ", None, "names no decoder"),
    ("local-dir:", None, "names no decoder"), ("zoo:", None, "names no decoder"),
    ("hf-hub:", None, "names no decoder"), ("hog", "", "give the name of a decoder"),
    ("hog", " ", "give the name of a decoder")])
def test_empty_references_are_refused(ref, decoder, words, lookalikes):
    with pytest.raises(FeatinvError, match=words):
        load_decoder(ref, decoder=decoder)


def test_an_empty_decoder_option_writes_nothing(lookalikes, capsys):
    code, _, err = run_cli(capsys, "invert", "-f", "hog", "--decoder", "", "skimage:coffee",
                           "-o", "out")
    [line] = error_lines(err)
    assert code == 1 and "--decoder ''" in line and not Path("out").exists()
