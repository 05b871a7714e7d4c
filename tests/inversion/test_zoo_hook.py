"""Plugins ship decoders through ``featinv_shipped_decoders`` (the built-in zoo is one of them):
``featinv zoo`` lists them, ``--decoder`` / ``decoder=`` picks them, and failures name the plugin."""
import json
import shutil

import pytest

import featinv
from featinv import ShippedDecoder
from featinv.decoders.networks import build_decoder
from featinv.inversion import zoo as builtin_zoo
from featinv.inversion.load import ZOO_DIR, load_decoder
from featinv.inversion.shipped import shipped
from featinv.io.checkpoint import decoder_metadata, save_decoder
from featinv.cli import listing
from featinv.representation import plugins
from featinv.representation.plugins import plugin_problems

from helpers import error_lines, run_cli, write_images


class Shipper:
    """A plugin shipping the given entries (or raising ``error``)."""

    def __init__(self, entries=(), error=None):
        self.entries, self.error = list(entries), error

    @featinv.hookimpl
    def featinv_shipped_decoders(self):
        if self.error:
            raise self.error
        return self.entries


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A small HOG decoder (compact, width 0.125, 32 px), untrained: enough to load and run."""
    hog = featinv.get_feature("hog")
    decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "compact", 0.125)
    path = tmp_path_factory.mktemp("tiny") / "hog.tiny.safetensors"
    return save_decoder(decoder, path, decoder_metadata(hog, decoder))


@pytest.fixture
def tinyzoo(extra_plugins, tiny_file):
    extra_plugins("tinyzoo", Shipper([ShippedDecoder("hog", tiny_file, "tiny", "a tiny test decoder")]))
    return tiny_file


def test_zoo_lists_a_plugins_decoder_beside_the_builtin_ones(tinyzoo, capsys):
    code, out, _ = run_cli(capsys, "zoo")
    assert code == 0
    row = next(line for line in out.splitlines() if " tiny " in line)
    assert row.split()[0] == "hog"
    assert "tinyzoo" in row and "a tiny test decoder" in row and "compact x0.125" in row
    default = next(line for line in out.splitlines() if line.startswith("hog ") and "default" in line)
    assert "featinv.zoo" in default
    code, out, _ = run_cli(capsys, "zoo", "--json")
    entries = {(e["feature"], e["decoder"]): e for e in json.loads(out)}
    assert entries["hog", "tiny"]["plugin"] == "tinyzoo"
    assert entries["hog", "default"]["plugin"] == "featinv.zoo"


@pytest.mark.slow
def test_invert_and_evaluate_use_the_chosen_decoder(tinyzoo, tmp_path, capsys):
    images = write_images(tmp_path / "images", 2)
    code, out, err = run_cli(capsys, "invert", images[0], "-f", "hog", "--decoder", "tiny",
                             "-o", tmp_path / "out")
    assert code == 0, err
    written = tmp_path / "out" / f"{images[0].stem}.hog.tiny.png"
    assert written.is_file() and out.strip().endswith(written.name)
    code, out, err = run_cli(capsys, "evaluate", "-f", "hog", "--decoder", "tiny",
                             "--data", tmp_path / "images", "--json", "--comparator", "none")
    assert code == 0, err
    result = json.loads(out)
    assert result["decoder"] == "tiny" and result["image_size"] == 32


def test_load_decoder_and_invert_by_decoder_name(tinyzoo, tmp_path):
    decoder = featinv.load_decoder("hog", decoder="tiny")
    assert decoder.config["preset"] == "compact" and decoder.config["image_size"] == 32
    assert load_decoder("hog.tiny").config == decoder.config  # as --init-from spells it
    assert load_decoder("hog").config["preset"] == "residual"  # the built-in default
    image = write_images(tmp_path / "images", 1)[0]
    (y,) = featinv.invert([image], feature="hog", decoder="tiny")
    assert y.shape == (3, 40, 48)


def test_unknown_decoder_lists_those_that_exist(tinyzoo, tmp_path, capsys):
    with pytest.raises(featinv.FeatinvError) as info:
        featinv.load_decoder("hog", decoder="nope")
    assert "'nope'" in str(info.value) and "default, " in str(info.value)
    assert str(info.value).rstrip(".").endswith("tiny")  # sorted: default first, then the rest
    image = write_images(tmp_path / "images", 1)[0]
    code, _, err = run_cli(capsys, "invert", image, "-f", "hog", "--decoder", "nope", "-o",
                           tmp_path)
    assert code == 1 and len(error_lines(err)) == 1 and "default, realistic, tiny" in err
    with pytest.raises(featinv.FeatinvError, match="'tiny' is shipped for 'lbp'; its decoders are: default"):
        featinv.load_decoder("lbp", decoder="tiny")
    with pytest.raises(featinv.FeatinvError, match="No decoder 'tiny' for 'alexnet.conv1' yet"):
        featinv.load_decoder("alexnet.conv1", decoder="tiny")
    with pytest.raises(featinv.FeatinvError, match="is a file"):
        featinv.load_decoder(tinyzoo, decoder="tiny")


def test_the_same_decoder_from_two_plugins_names_both(tinyzoo, extra_plugins, capsys):
    extra_plugins("otherzoo", Shipper([ShippedDecoder("hog", tinyzoo, "tiny")]))
    with pytest.raises(featinv.PluginError) as info:
        featinv.load_decoder("hog", decoder="tiny")
    assert "'tinyzoo'" in str(info.value) and "'otherzoo'" in str(info.value)
    problems = {p.name: p.error for p in plugin_problems()}
    assert "as does 'otherzoo'" in problems["tinyzoo"] and "as does 'tinyzoo'" in problems["otherzoo"]
    code, out, err = run_cli(capsys, "zoo")
    assert code == 0 and "'otherzoo'" in err and " tiny " not in out
    assert load_decoder("hog").config["preset"] == "residual"  # the others still work


def test_a_plugin_whose_hook_raises_is_named(extra_plugins, capsys):
    extra_plugins("brokenzoo", Shipper(error=RuntimeError("no decoders today")))
    problems = {p.name: p.error for p in plugin_problems()}
    assert problems["brokenzoo"] == ("error in featinv_shipped_decoders: RuntimeError: no "
                                     "decoders today")
    code, out, err = run_cli(capsys, "zoo")
    assert code == 0 and "brokenzoo" in err and "no decoders today" in err
    assert any(line.startswith("hog ") for line in out.splitlines())
    with pytest.raises(featinv.FeatinvError, match="brokenzoo"):
        featinv.load_decoder("hog", decoder="nope")


def test_entries_are_checked():
    with pytest.raises(ValueError, match="lower-case"):
        ShippedDecoder("hog", "x.safetensors", "Real.istic")
    assert ShippedDecoder("HOG", "x.safetensors").key == "hog"
    assert ShippedDecoder("hog", "x.safetensors", "realistic").key == "hog.realistic"


def test_builtin_zoo_file_names(tiny_file, tmp_path, monkeypatch, fresh_plugins):
    """``NAME.safetensors`` is NAME's default decoder, ``NAME.VARIANT.safetensors`` its VARIANT."""
    monkeypatch.setattr(builtin_zoo, "ZOO_DIR", tmp_path)
    shutil.copy(ZOO_DIR / "sift.safetensors", tmp_path / "sift.safetensors")
    shutil.copy(tiny_file, tmp_path / "hog.realistic.safetensors")
    found = {(e.feature, e.variant): e.plugin for e in plugins.shipped_decoders().entries.values()}
    assert found == {("sift", "default"): "featinv.zoo", ("hog", "realistic"): "featinv.zoo"}
    assert load_decoder("hog", decoder="realistic").config["preset"] == "compact"
    with pytest.raises(featinv.FeatinvError, match="'default' is shipped for 'hog'; its decoders are: realistic"):
        load_decoder("hog")


def test_cached_zoo_sees_a_new_decoder_file(tiny_file, tmp_path, monkeypatch, fresh_plugins):
    monkeypatch.setenv("FEATINV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(listing, "_in_process_plugins", lambda: False)
    monkeypatch.setattr(builtin_zoo, "ZOO_DIR", tmp_path / "zoo")
    (tmp_path / "zoo").mkdir()
    shutil.copy(tiny_file, tmp_path / "zoo" / "hog.safetensors")
    assert [e["decoder"] for e in listing.zoo(shipped)] == ["default"]
    cached = listing.zoo(lambda: pytest.fail("recomputed although nothing changed"))
    assert [e["decoder"] for e in cached] == ["default"]
    shutil.copy(tiny_file, tmp_path / "zoo" / "hog.realistic.safetensors")
    plugins.reset()
    assert [e["decoder"] for e in listing.zoo(shipped)] == ["default", "realistic"]
