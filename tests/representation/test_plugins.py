"""The plugin system: lazy loading, guarded plugins, duplicates, FEATINV_LOAD_PLUGINS, hooks."""
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import featinv
from featinv import CellGrid, FeatureSpec, Param, ShapeError, UnknownFeatureError
from featinv.representation.plugins import plugin_infos, plugin_problems


def make_spec(name, build=None, rule=None, **kw):
    return FeatureSpec(name=name, description=f"test feature {name}", input="gray",
                       differentiable=True, build=build or (lambda: nn.AvgPool2d(4)),
                       rule=rule or (lambda: CellGrid(1, 4)), **kw)


class RaisingModule(nn.Module):
    """A representation's network whose forward raises ``exc`` (a plugin failing mid-run)."""

    def __init__(self, exc):
        super().__init__()
        self.exc = exc

    def forward(self, x):
        raise self.exc


class Plugin:
    """A plugin object registering the given specs (or raising)."""

    def __init__(self, *specs, error=None):
        self.specs, self.error = specs, error

    @featinv.hookimpl
    def featinv_register_features(self, register):
        if self.error:
            raise self.error
        for spec in self.specs:
            register(spec)


def fake_distribution(tmp_path, monkeypatch, entries: dict[str, str], modules: dict[str, str]):
    """A distribution on sys.path whose 'featinv' entry points are ``entries``."""
    dist = tmp_path / "fakeplugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugins\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entries.items())
    (dist / "entry_points.txt").write_text(f"[featinv]\n{lines}\n")
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.slow
def test_import_does_not_load_plugins():
    code = ("import featinv, featinv.representation.plugins as p; assert p._state is None; "
            "featinv.list_features(); assert p._state is not None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_builtins_register_through_the_hook(fresh_plugins):
    info = {p.name: p for p in plugin_infos()}
    assert info["featinv.features.hog"].source == "builtin"
    assert "hog" in info["featinv.features.hog"].features
    assert featinv.get_spec("hog").plugin == "featinv.features.hog"


def test_plugin_failing_at_import_is_named_and_others_work(tmp_path, monkeypatch, fresh_plugins):
    fake_distribution(tmp_path, monkeypatch, {"brokenplug": "broken_mod"},
                      {"broken_mod": "raise ImportError('needs libfoo')\n"})
    problems = {p.name: p.error for p in plugin_problems()}
    assert "brokenplug" in problems
    assert "needs libfoo" in problems["brokenplug"]
    assert "hog" in featinv.list_features()


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch, fresh_plugins):
    fake_distribution(tmp_path, monkeypatch, {"goodplug": "good_mod"}, {"good_mod": """
        import featinv
        from torch import nn

        @featinv.hookimpl
        def featinv_register_features(register):
            register(featinv.FeatureSpec(
                name="pool4", description="4x4 average pooling", input="rgb",
                differentiable=True, build=lambda: nn.AvgPool2d(4),
                rule=lambda: featinv.CellGrid(3, 4)))
        """})
    assert featinv.get_spec("pool4").plugin == "goodplug"
    src = {p.name: p.source for p in plugin_infos()}["goodplug"]
    assert src.startswith("entry point (fakeplugins 0.1")


def test_load_plugins_env_restricts_external_plugins(tmp_path, monkeypatch, fresh_plugins):
    fake_distribution(tmp_path, monkeypatch, {"one": "mod_one", "two": "mod_two"}, {
        "mod_one": "import featinv\n", "mod_two": "import featinv\n"})
    monkeypatch.setenv("FEATINV_LOAD_PLUGINS", "two")
    names = {p.name for p in plugin_infos()}
    assert "two" in names and "one" not in names
    assert "featinv.features.hog" in names  # built-ins always load
    featinv.representation.plugins.reset()
    monkeypatch.setenv("FEATINV_LOAD_PLUGINS", "")
    assert not [p for p in plugin_infos() if p.source.startswith("entry point")]
    assert "hog" in featinv.list_features()


