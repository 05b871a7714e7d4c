"""Round 12 (D10): what a decoder file's metadata may hold beyond what featinv writes is bounded,
as ``pack`` copies it into every file it ships and its config.json: entries this version does
not know (3 MB of text under ``training`` was copied), and the recipe and notes."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import featinv
from featinv import CheckpointError
from featinv.cli.main import main
from featinv.decoders.networks import build_decoder
from featinv.inversion.load import decoder_metadata, save_decoder
from featinv.inversion.meta_checks import MAX_NOTE
from featinv.io.checkpoint import META_KEY


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    hog = featinv.get_feature("hog")
    decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "compact", 0.125)
    path = tmp_path_factory.mktemp("ckpt") / "decoder.safetensors"
    return save_decoder(decoder, path, decoder_metadata(hog, decoder))


def rewrite(good, tmp_path, edit_meta):
    with safe_open(str(good), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    edit_meta(meta)
    out = tmp_path / "edited.safetensors"
    save_file(load_file(str(good)), str(out), metadata={META_KEY: json.dumps(meta)})
    return out


class TestUnknownMetadataEntries:
    """Round 12 (D10): entries this version does not write pass when small (a newer version's
    settings) and are refused in one line, naming the largest, when large (see also CASES)."""

    @pytest.mark.parametrize("edit", [
        lambda m: m.update(training={"new_setting": "a newer version's " * 100}),
        lambda m: m.update(note="trained on the lab's cluster", extra={"a": [1, 2, 3]}),
        lambda m: m["feature"].update(comment="x" * 8000) or m["decoder"].update(y=[1] * 2000),
        lambda m: m.update(progress={"step": 3, "eta": "2h"}, metrics={"val_new": 0.5}),
    ], ids=["training", "top-level", "feature-and-decoder", "progress-and-metrics"])
    def test_small_ones_load(self, good, tmp_path, edit):
        path = rewrite(good, tmp_path, edit_meta=edit)
        assert featinv.load_decoder(path).meta["feature"]["name"] == "hog"

    @pytest.mark.parametrize("edit, field", [
        (lambda m: m["feature"].update(comment="x" * 17_000), "'feature.comment'"),
        (lambda m: m.update(progress={"step": 3, "log": ["line"] * 4000}), "'progress.log'"),
        (lambda m: m.update(packed={"extra": "y" * 20_000}), "'packed.extra'"),
        (lambda m: m.update({f"k{i}": "x" * 9 for i in range(500)}, big="z" * 9000), "'big'"),
    ], ids=["feature", "progress", "packed", "many-top-level"])
    def test_large_ones_are_refused(self, good, tmp_path, capsys, edit, field):
        path = rewrite(good, tmp_path, edit_meta=edit)
        with pytest.raises(CheckpointError, match=f"its metadata {field} is .*, not an entry "
                           "this version knows; .* 16384 characters of JSON in all"):
            featinv.load_decoder(path)
        with pytest.raises(SystemExit) as info:
            main(["pack", str(path), "-o", str(tmp_path / "out.safetensors")])
        err = capsys.readouterr().err
        assert info.value.code == 1 and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "out.safetensors").exists()


class TestPackedRecipeAndNotes:
    """Text pack stores, bounded on load and when pack is given it."""

    @pytest.mark.parametrize("key", ["recipe", "notes"])
    def test_long_ones_are_refused_and_short_ones_load(self, good, tmp_path, key):
        path = rewrite(good, tmp_path, lambda m: m.update(packed={key: "x" * (MAX_NOTE + 1)}))
        with pytest.raises(CheckpointError, match=f"'packed.{key}' is 'xxx.*, not text of at "
                           f"most {MAX_NOTE} characters \\(it has {MAX_NOTE + 1}\\)"):
            featinv.load_decoder(path)
        path = rewrite(good, tmp_path, lambda m: m.update(packed={key: "x" * MAX_NOTE}))
        assert featinv.load_decoder(path).meta["packed"][key] == "x" * MAX_NOTE

    @pytest.mark.parametrize("length", [MAX_NOTE + 1, 3_000_000])
    def test_pack_refuses_a_recipe_it_would_not_load(self, good, tmp_path, capsys, length):
        out = tmp_path / "out.safetensors"
        with pytest.raises(SystemExit) as info:
            main(["pack", str(good), "-o", str(out), "--recipe", "x" * length])
        err = capsys.readouterr().err
        assert info.value.code == 1 and f"--recipe of {length} characters" in err, err
        assert not out.exists()
