"""Round 13 (N3, N4): formatting a plugin's exception never runs its code unguarded, and a
plugin cannot take a built-in representation's name (or a shipped decoder's) away.

N3: an exception whose ``__str__`` raised ``KeyboardInterrupt`` ended featinv with
"Interrupted." (exit 130, no Ctrl-C), one raising a ``BaseException`` class of its own gave a
traceback, and a 50 MB message was printed whole. N4: a plugin registering ``hog`` withdrew the
built-in HOG from every command; one registering ``hog.realistic`` made ``describe`` mean it
while ``invert -f`` meant the shipped decoder."""
import pytest
import torch

import featinv
from featinv.representation.guard import MESSAGE_LIMIT, exception_text, message_text
from featinv.representation.plugins import plugin_problems

from test_plugins import Plugin, RaisingModule, fake_distribution, make_spec

PLACEHOLDER = "(its message cannot be shown: its __str__ failed)"


class _OwnBase(BaseException):
    pass


def _failing_str(inner):
    class StrFails(Exception):
        def __str__(self):
            raise inner
    return StrFails()


class _Sneaky(str):
    def strip(self, *args):
        raise SystemExit(0)


class _SubclassStr(Exception):
    def __str__(self):
        return _Sneaky("  sneaky  ")


class _Huge(Exception):
    def __str__(self):
        return "A" * 5_000_000


def _raising(exc):
    def function(*args, **kwargs):
        raise exc
    return function


INNER = [KeyboardInterrupt(), _OwnBase("x"), SystemExit(0), MemoryError()]
INNER_IDS = ["keyboardinterrupt", "own-baseexception", "systemexit", "memoryerror"]


class TestPluginExceptionTextIsGuardedAndBounded:
    @pytest.mark.parametrize("inner", INNER, ids=INNER_IDS)
    def test_a_str_that_raises_anything_gives_the_placeholder(self, inner):
        assert exception_text(_failing_str(inner)) == f"StrFails: {PLACEHOLDER}"

    def test_a_str_subclass_with_its_own_methods_never_runs_them(self):
        assert exception_text(_SubclassStr()) == "_SubclassStr: sneaky"

    @pytest.mark.parametrize("length", [MESSAGE_LIMIT + 1, 5_000_000])
    def test_a_long_message_is_cut(self, length):
        text = message_text(ValueError("B" * length))
        assert text == "B" * MESSAGE_LIMIT + "..."
        assert len(exception_text(_Huge())) < MESSAGE_LIMIT + 20

    def test_a_message_at_the_limit_is_whole(self):
        assert message_text(ValueError("C" * MESSAGE_LIMIT)) == "C" * MESSAGE_LIMIT

    @pytest.mark.parametrize("inner", INNER[:2], ids=INNER_IDS[:2])
    def test_at_import(self, inner, tmp_path, monkeypatch, fresh_plugins):
        raised = "KeyboardInterrupt" if isinstance(inner, KeyboardInterrupt) else "Own"
        source = ("class Own(BaseException):\n    pass\n\n\n"
                  "class StrFails(Exception):\n"
                  "    def __str__(self):\n"
                  f"        raise {raised}()\n\n\n"
                  "raise StrFails()\n")
        fake_distribution(tmp_path, monkeypatch, {"strplug": "str_mod"}, {"str_mod": source})
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["strplug"] == f"failed to load: StrFails: {PLACEHOLDER}"
        assert "hog" in featinv.list_features()

    @pytest.mark.parametrize("inner", INNER[:2], ids=INNER_IDS[:2])
    def test_in_the_hook_build_and_forward(self, inner, extra_plugins):
        exc = _failing_str(inner)
        extra_plugins("hookfails", Plugin(error=exc))
        extra_plugins("strfails", Plugin(make_spec("build_fails", build=_raising(exc)),
                                         make_spec("forward_fails", build=lambda: RaisingModule(exc))))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["hookfails"] == (f"error in featinv_register_features: StrFails: "
                                         f"{PLACEHOLDER}")
        with pytest.raises(featinv.PluginError, match=r"failed to build: StrFails: \(its"):
            featinv.get_feature("build_fails")
        with pytest.raises(featinv.PluginError, match=r"failed on a batch of shape \(1, 1, 16, "
                           r"16\): StrFails: \(its message"):
            featinv.get_feature("forward_fails")(torch.rand(1, 3, 16, 16))

    @pytest.mark.parametrize("exc", [_failing_str(KeyboardInterrupt()), _Huge()],
                             ids=["str-raises", "huge"])
    def test_a_featinv_error_the_plugin_raises_is_wrapped_when_its_text_is_bad(self, exc,
                                                                               extra_plugins):
        bad = type("BadError", (featinv.FeatinvError,), {"__str__": type(exc).__str__})()
        extra_plugins("strfails", Plugin(make_spec("forward_fails", build=lambda: RaisingModule(bad))))
        with pytest.raises(featinv.PluginError) as info:
            featinv.get_feature("forward_fails")(torch.rand(1, 3, 16, 16))
        assert "forward_fails (plugin strfails) failed on a batch" in str(info.value)
        assert len(str(info.value)) < MESSAGE_LIMIT + 200

    @pytest.mark.parametrize("inner", INNER[:2], ids=INNER_IDS[:2])
    def test_the_cli_reports_one_line_not_interrupted(self, inner, extra_plugins, capsys,
                                                      tmp_path):
        from featinv.cli.main import main

        exc = _failing_str(inner)
        extra_plugins("strfails", Plugin(make_spec("forward_fails", build=lambda: RaisingModule(exc))))
        with pytest.raises(SystemExit) as info:
            main(["extract", "-f", "forward_fails", "skimage:astronaut", "--size", "32",
                  "-o", str(tmp_path / "e.npz"), "--device", "cpu"])
        err = capsys.readouterr().err
        assert info.value.code == 1, err
        assert "Interrupted" not in err and "Traceback" not in err
        assert PLACEHOLDER in err