def test_a_name_in_load_plugins_that_no_plugin_has_is_said(tmp_path, monkeypatch, fresh_plugins):
    """Round 6: FEATINV_LOAD_PLUGINS=dtc (for dct) loaded no plugin without a word, and
    'describe dct' said only 'Unknown feature'."""
    fake_distribution(tmp_path, monkeypatch, {"one": "mod_one"}, {"mod_one": "import featinv\n"})
    monkeypatch.setenv("FEATINV_LOAD_PLUGINS", "one,noe")
    problems = {p.name: p.error for p in plugin_problems()}
    assert "no installed plugin has that name (installed: " in problems["noe"], problems
    assert "one" in problems["noe"].split("installed: ")[1], problems
    assert "one" not in problems
    with pytest.raises(UnknownFeatureError, match="FEATINV_LOAD_PLUGINS='one,noe' limits the "
                       "plugins that load, and no installed plugin is named 'noe'"):
        featinv.get_spec("nosuch")
    featinv.representation.plugins.reset()
    monkeypatch.delenv("FEATINV_LOAD_PLUGINS")
    with pytest.raises(UnknownFeatureError) as unset:
        featinv.get_spec("nosuch")
    assert "FEATINV_LOAD_PLUGINS" not in str(unset.value)


def test_plugin_raising_in_hook_is_named(extra_plugins):
    extra_plugins("exploding", Plugin(error=RuntimeError("boom")))
    problems = {p.name: p.error for p in plugin_problems()}
    assert "boom" in problems["exploding"]
    assert "hog" in featinv.list_features()


def test_duplicate_names_fail_with_both_plugins_named(extra_plugins):
    extra_plugins("first", Plugin(make_spec("twin")))
    extra_plugins("second", Plugin(make_spec("twin")))
    with pytest.raises(UnknownFeatureError, match="'first'.*'second'|'second'.*'first'"):
        featinv.get_spec("twin")
    problems = {p.name: p.error for p in plugin_problems()}
    assert "twin" in problems["first"] and "twin" in problems["second"]
    assert "twin" not in featinv.list_features()


def test_a_second_plugin_of_the_same_name_is_noted_in_one_clean_message(extra_plugins):
    """A plugin registered under a name already taken was noted as '; a second plugin ...'
    (a stray separator) when the first had no error of its own."""
    extra_plugins("featinv.features.hog", Plugin(make_spec("impostor")))
    problems = {p.name: p.error for p in plugin_problems()}
    assert problems["featinv.features.hog"] == (
        "a second plugin named 'featinv.features.hog' was ignored")
    assert "impostor" not in featinv.list_features() and "hog" in featinv.list_features()


def test_invalid_layout_is_reported(extra_plugins):
    extra_plugins("badlayout", Plugin(make_spec("weird", rule=lambda: (3, 4, 4))))
    assert "weird" not in featinv.list_features()
    assert "invalid layout" in {p.name: p.error for p in plugin_problems()}["badlayout"]


def test_invalid_spec_is_rejected_early():
    with pytest.raises(ValueError, match="input must be one of"):
        make_spec("x", input="hsv") if False else FeatureSpec(
            name="x", description="d", input="hsv", differentiable=True,
            build=nn.Identity, rule=lambda: CellGrid(1, 1))
    with pytest.raises(ValueError, match="name"):
        make_spec("Bad Name")


def test_wrong_output_shape_is_reported_with_plugin_name(extra_plugins):
    extra_plugins("liar", Plugin(make_spec("liar_feat", build=lambda: nn.AvgPool2d(2))))
    ext = featinv.get_feature("liar_feat")
    with pytest.raises(ShapeError, match=r"liar_feat \(plugin liar\) returned shape"):
        ext(torch.rand(1, 3, 16, 16))


