"""Renamed public names (issue 26: one name per concept) still work under their old spelling,
with a DeprecationWarning naming the new one: plugins written against them keep loading."""
import importlib

import pytest
import torch
from torch import nn

import featinv
from featinv import CellGrid, FeatureSpec, Param, ShippedDecoder
from featinv.decoders.networks import build_decoder


def old_spec(name="oldstyle"):
    """A representation declared as plugins did before the renames."""
    return FeatureSpec(name=name, description="declared with layout= and decoder=", input="gray",
                       differentiable=True, build=lambda cell=4: nn.AvgPool2d(cell),
                       layout=lambda cell=4: CellGrid(1, cell), params=(Param("cell", 4),),
                       decoder="contract_expand")


def test_feature_spec_old_keywords_mean_the_new_fields():
    with pytest.warns(DeprecationWarning) as record:
        spec = old_spec()
    assert sorted(str(w.message) for w in record) == [
        "FeatureSpec(decoder=...) is deprecated; use decoder_family=",
        "FeatureSpec(layout=...) is deprecated; use rule="]
    assert spec.decoder_family == "contract_expand"
    assert spec.layout_rule(cell=8).describe() == "1 x floor(H/8) x floor(W/8)"
    with pytest.warns(DeprecationWarning, match=r"FeatureSpec.decoder.*decoder_family"):
        assert spec.decoder == "contract_expand"
    with pytest.warns(DeprecationWarning, match=r"FeatureSpec.layout.*\.rule"):
        assert spec.layout is spec.rule


def test_feature_spec_refuses_old_and_new_spelling_together():
    with pytest.raises(TypeError, match="both layout= .* and rule="):
        FeatureSpec(name="twice", description="x", input="gray", differentiable=True,
                    build=nn.Identity, layout=lambda: CellGrid(1, 4), rule=lambda: CellGrid(1, 4))


def test_new_spelling_does_not_warn(recwarn):
    spec = FeatureSpec(name="newstyle", description="x", input="gray", differentiable=True,
                       build=nn.Identity, rule=lambda: CellGrid(1, 4), decoder_family="auto")
    assert spec.layout_rule().smallest_side == 4
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_plugin_with_old_spelling_registers_and_gets_its_family(extra_plugins):
    class OldPlugin:
        @featinv.hookimpl
        def featinv_register_features(self, register):
            register(old_spec("oldplug"))

    with pytest.warns(DeprecationWarning):
        extra_plugins("oldplug", OldPlugin())
        ext = featinv.get_feature("oldplug")
    x = torch.rand(2, 3, 32, 32)
    assert ext(x).shape == (2, 1, 8, 8)
    decoder = build_decoder(ext.spec, ext.layout(32, 32), 32, "compact", 0.125)
    assert decoder.config["family"] == "contract_expand"


def test_shipped_decoder_old_keyword_is_the_variant():
    with pytest.warns(DeprecationWarning, match=r"decoder=.*use variant="):
        entry = ShippedDecoder("hog", "x.safetensors", decoder="sharp")
    assert entry.variant == "sharp" and entry.key == "hog.sharp"
    with pytest.warns(DeprecationWarning, match=r"ShippedDecoder.decoder.*\.variant"):
        assert entry.decoder == "sharp"


@pytest.mark.parametrize("module, old, new", [
    ("featinv.features.cnn", "layer_layout", "layer_rule"),
    ("featinv.features.cnn", "window_layout", "window_rule"),
    ("featinv.representation.spec", "DECODER_CHOICES", "FAMILY_CHOICES"),
    ("featinv.representation.spec", "DECODER_FAMILIES", "FAMILY_CHOICES"),
    ("featinv.representation.hookspecs", "DEFAULT_DECODER", "DEFAULT_VARIANT"),
])
def test_old_module_names_are_the_new_ones(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {module}.{new}"):
        assert getattr(mod, old) is getattr(mod, new)
    with pytest.raises(AttributeError):
        getattr(mod, "no_such_name")


def test_from_import_of_an_old_name_works():
    with pytest.warns(DeprecationWarning, match="layer_layout"):
        from featinv.features.cnn import layer_layout
    from featinv.features.cnn import layer_rule
    assert layer_layout is layer_rule
