"""One inversion pipeline (issue 26): the CLI, ``featinv.invert`` and the module functions go
through ``Inverter``; the device is chosen once; a checkpoint's network is built once; the old
import paths keep working."""

import pytest
import torch
from click.testing import CliRunner

import featinv
from featinv.cli.main import cli
from featinv.errors import PluginError
from featinv.inversion import device as device_module
from featinv.inversion import load as load_module
from featinv.inversion.methods import make_method
from featinv.inversion.pipeline import Inverter, reconstruct
from featinv.io.images import example_image, pil_to_tensor


@pytest.fixture(scope="module")
def photo():
    return pil_to_tensor(example_image("coffee").resize((45, 30)))


def test_cli_api_and_functions_give_the_same_reconstruction(photo):
    """``Method.run`` (the CLI's), ``featinv.invert`` and ``reconstruct`` are one computation,
    here on a size the LBP cells do not divide (padded, then cropped back)."""
    method = make_method("decoder", feature="lbp", device="cpu")
    assert isinstance(method.inverter, Inverter) and method.device == torch.device("cpu")
    by_cli = method.run(photo[None])[0]
    by_api = featinv.invert([photo], feature="lbp", device="cpu")[0]
    inverter = method.inverter
    by_function = reconstruct(inverter.extractor, inverter.decoder, photo[None])[0]
    assert by_cli.shape == photo.shape == by_api.shape
    assert torch.equal(by_cli, by_api) and torch.equal(by_cli, by_function)


def test_the_device_is_chosen_once_per_invert(tmp_path, monkeypatch, photo):
    calls = []
    original = device_module.pick_device

    def counting(device=None):
        calls.append(device)
        return original(device)

    monkeypatch.setattr(device_module, "pick_device", counting)
    image = tmp_path / "coffee.png"
    from featinv.io.images import save_png
    save_png(photo, image)
    result = CliRunner().invoke(cli, ["invert", "-f", "lbp", str(image), "-o",
                                      str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert calls == ["cpu"]
    calls.clear()
    featinv.invert([photo], feature="lbp", device="cpu")
    assert calls == ["cpu"]


def test_a_checkpoint_network_is_built_once(monkeypatch):
    built = []
    original = load_module.rebuild_decoder

    def counting(spec, config):
        built.append(spec.name)
        return original(spec, config)

    monkeypatch.setattr(load_module, "rebuild_decoder", counting)
    decoder = load_module.load_decoder("hog")
    assert built == ["hog"]
    assert not any(t.is_meta for t in [*decoder.parameters(), *decoder.buffers()])
    assert all(bool(torch.isfinite(t).all()) for t in decoder.state_dict().values())


def test_nan_features_are_refused_once_in_every_path(monkeypatch, photo):
    """A plugin's NaN features: one ``PluginError`` from the pipeline, for the API as for the
    CLI (the API used to decode them into a blank picture)."""
    inverter = Inverter.load("lbp", device="cpu")
    monkeypatch.setattr(inverter.extractor, "forward",
                        lambda x: torch.full((len(x), *inverter.decoder.layout.shape),
                                             float("nan")))
    with pytest.raises(PluginError, match="NaN or infinite features"):
        inverter.reconstruct(photo[None])


def test_old_import_paths_still_work():
    from featinv.inversion import pipeline, sizing
    from featinv.inversion.load import (decode, encode, fit_sides, invert, pick_device, prepare,
                                        reconstruct as old_reconstruct)

    assert pick_device is device_module.pick_device and prepare is sizing.prepare
    assert fit_sides is sizing.fit_sides
    assert (encode, decode, old_reconstruct, invert) == (
        pipeline.encode, pipeline.decode, pipeline.reconstruct, pipeline.invert)
    assert featinv.invert is pipeline.invert
    with pytest.raises(AttributeError):
        load_module.no_such_name


def test_a_device_object_is_still_checked(photo):
    """A ``torch.device`` given to the pipeline is kept as chosen, but one this machine lacks is
    refused with the same line as ``--device`` (not a PyTorch traceback later)."""
    from featinv.errors import FeatinvError

    missing = torch.device("cuda", torch.cuda.device_count() + 3)
    with pytest.raises(FeatinvError, match=r"--device cuda:\d+: this machine has"):
        featinv.invert([photo], feature="lbp", device=missing)
    with pytest.raises(FeatinvError, match=r"--device cuda:\d+: this machine has"):
        make_method("decoder", feature="lbp", device=missing)