class TestBuiltinNamesBelongToTheBuiltins:
    @pytest.mark.parametrize("name,builtin", [("hog", "featinv.features.hog"),
                                              ("squeezenet.conv1", "featinv.features.squeezenet")])
    def test_a_plugin_registering_a_builtin_name_is_reported_and_ignored(self, name, builtin,
                                                                         extra_plugins):
        extra_plugins("thief", Plugin(make_spec(name), make_spec("thief_own")))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["thief"] == (f"registers '{name}', the name of a built-in representation "
                                     f"(plugin '{builtin}'); its '{name}' is ignored: rename it")
        assert builtin not in problems
        assert featinv.get_spec(name).plugin == builtin
        assert featinv.get_spec("thief_own").plugin == "thief"  # its other names still work
        assert featinv.get_feature("hog")(torch.rand(1, 3, 16, 16)).shape == (1, 31, 2, 2)

    def test_an_entry_point_plugin_loses_hog_to_the_builtin(self, tmp_path, monkeypatch,
                                                            fresh_plugins):
        source = ("import featinv\nfrom featinv import CellGrid, FeatureSpec\nimport torch\n\n"
                  "@featinv.hookimpl(tryfirst=True)\n"
                  "def featinv_register_features(register):\n"
                  "    register(FeatureSpec(name='hog', description='x', input='gray',\n"
                  "        differentiable=True, build=lambda: torch.nn.AvgPool2d(4),\n"
                  "        rule=lambda: CellGrid(1, 4)))\n")
        fake_distribution(tmp_path, monkeypatch, {"hogthief": "hogthief_mod"},
                          {"hogthief_mod": source})
        problems = {p.name: p.error for p in plugin_problems()}
        assert "the name of a built-in representation (plugin 'featinv.features.hog')" \
            in problems["hogthief"]
        assert featinv.get_spec("hog").plugin == "featinv.features.hog"

    @pytest.mark.parametrize("name", ["hog.realistic", "HOG.realistic"])
    def test_a_shipped_decoders_name_is_refused(self, name, extra_plugins):
        class Resolving:
            @featinv.hookimpl
            def featinv_resolve_feature(self, name):
                return make_spec(name) if name == name.lower() else None

        extra_plugins("squatter", Plugin(make_spec("hog.realistic")))
        extra_plugins("resolver", Resolving())
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["squatter"] == ("registers 'hog.realistic', the name of a decoder featinv "
                                        "ships ('featinv zoo'); its 'hog.realistic' is ignored: "
                                        "rename it")
        assert "hog.realistic" not in featinv.list_features()
        with pytest.raises(featinv.UnknownFeatureError, match="names a shipped decoder of 'hog'"):
            featinv.get_spec(name)

    def test_other_dotted_names_stay_a_plugins(self, extra_plugins):
        # names under a built-in's (hog.mine) are the built-in's since round 14 (A7):
        # test_plugin_strings_bounded.TestNamesUnderABuiltinsAreTheBuiltins
        extra_plugins("dotted", Plugin(make_spec("hogs.mine"), make_spec("mine.realistic")))
        assert not {p.name for p in plugin_problems()} & {"dotted"}
        assert featinv.get_spec("hogs.mine").plugin == "dotted"
        assert featinv.get_spec("mine.realistic").plugin == "dotted"

    def test_two_plugins_sharing_a_name_still_withdraw_it(self, extra_plugins):
        extra_plugins("one", Plugin(make_spec("shared")))
        extra_plugins("two", Plugin(make_spec("shared")))
        with pytest.raises(featinv.UnknownFeatureError, match="more than one plugin"):
            featinv.get_spec("shared")
