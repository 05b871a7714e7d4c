"""Round 11 (E10): messages that left the user guessing. A strip too thin to use said so with no
advice; image sizes were printed height first in one message and width first, unlabelled, in
the next; a failed write named the hidden staging folder instead of the file asked for; a value
escaped by ``printable`` was escaped a second time by ``repr``."""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
import torch

import featinv
from featinv.errors import FeatinvError, ImageError, ShapeError, quoted
from featinv.io import sizes
from featinv.io.files import written_together
from featinv.io.sizes import fitted_size
from featinv.wording import cli_wording

PACKAGE = Path(featinv.__file__).parent


class TestThinImageAdvice:
    """The 'too small to use' refusal says what to do, and what it says works."""

    @pytest.mark.parametrize("width, height", [(2000, 1), (1, 80000), (5000, 1)])
    def test_a_strip_no_max_side_can_save_is_to_be_cropped(self, width, height):
        with pytest.raises(ImageError, match=r"; crop it to a less elongated shape \(it is "
                           rf"{max(width, height)}:1; at most 1024:1 can be used\)\.$"):
            fitted_size(width, height, None, 1024)
        with pytest.raises(ImageError, match="crop it"):  # the largest sides allowed fail too
            fitted_size(width, height, 4, 4096)

    @pytest.mark.parametrize("longer, shorter, limit, text", [
        (2049, 2, 1024, "1024.5"), (4097, 4, 1024, "1024.2"), (1000, 1, 455, "1000"),
        (100401, 1000, 100, "100.4"), (1000001, 10000, 100, "100.0001"), (50, 1, 100, "50")])
    def test_a_ratio_over_its_limit_is_never_printed_as_the_limit(self, longer, shorter, limit,
                                                                  text):
        """Round 12 D9: 2049x2 px read 'it is 1024:1; at most 1024:1 can be used'."""
        assert sizes.ratio_text(longer, shorter, limit) == text

    def test_a_square_crop_of_a_strip_names_its_ratio_beyond_the_limit(self):
        with pytest.raises(ImageError, match=r"\(100\.5:1, at most 100:1\)"):
            fitted_size(201, 2, 2, crop=True)

    @pytest.mark.parametrize("width, height, size, max_side, advice, works", [
        (3, 2000, None, 1024, "use max_side=2667 or more with size=4 or more, or crop it.",
         (4, 2667)),
        (20, 900, None, 100, "use max_side=180 or more, or crop it.", (None, 180)),
        (100, 10, 2, 1024, "use max_side=40 or more with size=4 or more", (4, 40)),
    ])
    def test_the_advice_names_sides_that_work(self, width, height, size, max_side, advice,
                                              works):
        """In the API's words here; the command line's name its options (issue 24, A7)."""
        with pytest.raises(ImageError) as info:
            fitted_size(width, height, size, max_side)
        assert advice in str(info.value)
        with cli_wording(), pytest.raises(ImageError) as info:
            fitted_size(width, height, size, max_side)
        assert advice.replace("max_side=", "--max-side ").replace("size=", "--size ") \
            in str(info.value)
        assert min(fitted_size(width, height, *works)) >= sizes.MIN_WORK_SIDE


def lines_matching(pattern: re.Pattern) -> list[str]:
    """``file:line`` of each line of featinv's source that ``pattern`` finds."""
    return [f"{path.relative_to(PACKAGE)}:{number}"
            for path in PACKAGE.rglob("*.py")
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]


def _message(call) -> str:
    with pytest.raises(FeatinvError) as info:
        call()
    return str(info.value)


