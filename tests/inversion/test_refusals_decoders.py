"""A decoder that cannot make a picture is refused before any is written, and packing never
makes a decoder unloadable (issue 24, D20 and D21).

D20: a decoder weight of 1e38 made ``invert`` write an all-black PNG with exit code 0 (and
``evaluate`` exit 0): absurd weights and negative batch-norm variances are refused on load, and
a decoder's output is checked before anything is written. D21: ``pack`` converted to float16
without a range check (a variance of 1e5 or a weight above 65504 became inf): such tensors stay
float32, and the packed decoder is checked to give the run's pictures."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import featinv
from featinv.errors import CheckpointError, DecoderOutputError
from featinv.inversion import shipped
from featinv.inversion.load import ZOO_DIR, load_decoder
from featinv.inversion.pipeline import Inverter
from featinv.io.checkpoint import read_meta

from helpers import error_lines, run_cli, write_images

SHIPPED = ZOO_DIR / "hog.safetensors"
NON_FINITE = "the decoder produced non-finite values"


def fp32_copy(path: Path, edit=None) -> Path:
    """The shipped HOG decoder in float32 (so that values beyond float16 can be stored),
    edited by ``edit(tensors)``."""
    with safe_open(str(SHIPPED), "pt") as f:
        tensors = {k: f.get_tensor(k).float() if f.get_tensor(k).is_floating_point()
                   else f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    if edit:
        edit(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def first(key: str, value: float):
    def edit(tensors):
        tensors[key].view(-1)[0] = value
    return edit


def every_weight(value: float):
    """Within the bound each weight is checked against, yet the output overflows."""
    def edit(tensors):
        for name, tensor in tensors.items():
            if name.endswith(".weight"):
                tensor.fill_(value)
    return edit


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", 2, size=(48, 48))
    return tmp_path / "imgs"


@pytest.mark.parametrize("edit, words", [
    (first("body.up.1.weight", 1e38), "holds values up to 1e+38"),
    (first("body.down.0.0.0.weight", 1e38), "holds values up to 1e+38"),
    (first("body.up.2.bias", -1e20), "far beyond what training makes"),
    (first("body.middle.body.3.running_var", -1.0), "negative variances"),
    (every_weight(1e5), NON_FINITE),
])
def test_a_decoder_that_cannot_make_a_picture_writes_none(tmp_path, capsys, images, edit,
                                                         words):
    bad = fp32_copy(tmp_path / "bad.safetensors", edit)
    for args in (["invert", "-c", bad, images, "-o", tmp_path / "out"],
                 ["invert", "-c", bad, images / "img000.png", "--side-by-side", "-o",
                  tmp_path / "pair.png"],
                 ["evaluate", "-c", bad, "--data", images]):
        code, out, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and words in line, (args[0], err)
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "pair.png").exists()


def test_the_python_api_refuses_it_too(tmp_path, images):
    bad = fp32_copy(tmp_path / "bad.safetensors", every_weight(1e5))
    with pytest.raises(DecoderOutputError, match=NON_FINITE):
        featinv.invert([images / "img000.png"], checkpoint=bad)
    with pytest.raises(CheckpointError, match="far beyond"):
        load_decoder(fp32_copy(tmp_path / "w.safetensors", first("body.up.1.weight", 1e9)))


def test_output_is_checked_before_it_is_clamped():
    """NaN survives clamp(0, 1) and infinities become flat 0 or 1: the raw output is checked."""
    inverter = Inverter.load(SHIPPED)
    feats = inverter.encode(torch.rand(1, 3, 64, 64))
    for value in (float("nan"), float("inf"), -float("inf")):
        with torch.no_grad():
            inverter.decoder.body.up[2].bias[0] = value
        with pytest.raises(DecoderOutputError, match=NON_FINITE):
            inverter.decode(feats)


def test_sane_large_values_still_load(tmp_path):
    """Batch-norm statistics may be large (shipped ones reach 1696), weights up to 1e6 load."""
    def edit(tensors):
        tensors["body.middle.body.3.running_var"].view(-1)[0] = 1e30
        tensors["body.up.2.bias"].view(-1)[0] = 9e5
    load_decoder(fp32_copy(tmp_path / "ok.safetensors", edit))


# -- D21: pack --------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"body.down.0.1.body.0.running_var": 1e5},
    {"body.stem.0.weight": 7e4},
    {"body.down.0.1.body.0.running_var": 1e5, "body.stem.0.weight": -7e4},
    {"feature_std": 1e6},
])
def test_pack_keeps_float32_for_tensors_beyond_float16(tmp_path, capsys, images, changes):
    def edit(tensors):
        for key, value in changes.items():
            tensors[key].view(-1)[0] = value
    source = fp32_copy(tmp_path / "run.safetensors", edit)
    packed = tmp_path / "packed.safetensors"
    code, _, err = run_cli(capsys, "pack", source, "-o", packed)
    assert code == 0, err
    meta = read_meta(packed)
    assert meta["packed"]["dtype"] == "float16"
    assert meta["packed"]["float32_tensors"] == sorted(changes)
    with safe_open(str(packed), "pt") as f:
        for key in f.keys():
            dtype = f.get_tensor(key).dtype
            if key in changes:
                assert dtype == torch.float32
            elif f.get_tensor(key).is_floating_point():
                assert dtype == torch.float16
    x = torch.rand(1, 3, 64, 64)
    a, b = Inverter.load(source).reconstruct(x), Inverter.load(packed).reconstruct(x)
    assert float((a - b).abs().max()) <= shipped.PACK_TOLERANCE
    code, _, err = run_cli(capsys, "invert", "-c", packed, images, "-o", tmp_path / "out")
    assert code == 0, err


def test_to_half_converts_what_fits():
    tensors = {"a": torch.tensor([65504.0, -1.0]), "b": torch.tensor([65520.0]),
               "c": torch.tensor([3, 4]), "d": torch.tensor([-1e5, 0.5])}
    out, kept = shipped.to_half(tensors)
    assert kept == ["b", "d"]
    assert out["a"].dtype == torch.float16 and out["c"].dtype == torch.int64
    assert out["b"].dtype == out["d"].dtype == torch.float32
    assert all(bool(torch.isfinite(v.float()).all()) for v in out.values())


def test_pack_refuses_float16_that_changes_the_pictures(tmp_path, capsys, monkeypatch):
    """Verified before writing: a packed decoder whose pictures differ from the run's beyond
    the tolerance is not written; --float32 packs it as it is."""
    def jitter(tensors):  # weights float16 rounds (the shipped ones are float16 already)
        generator = torch.Generator().manual_seed(0)
        for name, tensor in tensors.items():
            if name.endswith(".weight"):
                tensor.mul_(1 + 1e-3 * torch.randn(tensor.shape, generator=generator))
    source = fp32_copy(tmp_path / "run.safetensors", jitter)
    monkeypatch.setattr(shipped, "PACK_TOLERANCE", 1e-9)
    code, _, err = run_cli(capsys, "pack", source, "-o", tmp_path / "p.safetensors")
    [line] = error_lines(err)
    assert code == 1 and "--float32" in line and "change the decoder's pictures" in line
    assert not (tmp_path / "p.safetensors").exists()
    code, _, err = run_cli(capsys, "pack", source, "-o", tmp_path / "p.safetensors", "--float32",
                           "--no-size-limit")
    assert code == 0, err
