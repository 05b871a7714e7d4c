"""Issue 24, round 14 A7: an option of one value given twice is refused (click kept the last
without a word), and messages name settings as the command line or the Python API spells them
(``featinv.wording``)."""
from __future__ import annotations

import click
import pytest
import torch

import featinv
from featinv.cli.main import cli
from featinv.errors import FeatinvError
from featinv.training.config import TrainConfig, check_config
from featinv.wording import cli_wording, opt
from helpers import error_lines, run_cli


def _usage_line(err: str) -> str:
    [line] = error_lines(err)
    return line


@pytest.mark.parametrize("args, flag", [
    (["train", "-f", "hog", "--data", "d", "-o", "o", "--loss", "pixel=1e-30", "--loss",
      "feature=5e-5"], "--loss"),
    (["invert", "-f", "hog", "--size", "64", "--size", "128", "skimage:coffee"], "--size"),
    (["invert", "-f", "hog", "-o", "a", "--out", "b", "skimage:coffee"], "--out"),
    (["train", "-f", "hog", "-f", "lbp", "--data", "d", "-o", "o"], "--feature"),
    (["train", "-f", "hog", "--data", "d", "-o", "o", "--ema", "0.99", "--ema=0.999"], "--ema"),
    (["train", "-f", "hog", "--data", "d", "-o", "o", "--channels-last", "--no-channels-last"],
     "--channels-last"),
    (["evaluate", "-f", "hog", "--data", "d", "--limit", "2", "--limit", "3"], "--limit"),
    (["analyze", "perturb", "hog", "--data", "d", "--seed", "2", "--seed", "3"], "--seed"),
])
def test_an_option_of_one_value_given_twice_is_refused(capsys, tmp_path, args, flag):
    code, out, err = run_cli(capsys, *args)
    line = _usage_line(err)
    assert code == 2 and out == "" and "Traceback" not in err
    assert line.startswith(f"Error: {flag} is given 2 times, and only the last would count; "
                           "give it once"), line
    if flag == "--loss":
        assert line.endswith("put several loss terms in one --loss, e.g. --loss "
                             "pixel,feature=0.05."), line
    assert not (tmp_path / "o").exists()


def test_repeatable_options_and_plain_flags_still_pass(capsys, tmp_path):
    code, out, err = run_cli(capsys, "invert", "-f", "hog", "-f", "lbp", "--overwrite",
                             "--overwrite", "skimage:coffee", "--max-side", 64, "-o", tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffee.hog.png", "coffee.lbp.png"]


def test_every_command_refuses_repeats():
    def walk(command):
        yield command
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    assert all(type(c).__name__.startswith("Once") for c in walk(cli))
    assert all(isinstance(c, click.Command) for c in walk(cli))


# -- the words of the command line and of the API ---------------------------------------------

def test_opt_names_a_setting_for_whoever_runs():
    assert (opt("max_side"), opt("max_side", 2700), opt("loss", "pixel")) == (
        "max_side", "max_side=2700", "loss='pixel'")
    with cli_wording():
        assert (opt("max_side"), opt("max_side", 2700), opt("loss", "pixel")) == (
            "--max-side", "--max-side 2700", "--loss pixel")
    assert opt("max_side") == "max_side"  # put back after the command


def test_the_sizing_advice_names_the_apis_arguments_in_python():
    """'(size= in Python)' and '(max_side= in Python)' stood in the command line's messages."""
    with pytest.raises(FeatinvError) as info:
        featinv.invert([torch.rand(3, 1, 300)], feature="squeezenet.conv1")
    text = str(info.value)
    assert "invert it at a larger size, e.g. size=9, with max_side=2700 or more" in text, text
    assert "--" not in text and "in Python" not in text


def test_the_memory_advice_reads_well_in_both(monkeypatch, capsys, tmp_path):
    """Round 14: 'more than the featinv's memory budget ... (max_side= in Python)'."""
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.1")
    monkeypatch.setattr(featinv.limits, "memory_available", lambda: None)
    lbp = featinv.get_feature("lbp", cell_size=2)
    with pytest.raises(FeatinvError) as info:
        lbp(torch.zeros(1, 3, 1024, 1024))
    assert "more than featinv's memory budget of 0.1 GB" in str(info.value)
    assert "; use max_side=" in str(info.value) and "the featinv's" not in str(info.value)
    from PIL import Image

    Image.new("RGB", (1024, 1024), (9, 99, 199)).save(tmp_path / "big.png")
    code, _, err = run_cli(capsys, "show-features", "-f", "lbp", "-p", "cell_size=1",
                           tmp_path / "big.png", "-o", tmp_path / "s.png")
    line = _usage_line(err)
    assert code == 1 and "more than featinv's memory budget of 0.1 GB" in line, err
    assert "; use --max-side " in line and "in Python" not in line and "the featinv's" not in line


@pytest.mark.parametrize("loss, said", [
    ("pixel=1e-30", "loss='pixel=1e-30': every weight is below 0.0001"),
    ({"pixel": 1e-30}, "loss='pixel=1e-30': every weight is below 0.0001"),
    ("nosuch", "Unknown loss 'nosuch' in loss (choose from pixel, feature, adversarial; e.g. "
               "loss='pixel,feature=0.05')"),
    (["pixel"], "loss must be a string such as 'pixel,feature=0.05' or a dict of weights such "
                "as {'pixel': 1, 'feature': 0.05}, got list ['pixel']."),
    ({"pixel": "x"}, "loss='pixel=x': the weight must be a number."),
])
def test_the_api_words_its_loss_refusals_as_python(loss, said):
    with pytest.raises(FeatinvError) as info:
        check_config(TrainConfig(feature="hog", data="d", out="o", loss=loss))
    assert said in str(info.value) and "--loss" not in str(info.value), str(info.value)


def test_a_dict_of_loss_weights_is_a_loss():
    cfg = TrainConfig(feature="hog", data="d", out="o", loss={"pixel": 1, "feature": 0.05},
                      comparator="hog")
    assert cfg.loss == "pixel=1,feature=0.05"
    check_config(cfg)


def test_the_command_line_words_them_as_options(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", tmp_path, "-o",
                           tmp_path / "o", "--loss", "pixel=1e-30")
    assert code == 1 and "Error: --loss pixel=1e-30: every weight is below 0.0001" in err, err
    assert "loss=" not in err.split("(e.g.")[0]
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", tmp_path, "-o",
                           tmp_path / "o", "--comparator", "hog")
    assert "Error: --comparator is for the feature loss, which --loss pixel does not include; " \
           "add it (e.g. --loss pixel,feature) or drop --comparator" in err, err
