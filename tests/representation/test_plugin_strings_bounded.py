"""Round 14 (issue 24) A6, N3 and A7: what a plugin chose reaches the user bounded, formatting
its exception cannot hang featinv, and a plugin cannot take a name under a built-in's.

A6: an exception class with a 5 MB name was printed whole (the message was cut, not the name);
so were a plugin's entry-point name, its distribution's name, and what its spec declared. N3:
an exception whose ``__str__`` never returns hung every command that reported it. A7: a plugin
could register ``hog.x``, which ``extract`` and ``describe`` meant while ``invert -f hog.x``
looked for a HOG decoder; a plugin that failed to import left "Unknown feature" without a hint.
"""
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

import featinv
from featinv.errors import LINE_LIMIT, NAME_LIMIT, clipped, type_name
from featinv.representation import guard
from featinv.representation.guard import (FAILED, HUNG, MESSAGE_LIMIT, exception_text,
                                          message_text, passes_as_is)
from featinv.representation.plugins import plugin_infos, plugin_problems

from test_plugins import Plugin, RaisingModule, fake_distribution, make_spec

HUGE = 5_000_000
HugeName = type("N" * HUGE, (Exception,), {})


class TestNamesAreBounded:
    def test_clipped_cuts_and_escapes(self):
        assert clipped("abc") == "abc"
        assert clipped("a" * (NAME_LIMIT + 1)) == "a" * NAME_LIMIT + "..."
        assert clipped("\x1b[2J" * 100).startswith("\\x1b[2J")
        assert len(clipped("\x1b" * 100)) == NAME_LIMIT + 3
        assert clipped(12) == "(a int, not text)"

    def test_a_huge_class_name_is_cut(self):
        text = exception_text(HugeName("x"))
        assert text == "N" * NAME_LIMIT + "...: x"

    def test_a_metaclass_cannot_lie_about_the_name(self):
        class Meta(type):
            @property
            def __name__(cls):
                raise KeyboardInterrupt

        Lying = Meta("Lying", (Exception,), {})
        assert type_name(Lying()) == "Lying"
        assert exception_text(Lying("m")) == "Lying: m"

    def test_in_forward_and_on_the_command_line(self, extra_plugins, capsys, tmp_path):
        from featinv.cli.main import main

        extra_plugins("hugename", Plugin(make_spec("huge_fwd",
                                                   build=lambda: RaisingModule(HugeName("x")))))
        with pytest.raises(featinv.PluginError) as info:
            featinv.get_feature("huge_fwd")(torch.rand(1, 3, 16, 16))
        assert len(str(info.value)) < 300
        with pytest.raises(SystemExit) as info:
            main(["extract", "-f", "huge_fwd", "skimage:astronaut", "--size", "32",
                  "-o", str(tmp_path / "e.npz"), "--device", "cpu"])
        err = capsys.readouterr().err
        assert info.value.code == 1 and len(err) < 1000 and "Traceback" not in err

    def test_at_import_in_the_hook_and_in_the_listing(self, tmp_path, monkeypatch,
                                                      fresh_plugins):
        source = f"raise type('N' * {HUGE}, (Exception,), {{}})('x')\n"
        fake_distribution(tmp_path, monkeypatch, {"hugeimp": "hugeimp_mod"},
                          {"hugeimp_mod": source})
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["hugeimp"] == f"failed to load: {'N' * NAME_LIMIT}...: x"

    def test_a_plugin_with_a_huge_name_is_not_loaded(self, tmp_path, monkeypatch,
                                                     fresh_plugins, capsys):
        from featinv.cli.main import main

        name = "p" * 5000
        fake_distribution(tmp_path, monkeypatch, {name: "ok_mod", "esc\x1bx": "ok_mod"},
                          {"ok_mod": "x = 1\n"})
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["p" * NAME_LIMIT + "..."] == (
            "not loaded: its name (5000 characters) is not a plugin's name (printable text of "
            f"at most {NAME_LIMIT} characters)")
        assert "esc\\x1bx" in problems
        with pytest.raises(SystemExit):
            main(["plugins"])
        out = capsys.readouterr().out
        assert len(out) < 10_000 and "\x1b" not in out

    def test_what_a_spec_declares_is_bounded(self, extra_plugins):
        long = "d" * 5000
        spec = make_spec("wordy", params=(featinv.Param("k", 1, long),),
                         build=lambda k: torch.nn.AvgPool2d(4),
                         rule=lambda k: featinv.CellGrid(1, 4),
                         backends=lambda: {"b" * 5000: "s\x1b" * 5000},
                         members=lambda: ["m" * 5000])
        extra_plugins("wordy", Plugin(spec))
        info = featinv.get_spec("wordy").to_json()
        assert info["params"][0]["help"] == "d" * LINE_LIMIT + "..."
        assert all(len(k) <= NAME_LIMIT + 3 and len(v) <= LINE_LIMIT + 3 and "\x1b" not in v
                   for k, v in info["backends"].items())
        assert info["members"] == ["m" * NAME_LIMIT + "..."]
        with pytest.raises(ValueError, match=r"has 5000 characters \(at most 100\)"):
            make_spec("n" * 5000)
        with pytest.raises(ValueError, match="parameter names must be Python names"):
            make_spec("badparam", params=(featinv.Param("x" * 200, 1),))

    def test_a_description_and_a_formula_are_bounded(self, extra_plugins):
        from dataclasses import replace

        from featinv import ComputedGrid
        from featinv.representation.layout import FORMULA_LIMIT, GridLayout

        grid = ComputedGrid(lambda h, w: GridLayout(1, h // 4, w // 4), "f\x1b" * 5000, 4)
        assert len(grid.describe()) <= FORMULA_LIMIT + 3 and "\x1b" not in grid.describe()
        spec = replace(make_spec("verbose", rule=lambda: grid), description="w" * HUGE)
        extra_plugins("verbose", Plugin(spec))
        assert featinv.get_spec("verbose").to_json()["description"] == "w" * LINE_LIMIT + "..."

    def test_objects_a_plugin_returns_are_named_by_their_class(self, extra_plugins):
        Odd = type("O" * HUGE, (), {"__repr__": lambda self: "R" * HUGE})

        class Resolver:
            @featinv.hookimpl
            def featinv_resolve_feature(self, name):
                return Odd() if name == "odd_resolved" else None

        extra_plugins("oddbuild", Plugin(make_spec("odd_build", build=lambda: Odd())))
        extra_plugins("oddresolve", Resolver())
        with pytest.raises(featinv.PluginError) as info:
            featinv.get_feature("odd_build")
        assert len(str(info.value)) < 300
        with pytest.raises(featinv.UnknownFeatureError) as info:
            featinv.get_spec("odd_resolved")
        assert len(str(info.value)) < 300 and "R" * 10 not in str(info.value)

    def test_a_shipped_decoders_names_are_bounded(self):
        from featinv.representation.hookspecs import ShippedDecoder

        with pytest.raises(ValueError, match="at most 100 characters"):
            ShippedDecoder("h" * HUGE, "x.safetensors")
        with pytest.raises(ValueError, match="a path of 5000 characters"):
            ShippedDecoder("hog", "x" * 5000)
        entry = ShippedDecoder("hog", "x.safetensors", description="a\x1b" * 5000)
        assert len(entry.description) == LINE_LIMIT + 3 and "\x1b" not in entry.description

    def test_a_warning_is_one_bounded_line(self, capsys):
        from featinv.cli.main import _show_warning

        _show_warning(UserWarning("w\n" * HUGE), UserWarning, "f.py", 3)
        _show_warning(UserWarning("x"), type("W" * HUGE, (UserWarning,), {}), "f.py", 3)
        err = capsys.readouterr().err
        assert len(err) < 2 * 20_000 + 300 and err.count("\n") == 2


@pytest.fixture
def endless():
    """Exception classes whose ``__str__`` loops until the test ends (the loop is stopped by
    featinv's exception first; the event only keeps a failure from spinning for ever)."""
    done = threading.Event()

    def make():
        class Endless(Exception):
            def __str__(self):
                while not done.is_set():
                    pass
                return "late"
        return Endless

    yield make
    done.set()


class TestAStrThatNeverReturns:
    def test_gives_the_placeholder_and_the_thread_is_stopped(self, endless, monkeypatch):
        monkeypatch.setattr(guard, "TEXT_TIMEOUT", 0.3)
        Endless = endless()
        start = time.monotonic()
        assert exception_text(Endless()) == f"Endless: {HUNG}"
        assert time.monotonic() - start < 3
        assert not [t for t in threading.enumerate() if t.name == "featinv-exception-text"]
        start = time.monotonic()  # that class is not asked again
        assert message_text(Endless()) == HUNG and time.monotonic() - start < 0.1

    def test_in_forward_at_import_and_in_a_hook(self, endless, extra_plugins, monkeypatch):
        monkeypatch.setattr(guard, "TEXT_TIMEOUT", 0.3)
        Endless = endless()
        extra_plugins("endless_hook", Plugin(error=Endless()))
        extra_plugins("endless_fwd", Plugin(make_spec("endless_fwd",
                                                      build=lambda: RaisingModule(endless()()))))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["endless_hook"] == f"error in featinv_register_features: Endless: {HUNG}"
        with pytest.raises(featinv.PluginError, match=r"Endless: \(its message cannot be "
                           r"shown: its __str__ did not return\)"):
            featinv.get_feature("endless_fwd")(torch.rand(1, 3, 16, 16))

    def test_the_process_still_exits_when_the_thread_cannot_be_stopped(self):
        code = (
            "import time, sys\n"
            "from featinv.representation import guard\n"
            "guard.TEXT_TIMEOUT = 0.3\n"
            "class Stuck(Exception):\n"
            "    def __str__(self):\n"
            "        while True:\n"
            "            try:\n"
            "                time.sleep(1000)\n"  # waits in C: the stop is never seen
            "            except BaseException:\n"
            "                pass\n"
            "print(guard.exception_text(Stuck()), flush=True)\n"
            "t = time.monotonic(); s = 0\n"
            "for i in range(200_000): s += i\n"
            "print('worked', flush=True)\n"
            "sys.exit(3)\n")
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 3, out.stderr
        assert out.stdout.splitlines() == [f"Stuck: {HUNG}", "worked"]
        assert time.monotonic() - start < 30

    def test_a_featinv_error_with_its_own_str_is_wrapped(self, extra_plugins):
        class OwnStr(featinv.FeatinvError):
            def __str__(self):
                return "fine"

        assert not passes_as_is(OwnStr())
        assert passes_as_is(featinv.FeatinvError("plain"))
        assert not passes_as_is(featinv.FeatinvError(_Odd()))
        extra_plugins("ownstr", Plugin(make_spec("own_str", build=lambda: RaisingModule(OwnStr()))))
        with pytest.raises(featinv.PluginError, match=r"failed on a batch .*: OwnStr: fine"):
            featinv.get_feature("own_str")(torch.rand(1, 3, 16, 16))

    def test_plain_exceptions_need_no_thread(self, monkeypatch):
        monkeypatch.setattr(guard, "_text_in_thread", None)  # would fail if called
        assert message_text(ValueError("v")) == "v"
        assert message_text(KeyError("k")) == "'k'"
        assert message_text(featinv.UnknownFeatureError("u")) == "u"
        assert message_text(featinv.UnknownFeatureError()) == FAILED
        assert message_text(RuntimeError("r" * 600)) == "r" * MESSAGE_LIMIT + "..."


class _Odd:
    def __str__(self):
        return "odd"


class TestNamesUnderABuiltinsAreTheBuiltins:
    @pytest.mark.parametrize("name,base", [("hog.x", "hog"), ("hog.x.y", "hog"),
                                           ("squeezenet.conv1.mine", "squeezenet.conv1")])
    def test_a_plugin_registering_one_is_reported_and_ignored(self, name, base, extra_plugins):
        from featinv.inversion.sources import variant_spelling

        extra_plugins("squatter", Plugin(make_spec(name), make_spec("squatter_own")))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["squatter"].startswith(f"registers '{name}', a name under the built-in "
                                               f"representation '{base}' (plugin ")
        assert problems["squatter"].endswith(f"which 'invert -f' reads as a decoder of "
                                             f"'{base}'; its '{name}' is ignored: rename it")
        assert name not in featinv.list_features()
        assert featinv.get_spec("squatter_own").plugin == "squatter"
        if name == "hog.x":  # what invert -f makes of it: a decoder of HOG
            assert variant_spelling(name) == ("hog", "x")

    def test_a_plugin_resolving_one_is_ignored(self, extra_plugins):
        class Resolver:
            @featinv.hookimpl
            def featinv_resolve_feature(self, name):
                return make_spec(name) if name.startswith(("hog.", "mine.")) else None

        extra_plugins("resolver", Resolver())
        assert featinv.get_spec("mine.x").plugin == "resolver"
        with pytest.raises(featinv.UnknownFeatureError, match="names a shipped decoder of 'hog'"):
            featinv.get_spec("hog.x")
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["resolver"].startswith("resolves 'hog.x', a name under the built-in "
                                               "representation 'hog'")


def test_an_unknown_name_points_at_plugins_that_failed(tmp_path, monkeypatch, fresh_plugins):
    fake_distribution(tmp_path, monkeypatch, {"brokenfour": "broken_four"},
                      {"broken_four": "raise ImportError('needs libfoo')\n"})
    with pytest.raises(featinv.UnknownFeatureError) as info:
        featinv.get_spec("bad4")
    assert str(info.value).endswith(" Plugin 'brokenfour' failed to load or to register its "
                                    "representations; 'featinv plugins' says why.")
    assert [p.name for p in plugin_infos() if p.name == "brokenfour"]


def test_an_unknown_name_says_nothing_of_plugins_when_all_loaded(fresh_plugins):
    with warnings.catch_warnings():
        with pytest.raises(featinv.UnknownFeatureError) as info:
            featinv.get_spec("nosuch_feature")
    assert "featinv plugins" not in str(info.value)
