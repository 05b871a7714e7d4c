"""Round 11 (E1): plugin code that raises a ``BaseException`` that is not an ``Exception``
(``SystemExit`` as from ``sys.exit`` or argparse at import, ``GeneratorExit``, a
``KeyboardInterrupt`` of its own, a class of its own) ended featinv: with exit 0 and no word,
with the plugin's exit code, or with a traceback, even for a built-in representation. It is now
one more plugin failure, wherever the plugin code runs; a signal the user sends still ends the
command."""
import os
import signal
import threading

import pytest
import torch

import featinv
from featinv import ComputedGrid
from featinv.representation.guard import PluginAborted, plugin_code
from featinv.representation.plugins import plugin_problems

from test_plugins import Plugin, RaisingModule, _Failing, fake_distribution, make_spec


class _OwnBaseException(BaseException):
    pass


# what a plugin may raise instead of an exception; the text the report names it by
ENDINGS = [(SystemExit(0), "SystemExit: 0"), (SystemExit(2), "SystemExit: 2"),
           (SystemExit("usage: x"), "SystemExit: usage: x"), (GeneratorExit(), "GeneratorExit"),
           (KeyboardInterrupt(), "KeyboardInterrupt"), (_OwnBaseException("odd"),
                                                        "_OwnBaseException: odd")]
IDS = ["exit0", "exit2", "exit-text", "generatorexit", "own-keyboardinterrupt", "own-class"]


def _raising(exc):
    def function(*args, **kwargs):
        raise exc
    return function


class _Shipping:
    def __init__(self, exc):
        self.exc = exc

    @featinv.hookimpl
    def featinv_shipped_decoders(self):
        raise self.exc


@pytest.mark.parametrize("exc,text", ENDINGS, ids=IDS)
class TestPluginEndingTheProcessIsAPluginFailure:
    def test_at_import(self, exc, text, tmp_path, monkeypatch, fresh_plugins):
        args = ", ".join(map(repr, exc.args))
        source = ("class _OwnBaseException(BaseException):\n    pass\n\n\n"
                  f"raise {type(exc).__name__}({args})\n")
        fake_distribution(tmp_path, monkeypatch, {"endingplug": "ending_mod"},
                          {"ending_mod": source})
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["endingplug"] == f"failed to load: {text}"
        assert "hog" in featinv.list_features()

    def test_in_register_features(self, exc, text, extra_plugins):
        extra_plugins("ending", Plugin(error=exc))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["ending"] == f"error in featinv_register_features: {text}"
        assert featinv.get_feature("hog")(torch.rand(1, 3, 16, 16)).shape == (1, 31, 2, 2)

    def test_in_shipped_decoders(self, exc, text, extra_plugins):
        extra_plugins("ending", _Shipping(exc))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["ending"] == f"error in featinv_shipped_decoders: {text}"

    def test_in_a_firstresult_hook(self, exc, text, extra_plugins):
        extra_plugins("ending", _Failing(exc))
        hog = featinv.get_spec("hog")
        with pytest.raises(featinv.PluginError,
                           match=f"^Plugin 'ending' failed in featinv_build_decoder: {text}$"):
            featinv.build_decoder(hog, hog.layout_rule()(32, 32), 32)
        with pytest.raises(featinv.UnknownFeatureError, match="Plugin 'ending' failed in "
                           f"featinv_resolve_feature: {text}$"):
            featinv.get_spec("no_such_feature")

    def test_in_build_forward_and_layout(self, exc, text, extra_plugins):
        extra_plugins("ending", Plugin(
            make_spec("build_ends", build=_raising(exc)),
            make_spec("forward_ends", build=lambda: RaisingModule(exc)),
            make_spec("layout_ends", rule=lambda: ComputedGrid(_raising(exc), "f(h, w)"))))
        extra_plugins("rule_ending", Plugin(make_spec("rule_ends", rule=_raising(exc))))
        with pytest.raises(featinv.PluginError,
                           match=rf"^build_ends \(plugin ending\) failed to build: {text}$"):
            featinv.get_feature("build_ends")
        with pytest.raises(featinv.PluginError, match=r"^forward_ends \(plugin ending\) failed "
                           rf"on a batch of shape \(1, 1, 16, 16\): {text}$"):
            featinv.get_feature("forward_ends")(torch.rand(1, 3, 16, 16))
        with pytest.raises(PluginAborted, match=rf"^the layout function of 'f\(h, w\)' failed: "
                           rf"{text} \(plugin code must raise an exception"):
            featinv.get_feature("layout_ends")(torch.rand(1, 3, 16, 16))
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["rule_ending"] == ("error in featinv_register_features: PluginError: "
                                           f"'rule_ends' declares an invalid layout: {text}")
        assert featinv.get_feature("hog")(torch.rand(1, 3, 16, 16)).shape == (1, 31, 2, 2)