class TestSizeMessagesGiveWidthFirstLabelled:
    """Every message that gives an image's size gives it as ``WxH px (width x height)``."""

    def test_each_refusal(self, monkeypatch):
        from featinv.features.hog import hog_uoctti
        from featinv.representation.layout import check_image_size

        tall = torch.rand(1, 1, 30, 2)  # width 2, height 30
        messages = [
            _message(lambda: check_image_size(600, 1, 4)),
            _message(lambda: fitted_size(5000, 1, None, 1024)),
            _message(lambda: sizes.shorter_side_size(12000, 1, 512)),
            _message(lambda: sizes.check_square(1, 30, 64)),
            _message(lambda: sizes.check_square(300, 2, 2)),
            _message(lambda: featinv.get_feature("hog")(tall.expand(1, 3, 30, 2))),
            _message(lambda: hog_uoctti(tall, cell_size=64)),
        ]
        monkeypatch.setattr(featinv.limits, "memory_budget", lambda: 1000)
        messages.append(_message(lambda: sizes.check_decode_budget(30, 20)))
        expected = ["1x600 px (width x height)", "5000x1 px (width x height)",
                    "12000x1 px (width x height)", "1x30 px (width x height)",
                    "300x2 px (width x height)", "2x30 px (width x height)",
                    "2x30 px (width x height)", "30x20 px (width x height)"]
        for message, size in zip(messages, expected):
            assert size in message, message

    def test_no_message_puts_the_height_first(self):
        """The source formats no image size as ``{height}x{width} px`` (or ``{h}x{w} px``) any
        more (a feature shape, ``CxHxW``, is no image size)."""
        pattern = re.compile(r"\{(h|height|[\w.]*\.height|[\w.]*shape\[-2\])\}x\{[^{}]+\} px")
        assert lines_matching(pattern) == []


class TestFailedWritesNameTheFileAskedFor:
    """The staging folder (``.featinv-stage.XXXX``) is gone when the message is read: a failed
    write names ``FOLDER/FILE``."""

    def test_written_together(self, tmp_path):
        out = tmp_path / "report"
        for raised, attribute in (
                (lambda stage: FeatinvError(f"Cannot write {stage / 'audit.html'} (full)"), "args"),
                (lambda stage: OSError(errno.EFBIG, "File too large", str(stage / "a.json")),
                 "filename")):
            with pytest.raises((FeatinvError, OSError)) as info:
                with written_together(out) as stage:
                    raise raised(stage)
            assert ".featinv-stage" not in str(info.value), str(info.value)
            assert str(out / ("audit.html" if attribute == "args" else "a.json")) in str(
                info.value)
            assert not out.exists()

    def test_pack_folder(self, tmp_path, monkeypatch):
        from featinv.inversion import share

        def full(picture, path):
            raise OSError(errno.EFBIG, "File too large", str(path))

        monkeypatch.setattr(share, "save_png", full)
        out = tmp_path / "packed"
        with pytest.raises(OSError) as info:
            share.pack_folder(PACKAGE / "zoo" / "lbp.safetensors", out)
        assert info.value.filename == str(out / share.PICTURE_FILE)

    def test_a_training_checkpoint(self, tmp_path):
        from featinv.training.run_checkpoint import commit

        def full(path):
            raise OSError(errno.EFBIG, "File too large", str(path))

        with pytest.raises(OSError) as info:
            commit(tmp_path, full, full)
        assert info.value.filename == str(tmp_path / "train_state.safetensors")
        assert list(tmp_path.iterdir()) == []


class TestValuesAreEscapedOnce:
    def test_quoted(self):
        assert quoted("\x1b[31m") == "'\\x1b[31m'" and quoted("a'b") == "'a'b'"

    def test_load_plugins_variable(self, monkeypatch, fresh_plugins):
        monkeypatch.setenv("FEATINV_LOAD_PLUGINS", "\x1b[31m")
        message = _message(lambda: featinv.get_spec("nosuch"))
        assert message.count("'\\x1b[31m'") == 2 and "\\\\" not in message, message

    def test_decoder_names(self):
        from featinv.inversion.sources import decoder_file

        message = _message(lambda: decoder_file("hf-hub:org/name", "\x1b[31m"))
        assert "'\\x1b[31m'" in message and "\\\\" not in message, message

    def test_no_printable_text_is_given_to_repr(self):
        pattern = re.compile(r"printable\([^()]*\)!r|repr\(printable")
        assert lines_matching(pattern) == []
