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

def rescaled_channel(tensors):
    """Channel 0 of a convolution followed by batch norm, scaled by 1e6 with the norm's
    statistics: the same pictures, from weights beyond float16 (up to about 1e5)."""
    conv, norm = "body.local.0.body.2", "body.local.0.body.3"
    tensors[f"{conv}.weight"][0] *= 1e6
    tensors[f"{conv}.bias"][0] *= 1e6
    tensors[f"{norm}.running_mean"][0] *= 1e6
    tensors[f"{norm}.running_var"][0] *= 1e12


RESCALED = ["body.local.0.body.2.weight", "body.local.0.body.3.running_mean"]  # (beyond 65504)


def values(changes: dict[str, float]):
    def edit(tensors):
        for key, value in changes.items():
            tensors[key].view(-1)[0] = value
    return edit


@pytest.mark.parametrize("edit, kept", [
    (values({"body.down.0.1.body.0.running_var": 1e5}), ["body.down.0.1.body.0.running_var"]),
    (rescaled_channel, RESCALED),
    (values({"feature_std": 1e6}), ["feature_std"]),
])
def test_pack_keeps_float32_for_tensors_beyond_float16(tmp_path, capsys, images, edit, kept):
    source = fp32_copy(tmp_path / "run.safetensors", edit)
    packed = tmp_path / "packed.safetensors"
    code, _, err = run_cli(capsys, "pack", source, "-o", packed)
    assert code == 0, err
    meta = read_meta(packed)
    assert meta["packed"]["dtype"] == "float16"
    with safe_open(str(source), "pt") as f:
        beyond = sorted(k for k in f.keys() if f.get_tensor(k).is_floating_point()
                        and float(f.get_tensor(k).abs().max()) > 65504)
    assert meta["packed"]["float32_tensors"] == beyond and set(kept) <= set(beyond)
    with safe_open(str(packed), "pt") as f:
        for key in f.keys():
            dtype = f.get_tensor(key).dtype
            if key in beyond:
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


# -- round 9, finding 6: forged decoders within the load checks' bounds ------------------------

FAR = "lies far outside the image range [0, 1]"


def whole(key: str, value: float):
    def edit(tensors):
        tensors[key].fill_(value)
    return edit


@pytest.mark.parametrize("edit", [
    first("body.expand.2.0.weight", 1e5),            # one last-layer weight: 8% of the values
    whole("body.local.2.running_var", 0.0),           # no variance where the activations vary
    whole("body.merge.2.body.3.running_var", 1e-30),  # a denormal one
    whole("body.middle.body.3.running_mean", 9e5),
], ids=["last-weight-1e5", "var-0", "var-1e-30", "mean-9e5"])
def test_a_decoder_that_makes_saturated_noise_is_refused(tmp_path, capsys, images, edit):
    """Such decoders load (each value is within what training could make), but their pictures
    are clamped noise: invert and evaluate refuse in one line and write nothing, pack ships
    nothing."""
    bad = fp32_copy(tmp_path / "bad.safetensors", edit)
    for args in (["invert", "-c", bad, images, "-o", tmp_path / "out"],
                 ["evaluate", "-c", bad, "--data", images],
                 ["pack", bad, "-o", tmp_path / "packed.safetensors"],
                 ["pack", bad, "-o", tmp_path / "packed.safetensors", "--float32"]):
        code, out, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and FAR in line, (args[0], err)
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "packed.safetensors").exists()


def test_the_shipped_decoders_stay_in_range():
    """The bound holds for what ships, on photos-like noise and on flat black or white."""
    x = torch.cat([torch.rand(1, 3, 64, 64), torch.zeros(1, 3, 64, 64), torch.ones(1, 3, 64, 64)])
    for name in ("hog", "lbp", "sift"):
        inverter = Inverter.load(name)
        with torch.no_grad():
            raw = inverter.decoder(inverter.encode(x), size=(64, 64))
        assert float(raw.min()) > -1 and float(raw.max()) < 2, name


def test_pack_refuses_a_decoder_that_ignores_its_features(tmp_path, capsys):
    """Round 10: every weight zeroed gives one flat grey picture for any input; pack shipped it."""
    def zero(tensors):
        for name, tensor in tensors.items():
            if tensor.is_floating_point() and not name.startswith("feature_"):
                tensor.zero_()
    bad = fp32_copy(tmp_path / "zero.safetensors", zero)
    code, _, err = run_cli(capsys, "pack", bad, "-o", tmp_path / "p.safetensors", "--float32")
    [line] = error_lines(err)
    assert code == 1 and "do not depend on the features" in line
    assert not (tmp_path / "p.safetensors").exists()


PACK_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, 500_000))
from featinv.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("target", ["p.safetensors", "folder"])
def test_pack_on_a_full_disk_is_the_write_message(tmp_path, target):
    """Round 10: safetensors' 'I/O error: File too large' came out as 'SafetensorError: ...',
    and the folder form left an empty folder."""
    import subprocess
    import sys

    out = tmp_path / target
    done = subprocess.run([sys.executable, "-c", PACK_LIMITED, "pack", str(SHIPPED), "-o",
                           str(out), "--float32", "--no-size-limit"],
                          capture_output=True, text=True, timeout=300)
    [line] = error_lines(done.stderr)
    assert done.returncode == 1 and "Cannot write" in line and "File too large" in line, \
        done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