def test_params_are_checked_and_coerced(extra_plugins):
    extra_plugins("withparams", Plugin(make_spec(
        "pooled", build=lambda cell=4: nn.AvgPool2d(cell), rule=lambda cell=4: CellGrid(1, cell),
        params=(Param("cell", 4, "pool size"),))))
    ext = featinv.get_feature("pooled", cell="8")
    assert ext.params == {"cell": 8}
    assert ext(torch.rand(2, 3, 32, 32)).shape == (2, 1, 4, 4)
    with pytest.raises(featinv.FeatinvError, match="no parameter 'size'.*parameters: cell"):
        featinv.get_feature("pooled", size=3)
    with pytest.raises(featinv.FeatinvError, match="expects int"):
        featinv.get_feature("pooled", cell="big")


def test_unknown_feature_suggests_a_name(fresh_plugins):
    with pytest.raises(UnknownFeatureError, match="Did you mean 'hog'"):
        featinv.get_feature("hgo")


def test_plugin_can_supply_its_own_decoder(extra_plugins):
    class TinyDecoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.Upsample(scale_factor=4)
            self.conv = nn.Conv2d(1, 3, 1)

        def forward(self, x):
            return self.conv(self.up(x))

    class DecoderPlugin(Plugin):
        @featinv.hookimpl
        def featinv_build_decoder(self, spec, layout):
            return TinyDecoder() if spec.name == "pool_gray" else None

    extra_plugins("custom", DecoderPlugin(make_spec("pool_gray")))
    spec = featinv.get_spec("pool_gray")
    dec = featinv.build_decoder(spec, spec.layout_rule()(32, 32), 32)
    assert isinstance(dec.body, TinyDecoder) and dec.config["builder"] == "custom"
    assert dec(torch.rand(2, 1, 8, 8)).shape == (2, 3, 32, 32)
    # every other representation still gets the generic decoder
    hog = featinv.get_spec("hog")
    assert featinv.build_decoder(hog, hog.layout_rule()(32, 32), 32).config["builder"] == "featinv.decoders"


class _Float64(nn.Module):
    def forward(self, x):
        return nn.functional.avg_pool2d(x, 4).double()


class _Crashing(nn.Module):
    def forward(self, x):
        raise RuntimeError("index out of range in my plugin")


def _broken_build():
    raise OSError("model file missing")


def test_wrong_dtype_is_reported_with_plugin_name(extra_plugins):
    extra_plugins("doubler", Plugin(make_spec("double_feat", build=_Float64)))
    with pytest.raises(ShapeError, match=r"double_feat \(plugin doubler\) returned torch.float64"):
        featinv.get_feature("double_feat")(torch.rand(1, 3, 16, 16))


def test_plugin_failing_at_build_or_forward_is_named(extra_plugins):
    extra_plugins("crashy", Plugin(make_spec("crash_feat", build=_Crashing),
                                   make_spec("nobuild_feat", build=_broken_build),
                                   make_spec("notmodule_feat", build=lambda: "pool")))
    with pytest.raises(featinv.PluginError,
                       match=r"crash_feat \(plugin crashy\) failed .*RuntimeError: index out"):
        featinv.get_feature("crash_feat")(torch.rand(1, 3, 16, 16))
    with pytest.raises(featinv.PluginError,
                       match=r"nobuild_feat \(plugin crashy\) failed to build: OSError"):
        featinv.get_feature("nobuild_feat")
    with pytest.raises(featinv.PluginError, match="not a torch.nn.Module"):
        featinv.get_feature("notmodule_feat")
    assert featinv.get_feature("hog")(torch.rand(1, 3, 16, 16)).shape == (1, 31, 2, 2)


def test_plugins_command_lists_broken_plugins_and_other_commands_still_work(
        tmp_path, monkeypatch, fresh_plugins, capsys):
    from featinv.cli.main import main

    fake_distribution(tmp_path, monkeypatch, {"brokenplug": "broken_mod"},
                      {"broken_mod": "raise ImportError('needs libfoo')\n"})

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main(list(args))
        return info.value.code, capsys.readouterr()

    code, out = run("plugins")
    assert code == 0
    line = next(x for x in out.out.splitlines() if x.startswith("brokenplug"))
    assert "ERROR" in line and "needs libfoo" in line
    code, out = run("list-features")
    assert code == 0 and "hog" in out.out
    code, out = run("invert", "-f", "hog", "skimage:astronaut", "-o", str(tmp_path / "o"))
    assert code == 0 and "Traceback" not in out.err


