"""The example plugin for a user's own network works and passes the contract suite."""
import importlib.util
from pathlib import Path

import pytest

import featinv
from featinv import testing
from featinv.plugins import register_plugin, unregister_plugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_network_plugin.py"


@pytest.fixture
def tinynet(fresh_plugins):
    spec = importlib.util.spec_from_file_location("own_network_plugin", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    register_plugin(module, "tinynet")
    yield
    unregister_plugin("tinynet")


def test_own_network_layers_are_features(tinynet):
    assert featinv.list_features("tinynet.*") == ["tinynet.block1", "tinynet.block2"]
    ext = featinv.get_feature("tinynet.block2")
    assert ext.layout(128, 128).shape == (32, 32, 32)
    testing.check_all("tinynet.block2")
