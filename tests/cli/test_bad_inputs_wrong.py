"""Wrong results must not pass silently, and every error says what to do in one line (issue 16,
items 6-10): NaN features from a plugin, float TIFFs, symlinked folders, out-of-range counts and
steps, 0-255 tensors, skimage:NAME, device/parameter/checkpoint errors, names with newlines."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featinv
from featinv import CellGrid, FeatureSpec
from featinv.io.checkpoint import decoder_metadata, save_decoder
from featinv.inversion.load import ZOO_DIR
from featinv.inversion.optimize import OptimizeConfig
from featinv.decoders.networks import build_decoder
from featinv.io.images import find_images, load_image
from featinv.representation.plugins import register_plugin, unregister_plugin

from helpers import error_lines as _errors, run_cli as run, write_images


# -- 6: NaN features ---------------------------------------------------------------------------

class _NaNPool(nn.Module):
    def forward(self, x):
        out = nn.functional.avg_pool2d(x, 4)
        out[:, :, 0, 0] = float("nan")
        return out


class _NaNPlugin:
    @featinv.hookimpl
    def featinv_register_features(self, register):
        register(FeatureSpec(name="nanny", description="pools, with a NaN", input="gray",
                             differentiable=True, build=_NaNPool, rule=lambda: CellGrid(1, 4)))


@pytest.fixture
def nan_plugin(fresh_plugins):
    register_plugin(_NaNPlugin(), "nanplug")
    yield
    unregister_plugin("nanplug")


def test_extract_refuses_nan_features_naming_the_plugin(nan_plugin, tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    code, _, err = run(capsys, "extract", "-f", "nanny", photo, "-o", tmp_path / "f.npz")
    assert code == 1 and not (tmp_path / "f.npz").exists()
    assert "nanny (plugin nanplug) returned NaN or infinite features" in _errors(err)[0]


def test_evaluate_and_invert_refuse_nan_features_naming_the_plugin(nan_plugin, tmp_path, capsys):
    nanny = featinv.get_feature("nanny")
    decoder = build_decoder(nanny.spec, nanny.layout(32, 32), 32, "compact", 0.125)
    ckpt = save_decoder(decoder, tmp_path / "d.safetensors", decoder_metadata(nanny, decoder))
    folder = tmp_path / "in"
    write_images(folder, 3)
    code, out, err = run(capsys, "evaluate", "-c", ckpt, "--data", folder)
    assert code == 1 and out == "" and "(plugin nanplug) returned NaN" in err
    code, out, err = run(capsys, "invert", "-c", ckpt, folder, "-o", tmp_path / "out")
    assert code == 1 and len(_errors(err)) == 3 and not (tmp_path / "out").exists()


# -- 7: read correctly or refused clearly ------------------------------------------------------

def test_float_tiffs_are_read_in_their_range_or_refused(tmp_path):
    ramp = np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48)
    Image.fromarray(ramp).save(tmp_path / "unit.tif")
    Image.fromarray(ramp * 255).save(tmp_path / "byte.tif")
    for name in ("unit.tif", "byte.tif"):
        image = load_image(tmp_path / name)
        torch.testing.assert_close(image[0], torch.from_numpy(ramp), atol=1 / 255, rtol=0)
    Image.fromarray(ramp * 4000 - 10).save(tmp_path / "wide.tif")
    with pytest.raises(featinv.ImageError, match=r"wide.tif: float image with values in \[-10"):
        load_image(tmp_path / "wide.tif")
    ramp[3, 3] = np.nan
    Image.fromarray(ramp).save(tmp_path / "nan.tif")
    with pytest.raises(featinv.ImageError, match="nan.tif: float image with NaN"):
        load_image(tmp_path / "nan.tif")


def test_symlinked_folders_are_searched_once_and_loops_end(tmp_path):
    real = tmp_path / "elsewhere"
    write_images(real, 2)
    data = tmp_path / "data"
    write_images(data, 1)
    (data / "linked").symlink_to(real)
    (real / "loop").symlink_to(data)  # data -> linked -> loop -> data ...
    found = find_images(data)
    assert sorted(p.relative_to(data).as_posix() for p in found) == [
        "img000.png", "linked/img000.png", "linked/img001.png"]


def test_counts_and_steps_below_one_are_refused(tmp_path, capsys):
    folder = tmp_path / "in"
    write_images(folder, 2)
    for args in (["evaluate", "-f", "hog", "--data", folder, "--limit", 0],
                 ["evaluate", "-f", "hog", "--data", folder, "--limit", -1],
                 ["evaluate", "-f", "hog", "--data", folder, "--batch-size", 0],
                 ["analyze", "perturb", "hog", "--data", folder, "--limit", 0],
                 ["analyze", "topk", "hog", "skimage:coffee", "-k", -1],
                 ["invert", "--method", "optimize", "-f", "hog", "skimage:coffee", "--steps", 0],
                 ["demo", "--epochs", 0]):
        code, _, err = run(capsys, *args)
        assert code == 2 and "is not in the range" in err, (args, err)
    code, _, err = run(capsys, "invert", "--method", "optimize", "-f", "hog", "skimage:coffee",
                       "--step-size", "nan", "-o", tmp_path)
    assert code == 1 and _errors(err) == ["Error: --step-size nan: must be a finite number "
                                          "above 0."]
    with pytest.raises(featinv.FeatinvError, match="--limit 0: give a whole number"):
        featinv.evaluate(folder, feature="hog", limit=0)
    with pytest.raises(featinv.FeatinvError, match="--steps 0"):
        OptimizeConfig(steps=0)


@pytest.mark.slow
def test_tensors_outside_0_1_are_refused_by_the_api():
    with pytest.raises(featinv.ShapeError, match="divide by 255"):
        featinv.invert([torch.rand(3, 32, 32) * 255], feature="hog")
    with pytest.raises(featinv.ShapeError, match="torch.uint8"):
        featinv.invert([torch.zeros(3, 32, 32, dtype=torch.uint8)], feature="hog")
    assert featinv.invert([torch.rand(3, 32, 32)], feature="hog", size=32)[0].shape == (3, 32, 32)


# -- 8: skimage:NAME ---------------------------------------------------------------------------

def test_skimage_names_load_only_bundled_pictures(tmp_path, capsys, monkeypatch):
    import skimage.data

    monkeypatch.setattr(skimage.data, "download_all", lambda *a: pytest.fail("downloaded"))
    code, out, err = run(capsys, "invert", "-f", "hog", "skimage:download_all", "skimage:coffee",
                         "skimage:data_dir", "skimage:../x", "--size", 32, "-o", tmp_path)
    assert code == 1 and len(_errors(err)) == 3
    assert all("scikit-image has no example image" in line for line in _errors(err))
    assert [p.name for p in tmp_path.glob("*.png")] == ["coffee.hog.png"]


# -- 9: errors users can act on ----------------------------------------------------------------

def test_device_errors_say_what_to_use(tmp_path, capsys):
    cases = [("gpu", "not a device name")]
    # devices torch names but featinv cannot run on: meta, xpu, hpu were a RuntimeError, an
    # AssertionError, a ModuleNotFoundError through the generic wrapper (round 6)
    cases += [(name, "featinv runs on cpu, cuda, cuda:N or mps") for name in ("meta", "xpu",
                                                                             "hpu")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "no CUDA GPU"))
    for device, message in cases:
        code, _, err = run(capsys, "invert", "-f", "hog", "skimage:coffee", "--device", device,
                           "-o", tmp_path)
        assert code == 1 and len(_errors(err)) == 1 and message in err
        assert "RuntimeError" not in err and "ModuleNotFoundError" not in err


@pytest.mark.parametrize("feature", ["hog", "sift"])
def test_an_impossible_parameter_value_is_named(feature, tmp_path, capsys):
    code, _, err = run(capsys, "extract", "-f", feature, "-p", "cell_size=0", "skimage:coffee",
                       "-o", tmp_path / "f.npz")
    assert code == 1 and len(_errors(err)) == 1
    assert f"Representation '{feature}' does not accept cell_size=0" in err
    with pytest.raises(featinv.FeatinvError, match="expects float"):
        featinv.Param("scale", 1.0).coerce("nan")


def test_identical_evaluation_images_are_refused_before_inverting(tmp_path, capsys):
    folder = tmp_path / "same"
    photo = write_images(folder, 1)[0]
    (folder / "copy.png").write_bytes(photo.read_bytes())
    code, out, err = run(capsys, "evaluate", "-f", "hog", "--data", folder)
    assert code == 1 and out == "" and "are identical" in _errors(err)[0]
    from featinv.analysis.metrics import normalized_error

    x = torch.rand(1, 3, 8, 8).expand(3, -1, -1, -1)
    with pytest.raises(featinv.ShapeError, match="all identical"):
        normalized_error(x, x)


def test_a_folder_as_checkpoint(tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    empty = tmp_path / "run"
    empty.mkdir()
    code, _, err = run(capsys, "invert", "-c", empty, photo, "-o", tmp_path / "o")
    assert code == 1 and "is a folder, not a checkpoint" in err and "not found" not in err
    (empty / "decoder.safetensors").write_bytes(
        (ZOO_DIR / "hog.safetensors").read_bytes())
    code, out, err = run(capsys, "invert", "-c", empty, photo, "--size", 32, "-o", tmp_path / "o")
    assert code == 0 and out.strip().endswith(f"{photo.stem}.hog.png"), err


def test_a_checkpoint_of_a_missing_plugin_names_file_and_plugin(tmp_path, capsys, fresh_plugins):
    register_plugin(_NaNPlugin(), "nanplug")
    nanny = featinv.get_feature("nanny")
    decoder = build_decoder(nanny.spec, nanny.layout(32, 32), 32, "compact", 0.125)
    ckpt = save_decoder(decoder, tmp_path / "d.safetensors", decoder_metadata(nanny, decoder))
    unregister_plugin("nanplug")
    featinv.representation.plugins.reset()
    code, _, err = run(capsys, "invert", "-c", ckpt, "skimage:coffee", "-o", tmp_path)
    assert code == 1 and len(_errors(err)) == 1
    assert str(ckpt) in err and "'nanny'" in err and "plugin 'nanplug'" in err


@pytest.mark.skipif(hasattr(__import__("os"), "geteuid") and __import__("os").geteuid() == 0,
                    reason="root reads every file")
def test_unreadable_files_say_permission_denied(tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    ckpt = tmp_path / "d.safetensors"
    ckpt.write_bytes((ZOO_DIR / "hog.safetensors").read_bytes())
    photo.chmod(0)
    ckpt.chmod(0)
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "-o", tmp_path / "o")
    assert code == 1 and "Permission denied" in err
    code, _, err = run(capsys, "invert", "-c", ckpt, "skimage:coffee", "-o", tmp_path / "o")
    assert code == 1 and "Permission denied" in err and "PermissionError" not in err


def test_unreadable_files_are_reported_as_such_even_as_root(tmp_path, capsys, monkeypatch):
    import os

    photo = write_images(tmp_path / "in", 1)[0]
    ckpt = tmp_path / "d.safetensors"
    ckpt.write_bytes((ZOO_DIR / "hog.safetensors").read_bytes())
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) in (
        str(photo), str(ckpt)) else access(p, mode, **kw))
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "-o", tmp_path / "o")
    assert code == 1 and _errors(err)[0] == (f"Error: {photo}: cannot read file (Permission "
                                             "denied); fix its permissions.")
    with pytest.raises(featinv.CheckpointError) as info:  # (click checks -c paths itself)
        featinv.load_decoder(ckpt)
    assert str(info.value) == f"{ckpt}: cannot read file (Permission denied); fix its permissions."


# -- 10: names that try to forge lines ---------------------------------------------------------

def test_a_newline_in_a_file_name_cannot_forge_a_line(tmp_path, capsys):
    folder = tmp_path / "in"
    photo = write_images(folder, 1)[0]
    (folder / "x\nError: forged.png").write_bytes(photo.read_bytes())
    (folder / "bad\nError: forged too.jpg").write_text("not a picture")
    code, out, err = run(capsys, "invert", "-f", "hog", folder, "--size", 32, "-o", tmp_path / "o")
    assert code == 1
    lines = out.splitlines() + err.splitlines()
    assert not any(line.startswith("Error: forged") for line in lines)
    assert any("x\\nError: forged.hog.png" in line for line in out.splitlines())
    assert any("bad\\nError: forged too.jpg: not an image file" in line for line in _errors(err))
    code, out, err = run(capsys, "extract", "-f", "hog", folder, "-o", tmp_path / "f.npz")
    assert not any(line.startswith("Error: forged") for line in out.splitlines() + err.splitlines())
    assert json.loads(str(np.load(tmp_path / "f.npz")["meta"]))["images"]  # saved all the same