def test_generic_builder_is_an_ordinary_builtin_plugin(fresh_plugins):
    info = {p.name: p for p in plugin_infos()}["featinv.decoders"]
    assert info.source == "builtin" and info.error is None
    assert info.features == [] and info.hooks == ["featinv_build_decoder"]


class _WrapperPlugin:
    """A ``wrapper=True`` and an old-style ``hookwrapper=True`` implementation around the
    builders: pluggy must drive them as generators, never take them for an answer."""

    def __init__(self):
        self.seen = []

    @featinv.hookimpl(wrapper=True)
    def featinv_build_decoder(self, spec):
        body = yield
        self.seen.append(("wrapper", spec.name, type(body).__name__))
        return body

    @featinv.hookimpl(hookwrapper=True)
    def featinv_resolve_feature(self, name):
        outcome = yield
        self.seen.append(("hookwrapper", name,
                          "error" if outcome.exception else outcome.get_result()))


def test_wrapper_implementations_are_called_by_pluggy(extra_plugins):
    plugin = _WrapperPlugin()
    extra_plugins("wrapping", plugin)
    hog = featinv.get_spec("hog")
    dec = featinv.build_decoder(hog, hog.layout_rule()(32, 32), 32)
    assert dec.config["builder"] == "featinv.decoders"  # the answer, not the wrapper
    assert plugin.seen == [("wrapper", "hog", type(dec.body).__name__)]
    with pytest.raises(UnknownFeatureError):
        featinv.get_spec("no_such_feature")
    assert ("hookwrapper", "no_such_feature", None) in plugin.seen


class _Failing:
    def __init__(self, exc):
        self.exc = exc

    @featinv.hookimpl
    def featinv_build_decoder(self, spec):
        raise self.exc

    @featinv.hookimpl
    def featinv_resolve_feature(self, name):
        raise self.exc


def test_plugin_failing_in_a_firstresult_hook_is_named(extra_plugins):
    from featinv.representation.hookcall import call_first

    wrapper = _WrapperPlugin()
    extra_plugins("wrapping", wrapper)  # the error passes through a wrapper, still blamed right
    extra_plugins("failing", _Failing(RuntimeError("kaboom")))
    hog = featinv.get_spec("hog")
    with pytest.raises(featinv.PluginError,
                       match="Plugin 'failing' failed in featinv_build_decoder: RuntimeError: kab"):
        featinv.build_decoder(hog, hog.layout_rule()(32, 32), 32)
    assert wrapper.seen == []  # the wrapper saw the exception, not a result
    with pytest.raises(UnknownFeatureError,
                       match="Plugin 'failing' failed in featinv_resolve_feature"):
        featinv.get_spec("no_such_feature")
    with pytest.raises(featinv.PluginError, match="Plugin 'failing'"):
        call_first("featinv_resolve_feature", required=False, name="x")


def test_featinv_error_from_a_plugin_passes_unchanged(extra_plugins):
    from featinv.representation.hookcall import call_first

    extra_plugins("strict", _Failing(featinv.FeatinvError("no such family member")))
    with pytest.raises(featinv.FeatinvError, match="^no such family member$"):
        call_first("featinv_resolve_feature", name="x")


def test_call_first_names_the_answering_plugin(extra_plugins):
    from featinv.representation.hookcall import call_first

    class Resolver:
        @featinv.hookimpl
        def featinv_resolve_feature(self, name):
            return make_spec(name) if name == "made_up" else None

    extra_plugins("resolver", Resolver())
    assert call_first("featinv_resolve_feature", name="made_up")[0] == "resolver"
    assert call_first("featinv_resolve_feature", required=False, name="other") == (None, None)
    with pytest.raises(featinv.PluginError, match="No plugin answered featinv_resolve_feature"):
        call_first("featinv_resolve_feature", name="other")
    assert featinv.get_spec("made_up").plugin == "resolver"