class TestPluginEndingTheProcessInTheCli:
    def test_invert_does_its_work_and_plugins_says_error(self, tmp_path, monkeypatch,
                                                         fresh_plugins, capsys):
        from featinv.cli.main import main

        fake_distribution(tmp_path, monkeypatch, {"exitplug": "exit_mod"},
                          {"exit_mod": "raise SystemExit(0)\n"})

        def run(*args):
            with pytest.raises(SystemExit) as info:
                main(list(args))
            return info.value.code, capsys.readouterr()

        out_png = tmp_path / "out.png"
        code, out = run("invert", "-f", "hog", "skimage:astronaut", "--size", "32",
                        "-o", str(out_png))
        assert code == 0 and out_png.is_file(), out
        featinv.representation.plugins.reset()
        code, out = run("plugins")
        line = next(x for x in out.out.splitlines() if x.startswith("exitplug"))
        assert "ERROR: failed to load: SystemExit: 0" in line


class TestUserSignalsStillEndTheCommand:
    """Only a BaseException the plugin code raised by itself is its failure: a Ctrl-C or a
    SIGTERM that arrives while it runs ends the command as before."""

    def test_ctrl_c_during_plugin_code_passes(self):
        with pytest.raises(KeyboardInterrupt):
            with plugin_code("plugin 'slow'"):
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10 ** 6):  # the handler runs between bytecodes
                    pass
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def test_a_signal_handler_raising_its_own_exception_passes(self):
        class Terminated(BaseException):
            pass

        def handler(signum, frame):
            raise Terminated

        old = signal.signal(signal.SIGTERM, handler)
        try:
            with pytest.raises(Terminated):
                with plugin_code("plugin 'slow'"):
                    os.kill(os.getpid(), signal.SIGTERM)
                    for _ in range(10 ** 6):
                        pass
            assert signal.getsignal(signal.SIGTERM) is handler
        finally:
            signal.signal(signal.SIGTERM, old)

    def test_keyboardinterrupt_without_a_signal_is_the_plugins(self):
        with pytest.raises(PluginAborted, match="plugin 'x' failed: KeyboardInterrupt"):
            with plugin_code("plugin 'x'"):
                raise KeyboardInterrupt

    def test_in_another_thread_every_ending_is_the_plugins(self):
        caught = []

        def work():
            try:
                with plugin_code("plugin 'x'"):
                    raise SystemExit(4)
            except PluginAborted as exc:
                caught.append(str(exc))

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert caught and "SystemExit: 4" in caught[0]


def test_a_visualize_ending_the_process_is_a_plugin_failure(extra_plugins):
    from featinv.analysis.visualize import show_features

    extra_plugins("drawing", Plugin(make_spec("draw_ends", visualize=_raising(SystemExit(5)))))
    with pytest.raises(PluginAborted, match=r"^draw_ends's visualize \(plugin drawing\) failed: "
                       "SystemExit: 5"):
        show_features(featinv.get_feature("draw_ends"), torch.rand(3, 16, 16))


class TestPluginExceptionWhoseMessageFails:
    """Round 12 (D2): an exception whose ``__str__`` raises (``SystemExit``: featinv ended
    with exit 0 and no word; ``ValueError``: an internal error) is still one plugin failure;
    its message is not trusted."""

    @pytest.mark.parametrize("inner", [SystemExit(0), ValueError("str broke"), GeneratorExit()])
    def test_at_import(self, inner, tmp_path, monkeypatch, fresh_plugins):
        source = ("class StrFails(Exception):\n"
                  "    def __str__(self):\n"
                  f"        raise {type(inner).__name__}({', '.join(map(repr, inner.args))})\n\n\n"
                  "raise StrFails()\n")
        fake_distribution(tmp_path, monkeypatch, {"strplug": "str_mod"}, {"str_mod": source})
        problems = {p.name: p.error for p in plugin_problems()}
        assert problems["strplug"] == ("failed to load: StrFails: (its message cannot be "
                                       "shown: its __str__ failed)")
        assert "hog" in featinv.list_features()
