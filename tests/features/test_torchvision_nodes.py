"""Any torchvision node (``torchvision.<model>.<node>``) and vector embeddings (timm pooled/logits,
vector nodes, plugins declaring vectors), all offline with random weights."""
import pytest
import torch

import featinv
from featinv.decoders.networks import build_decoder
from featinv.errors import UnknownFeatureError
from featinv.features import torchvision_nodes as tvn
from featinv.features.cnn import layer_rule

from helpers import error_lines, run_cli


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to fetch weights fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(tvn, "check_download", refuse)


@pytest.mark.slow
@pytest.mark.parametrize("node", list(tvn.LISTED))
def test_listed_resnet18_layouts_match_the_traced_graph(node, no_download):
    declared = tvn.layout_rule(tvn.LISTED_MODEL, node)

    def meta_body():
        net = tvn._network("resnet18")
        return tvn.NodeOutput(tvn._extractor(net, node), node, tvn.node_kind("resnet18", node),
                              None)

    real = layer_rule(meta_body, "meta pass", {})
    assert declared.smallest_side == real.smallest_side
    for side in (1, 7, 31, 32, 33, 64, 100, 224):
        assert declared(side, side + 5) == real(side, side + 5), side
    assert f"torchvision.resnet18.{node}" in featinv.list_features("torchvision.*")


@pytest.mark.slow
def test_node_output_equals_torchvision_with_weights_from_a_file(tmp_path, no_download):
    """--weights FILE: the node's output is torchvision's own forward pass, preprocessed."""
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    ext = featinv.get_feature("torchvision.resnet18.layer3", weights=str(path))
    x = torch.rand(2, 3, 64, 72)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = (x - mean) / std
    with torch.no_grad():
        for step in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                     net.layer3):
            h = step(h)
        got = ext(x)
    assert got.shape == (2, *ext.layout(64, 72).shape) == (2, 256, 4, 5)
    torch.testing.assert_close(got, h)


@pytest.mark.slow
def test_layouts_without_download_or_real_network(no_download):
    """Layouts come from meta tensors: no weights, no real forward pass."""
    spec = featinv.get_spec("torchvision.alexnet.features.10")
    assert spec.layout_rule()(128, 128).shape == (256, 7, 7)
    assert featinv.get_spec("torchvision.vit_b_16.encoder").layout_rule()(96, 160).shape == (
        768, 14, 14)  # tokens as a 14 x 14 grid, input resized to 224
    vector = featinv.get_spec("torchvision.resnet18.avgpool").layout_rule()(100, 100)
    assert vector.kind == "vector" and vector.channels == 512
    # any case: the graph spells inception's nodes with capitals
    assert featinv.get_spec("torchvision.inception_v3.mixed_6e").image_size == 299


def test_pretrained_false_gives_random_weights_and_any_size(no_download):
    ext = featinv.get_feature("torchvision.mobilenet_v3_small.features.3", pretrained="false")
    out = ext(torch.rand(1, 3, 80, 96))
    assert out.shape == (1, *ext.layout(80, 96).shape) and torch.isfinite(out).all()


def test_vector_embeddings_get_the_fully_connected_decoder(extra_plugins, no_download):
    class Plugin:
        @featinv.hookimpl
        def featinv_register_features(self, register):
            register(featinv.FeatureSpec(
                name="meancolour", description="mean colour, a vector", input="rgb",
                differentiable=True, build=lambda: _Mean(), rule=lambda: featinv.FixedVector(3)))

    extra_plugins("vec-plugin", Plugin())
    for name in ("timm.resnet18.pooled", "timm.resnet18.logits", "torchvision.resnet18.avgpool",
                 "torchvision.resnet18", "meancolour"):
        spec = featinv.get_spec(name)
        layout = spec.layout_rule()(64, 64)
        assert layout.kind == "vector", name
        decoder = build_decoder(spec, layout, 64, "compact")
        assert decoder.config["family"] == "fc_upconv", name
        assert decoder(torch.zeros(2, layout.channels)).shape == (2, 3, 64, 64)


def test_timm_pooled_and_logits_are_timms_head():
    import timm

    torch.manual_seed(0)
    pooled = featinv.get_feature("timm.resnet18.pooled", weights="random")
    logits = featinv.get_feature("timm.resnet18.logits", weights="random")
    logits.module.body.net.load_state_dict(pooled.module.body.net.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        emb, scores = pooled(x), logits(x)
        net = pooled.module.body.net
        expected = net.get_classifier()(emb)
    assert emb.shape == (2, 512) and scores.shape == (2, 1000)
    torch.testing.assert_close(scores, expected)
    assert timm.is_model("resnet18")


def test_describe_lists_the_nodes(capsys, no_download):
    code, out, err = run_cli(capsys, "describe", "torchvision.resnet18")
    assert code == 0, err
    assert "torchvision.resnet18.layer3" in out and "torchvision.resnet18.avgpool" in out
    assert "torchvision.resnet18.layer1.0.conv1" in out and "members (" in out


@pytest.mark.parametrize("name, wanted", [
    ("torchvision.resnt18.layer3", "no classification model 'resnt18'. Did you mean 'resnet18'"),
    ("torchvision.resnet18.layr3", "has no node 'layr3'. Did you mean 'layer3'"),
    ("torchvision.vit_b_16.getitem", "neither a spatial map (C, h, w) nor a vector (C,)"),
    ("torchvision.vit_b_16.encoder.dim", "neither a spatial map"),
])
def test_bad_names_are_one_clear_line(capsys, name, wanted, no_download):
    with pytest.raises(UnknownFeatureError, match="Unknown feature"):
        featinv.get_spec(name)
    code, out, err = run_cli(capsys, "describe", name)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and wanted in lines[0], err
    assert "Traceback" not in err


class _Mean(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
