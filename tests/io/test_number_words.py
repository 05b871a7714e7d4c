"""Round 12 (D10): a whole number too long to print is counted in digits in every message (its
first 40 or 60 digits, cut, read as 1e39 or 1e59), by one helper, ``state_checks.shown``."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import featinv
from featinv.decoders.networks import build_decoder
from featinv.errors import FeatinvError
from featinv.inversion.load import decoder_metadata, save_decoder
from featinv.io.checkpoint import META_KEY
from featinv.io.state_checks import number_words, shown


class TestHugeWholeNumbersInMessages:

    @pytest.mark.parametrize("value, text", [
        (10**400, "a whole number of 401 digits"),
        (-10**20, "-a whole number of 21 digits"),
        (10**15, "a whole number of 16 digits"),
        (10**15 - 1, "999999999999999"),
        (True, "True"),
        (0.5, "0.5"),
        ("fast", "'fast'"),
        ("x" * 100, "'" + "x" * 39 + "..."),
        ("\x1b[2J", "'\\x1b[2J'"),
    ])
    def test_shown(self, value, text):
        assert shown(value) == text

    def test_number_words_keeps_floats_short(self):
        assert number_words(1e300) == "1e+300" and number_words(3) == "3"

    @pytest.mark.parametrize("section, key, words", [
        ("decoder", "width", "width a whole number of 401 digits"),
        ("training", "lr", "'training.lr' is a whole number of 401 digits"),
        ("training", "seed", "'training.seed' is a whole number of 401 digits"),
        ("metrics", "val_psnr", "val_psnr is a whole number of 401 digits"),
    ])
    def test_in_a_decoders_metadata(self, tmp_path, section, key, words):
        hog = featinv.get_feature("hog")
        decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "compact", 0.125)
        path = save_decoder(decoder, tmp_path / "d.safetensors", decoder_metadata(hog, decoder))
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()[META_KEY])
        meta.setdefault(section, {})[key] = 10**400
        save_file(load_file(str(path)), str(path), metadata={META_KEY: json.dumps(meta)})
        with pytest.raises(FeatinvError) as info:
            featinv.load_decoder(path)
        assert words in str(info.value) and "0000000000" not in str(info.value)
