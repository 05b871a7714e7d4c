"""Round 12 (D10): a whole number too long to print is counted in digits in every message (its
first 40 or 60 digits, cut, read as 1e39 or 1e59), by one helper, ``errors.shown``."""
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
        (-10**20, "a negative whole number of 21 digits"),
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

    def test_a_number_past_pythons_text_limit_is_still_described(self):
        import sys

        old = sys.get_int_max_str_digits()
        sys.set_int_max_str_digits(0)
        big = 10**5000  # made while the limit is off, as a plugin could
        sys.set_int_max_str_digits(old)
        assert number_words(big) == "a whole number of more than 4300 digits" or old == 0

    @pytest.mark.parametrize("value, words", [
        (10**40, "cell_size=a whole number of 41 digits (it must be from 1 to 4096)"),
        (1e300, "cell_size=a whole number of 301 digits (it must be from 1 to 4096)"),
        (-10**20, "cell_size=a negative whole number of 21 digits"),
        ("9" * 80, "cell_size=a whole number of 80 digits"),
    ])
    def test_in_a_representations_parameters(self, value, words):
        """Round 12 D10 (m3.py cell_H): a parameter printed 40 digits of 10**40."""
        with pytest.raises(FeatinvError) as info:
            featinv.get_feature("hog", cell_size=value)
        assert words in str(info.value) and "0000000000" not in str(info.value)

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
