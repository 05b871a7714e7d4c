"""Checkpoints that were truncated, altered or written by something else are refused clearly."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import featinv
from featinv import CheckpointError
from featinv.io.checkpoint import META_KEY
from featinv.cli.main import main
from featinv.decoders.networks import build_decoder
from featinv.inversion.load import decoder_metadata, save_decoder
from featinv.inversion.zoo import _header_meta
from featinv.limits import MAX_SAFETENSORS_HEADER


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small untrained HOG decoder checkpoint (weights do not matter here)."""
    hog = featinv.get_feature("hog")
    decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "compact", 0.125)
    path = tmp_path_factory.mktemp("ckpt") / "decoder.safetensors"
    save_decoder(decoder, path, decoder_metadata(hog, decoder))
    return path


def rewrite(good, tmp_path, edit_meta=None, edit_tensors=None):
    with safe_open(str(good), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    tensors = load_file(str(good))
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    out = tmp_path / "edited.safetensors"
    save_file(tensors, str(out), metadata={META_KEY: json.dumps(meta)})
    return out


def test_the_untouched_checkpoint_loads(good):
    assert featinv.load_decoder(good).meta["feature"]["name"] == "hog"


def _drop(key):
    return lambda meta: meta.pop(key)


CASES = {
    "missing image size": (dict(edit_meta=_drop("image_size")), "incomplete featinv metadata"),
    "missing layout": (dict(edit_meta=_drop("layout")), "incomplete featinv metadata"),
    "unknown preset": (dict(edit_meta=lambda m: m["decoder"].update(preset="huge")),
                       "Unknown decoder preset"),
    "decoder config garbage": (dict(edit_meta=lambda m: m.update(decoder={"width": "wide"})),
                               "decoder description is invalid"),
    "wider decoder claimed": (dict(edit_meta=lambda m: m["decoder"].update(width=0.25)),
                              "weights do not fit"),
    "weight of the wrong shape": (
        dict(edit_tensors=lambda t: t.update({k: torch.zeros(3) for k in list(t)[:1]})),
        "weights do not fit"),
    "a weight removed": (dict(edit_tensors=lambda t: t.pop(sorted(t)[0])), "weights do not fit"),
    "newer format": (dict(edit_meta=lambda m: m.update(format_version=99)), "newer featinv"),
    "training state, not a decoder": (dict(edit_meta=lambda m: m.update(
        format="featinv-train-state")), "expected a featinv-decoder file"),
    "another representation's layout": (dict(edit_meta=lambda m: m["feature"].update(
        params={"cell_size": 4})), "does not match this version"),
    "unknown representation": (dict(edit_meta=lambda m: m["feature"].update(name="nosuch")),
                               "nosuch"),
    "format version not a number": (dict(edit_meta=lambda m: m.update(format_version="1.x")),
                                    "invalid format_version"),
    "a decoder 32x wider claimed": (dict(edit_meta=lambda m: m["decoder"].update(width=8.0)),
                                    "weights do not fit"),
    # round 12 (D6): a whole number too large for a float was an internal OverflowError
    "a width of 10**400": (dict(edit_meta=lambda m: m["decoder"].update(width=10**400)),
                           "decoder description is invalid"),
    # round 9: a field of the wrong type is named, not told in Python's words
    "image size as text": (dict(edit_meta=lambda m: m.update(image_size="32")),
                           "'image_size' is missing or not what featinv writes"),
    "image size as a flag": (dict(edit_meta=lambda m: m.update(image_size=True)),
                             "'image_size' is missing or not what featinv writes"),
    "feature as a list": (dict(edit_meta=lambda m: m.update(feature=["hog"])),
                          "'feature' is missing or not what featinv writes"),
    "decoder null": (dict(edit_meta=lambda m: m.update(decoder=None)),
                     "'decoder' is missing or not what featinv writes"),
    "feature name a number": (dict(edit_meta=lambda m: m["feature"].update(name=123)),
                              "'feature.name' is missing or not what featinv writes"),
    "absurd image size": (dict(edit_meta=lambda m: m.update(image_size=10**9)),
                          "incomplete featinv metadata"),
    # round 11, E8: tensors of a type featinv never writes (loaded by casting: flat pictures)
    "a weight as uint8": (dict(edit_tensors=lambda t: _cast(t, _last_weight(t), torch.uint8)),
                          "is stored as uint8, a type featinv never writes for it"),
    "feature std as int64": (dict(edit_tensors=lambda t: _cast(t, "feature_std", torch.int64)),
                             "a type featinv never writes for it"),
    "feature std as bool": (dict(edit_tensors=lambda t: _cast(t, "feature_std", torch.bool)),
                            "a type featinv never writes for it"),
    "weights as float8": (dict(edit_tensors=lambda t: _cast(t, _last_weight(t),
                                                            torch.float8_e4m3fn)),
                          "is stored as float8_e4m3fn, a type featinv never writes for it"),
    "weights as bfloat16": (dict(edit_tensors=lambda t: _cast(t, _last_weight(t),
                                                              torch.bfloat16)),
                            "a type featinv never writes for it"),
    # round 12 (D10): entries this version does not know, bounded; huge numbers in words
    "an unknown setting of 3 MB": (dict(edit_meta=lambda m: m.update(training={
        "zzz": "A" * 3_000_000})), "characters of JSON in all, and these take 300"),
    "2000 unknown entries": (dict(edit_meta=lambda m: m.update(
        {f"note{i}": "remark" for i in range(2000)})), "characters of JSON in all, and these"),
    "an unknown decoder entry of 20 kB": (dict(edit_meta=lambda m: m["decoder"].update(
        extra=list(range(5000)))), "may take 16384 characters of JSON in all"),
    "a metrics record of 3000 entries": (dict(edit_meta=lambda m: m.update(metrics={
        f"val_m{i}": 0.5 for i in range(3000)})), "a record of at most 16384 characters of JSON"),
    "an unknown whole number of 401 digits": (dict(edit_meta=lambda m: m.update(training={
        "zzz": 10**400})), "not a whole number of at most 20 digits"),
    "a learning rate of 10**400": (dict(edit_meta=lambda m: m.update(training={"lr": 10**400})),
                                   "'training.lr' is a whole number of 401 digits, not"),
    # round 14 (A2), round 15 (D2): featinv's training record tells training that sets the
    # statistics (weights trained long do not: one's own loop need not set them); a validation
    # error below 0.5 tells pictures that depend on the features (see
    # inversion/test_refusals_training_evidence.py)
    "0/1 statistics beside featinv's training record": (
        dict(edit_tensors=lambda t: _scale_weights(t, 4.0),
             edit_meta=lambda m: m.update(training={"feature": "hog"})),
        "but its metadata says it was trained, which sets them from the training images"),
    "a validation error no one picture reaches": (
        dict(edit_tensors=lambda t: _scale_weights(t, 1.2),
             edit_meta=lambda m: m.update(metrics={"val_normalized_error": 0.3})),
        "below the 0.5 that one picture for every image cannot beat"),
}
# round 9: the fields a decoder is not built from, which pack copies into what it ships (one
# row of docs/troubleshooting.md explains them all: "featinv never writes that")
INFO_CASES = {
    "input a number": (dict(edit_meta=lambda m: m["feature"].update(input=123)),
                       "'feature.input' is 123, not 'gray'"),
    "input of another representation": (dict(edit_meta=lambda m: m["feature"].update(
        input="rgb")), "'feature.input' is 'rgb'"),
    "plugin no name": (dict(edit_meta=lambda m: m["feature"].update(plugin="os.system('x')")),
                       "'feature.plugin'"),
    "plugin a list": (dict(edit_meta=lambda m: m["feature"].update(plugin=["a"])),
                      "'feature.plugin'"),
    "unknown family": (dict(edit_meta=lambda m: m["decoder"].update(family="transformer")),
                       "'decoder.family' is 'transformer', not 'two_stream'"),
    "negative progress": (dict(edit_meta=lambda m: m.update(progress={"step": -5})),
                          "'progress.step' is -5, not a whole number"),
    "progress as text": (dict(edit_meta=lambda m: m.update(progress="half")),
                         "'progress' is 'half', not an object"),
    "NaN training loss": (dict(edit_meta=lambda m: m.update(metrics={"train_loss": float("nan")})),
                          "'metrics': train_loss is nan, not a finite number"),
    "negative validation step": (dict(edit_meta=lambda m: m.update(metrics={"step": -1})),
                                 "'metrics': step is -1"),
    "NaN in packed history": (dict(edit_meta=lambda m: m.update(packed={"history": [
        {"epoch": 0, "step": 1, "val_normalized_error": float("nan")}]})),
        "'packed.history' record 1: val_normalized_error is nan"),
    "packed recipe a number": (dict(edit_meta=lambda m: m.update(packed={"recipe": 5})),
                               "'packed.recipe' is 5, not text"),
    "infinity elsewhere": (dict(edit_meta=lambda m: m["decoder"].update(
        note=float("inf"))), "'decoder.note' is inf, not a finite number"),
    "training as text": (dict(edit_meta=lambda m: m.update(training="fast")),
                         "'training' is 'fast', not an object"),
    # round 10
    "version a number": (dict(edit_meta=lambda m: m.update(featinv_version=7)),
                         "'featinv_version' is 7, not a version number"),
    "version with control characters": (dict(edit_meta=lambda m: m.update(
        featinv_version="0.1\x1b[2J")), "'featinv_version'"),
    "decoder layout of another": (dict(edit_meta=lambda m: m["decoder"].update(
        layout={"kind": "grid", "channels": 31, "height": 9, "width": 9, "sparse": False})),
        "'decoder.layout'"),
    "encoder claimed without weights": (dict(edit_meta=lambda m: m.update(
        encoder={"finetuned": True})), "holds no encoder weights"),
    "encoder as text": (dict(edit_meta=lambda m: m.update(encoder="yes")), "'encoder' is 'yes'"),
    "total below the step": (dict(edit_meta=lambda m: m.update(progress={
        "step": 9, "total_steps": 3})), "'progress.total_steps' is 3, not at least"),
    "checkpoint id a number": (dict(edit_meta=lambda m: m.update(progress={
        "step": 1, "checkpoint": 5})), "'progress.checkpoint' is 5"),
    "negative error": (dict(edit_meta=lambda m: m.update(metrics={
        "val_normalized_error": -5.0})), "val_normalized_error is -5.0, below 0"),
    "ssim beyond 1": (dict(edit_meta=lambda m: m.update(metrics={"val_ssim": 3.0})),
                      "val_ssim is 3.0, not from -1 to 1"),
    "trained on another feature": (dict(edit_meta=lambda m: m.update(training={
        "feature": "sift"})), "'training.feature' is 'sift', not 'hog'"),
    "learning rate as text": (dict(edit_meta=lambda m: m.update(training={"lr": "fast"})),
                              "'training.lr' is 'fast', not a number from 0"),
    "nested 100 levels": (dict(edit_meta=lambda m: m.update(training={"params": _nested(100)})),
                          "nested too deeply"),
    # round 11, E9: the fields left unchecked, and bounds on numbers
    "validation images 1e300": (dict(edit_meta=lambda m: m.update(metrics={
        "val_n_images": 10**300})), "val_n_images is a whole number of 301 digits, not a whole"),
    "psnr -1e300": (dict(edit_meta=lambda m: m.update(metrics={"val_psnr": -1e300})),
                    "val_psnr is -1e\\+300, beyond what training records"),
    "psnr below 0": (dict(edit_meta=lambda m: m.update(metrics={"val_psnr": -3.0})),
                     "val_psnr is -3 dB, not from 0"),
    "a loss of 1e300": (dict(edit_meta=lambda m: m.update(metrics={"train_loss": 1e300})),
                        "train_loss is 1e\\+300, beyond what training records"),
    "training image size 1e40": (dict(edit_meta=lambda m: m.update(training={
        "image_size": 10**40})), "'training.image_size' is a whole number of 41 digits"),
    "training width 1e300": (dict(edit_meta=lambda m: m.update(training={"width": 1e300})),
                             "'training.width' is 1e\\+300, not a number above 0 up to 8"),
    "fine-tuned encoder claimed by the recipe": (dict(edit_meta=lambda m: m.update(training={
        "finetune_encoder": True})), "'training.finetune_encoder'.*holds no encoder weights"),
    "recipe params as text": (dict(edit_meta=lambda m: m.update(training={"params": "x"})),
                              "'training.params' is 'x', not an object"),
    "crop scale reversed": (dict(edit_meta=lambda m: m.update(training={
        "crop_scale": [5, -1]})), "'training.crop_scale' is \\[5, -1\\]"),
    "loss as an object": (dict(edit_meta=lambda m: m.update(training={"loss": {"a": 1}})),
                          "'training.loss' is {'a': 1}, not text"),
    "schedule unknown": (dict(edit_meta=lambda m: m.update(training={"schedule": "wild"})),
                         "'training.schedule' is 'wild', not one of linear"),
    "finetune as text": (dict(edit_meta=lambda m: m.update(training={"finetune_encoder": "no"})),
                         "'training.finetune_encoder' is 'no', not true or false"),
    "recipe of another preset": (dict(edit_meta=lambda m: m.update(training={
        "preset": "paper"})), "'training.preset' is 'paper', not 'compact'"),
    "image size beside the decoder's": (dict(edit_meta=lambda m: m["decoder"].update(
        image_size=64)), "'image_size' is 32, not 64"),
}


def _scale_weights(tensors, factor):
    """Every convolution weight times ``factor``: no longer as initialisation drew them."""
    for key, value in tensors.items():
        if key.endswith("weight") and value.dim() > 1:
            value.mul_(factor)


def _cast(tensors, key, dtype):
    tensors[key] = tensors[key].to(dtype)


def _last_weight(tensors):
    return [k for k in sorted(tensors) if k.endswith("weight") and tensors[k].dim() > 1][-1]


def _nested(levels: int):
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


class TestTensorOfATypeFeatinvNeverWrites:
    """Round 11, E8, beyond the CASES above: the types allowed follow the tensor's kind."""

    def test_a_batch_counter_must_be_int64_and_packed_floats_load(self, tmp_path):
        hog = featinv.get_feature("hog")
        decoder = build_decoder(hog.spec, hog.layout(32, 32), 32, "residual", 0.125)
        path = save_decoder(decoder, tmp_path / "bn.safetensors", decoder_metadata(hog, decoder))
        counter = next(k for k in decoder.state_dict() if k.endswith("num_batches_tracked"))
        half = rewrite(path, tmp_path, edit_tensors=lambda t: t.update(
            {k: v.half() for k, v in t.items() if v.is_floating_point()}))
        assert featinv.load_decoder(half).meta["feature"]["name"] == "hog"  # as pack writes
        for dtype in (torch.float32, torch.int32, torch.bool):
            bad = rewrite(path, tmp_path, edit_tensors=lambda t: _cast(t, counter, dtype))
            with pytest.raises(CheckpointError, match=f"{counter} is stored as "
                               f"{str(dtype)[6:]}, a type featinv never writes for it "
                               r"\(only int64\)"):
                featinv.load_decoder(bad)

    def test_an_encoders_tensors_are_float_or_int64(self, good, tmp_path):
        path = rewrite(good, tmp_path, edit_meta=lambda m: m.update(
            training={"finetune_encoder": True}, encoder={"finetuned": True}),
            edit_tensors=lambda t: t.update({"encoder.w": torch.zeros(2, dtype=torch.uint8)}))
        with pytest.raises(CheckpointError, match="encoder.w is stored as uint8"):
            featinv.load_decoder(path)


@pytest.mark.parametrize("case", sorted(CASES | INFO_CASES))
def test_altered_checkpoint_is_refused(good, tmp_path, case, capsys):
    edits, message = (CASES | INFO_CASES)[case]
    path = rewrite(good, tmp_path, **edits)
    with pytest.raises(featinv.FeatinvError, match=message):
        featinv.load_decoder(path)
    # and on the command line: one line, no traceback
    with pytest.raises(SystemExit) as info:
        main(["invert", "-c", str(path), "skimage:astronaut", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("Error:")]) == 1


def test_pack_copies_strict_json(good, tmp_path, capsys):
    """An infinite PSNR (identical images, written by earlier versions) is read as null: the
    packed header is strict JSON, and the decoder's own metadata passes the checks."""
    path = rewrite(good, tmp_path, edit_meta=lambda m: m.update(
        metrics={"epoch": 1, "step": 2, "val_psnr": float("inf"), "val_normalized_error": 0.0},
        progress={"step": 2, "total_steps": 4, "world_size": 1}))
    assert featinv.load_decoder(path).meta["metrics"]["val_psnr"] is None
    with pytest.raises(SystemExit) as info:
        main(["pack", str(path), "-o", str(tmp_path / "packed.safetensors"), "--float32"])
    assert info.value.code == 0, capsys.readouterr().err
    with safe_open(str(tmp_path / "packed.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY], parse_constant=lambda c: pytest.fail(c))
    assert meta["metrics"]["val_psnr"] is None and "progress" not in meta


@pytest.mark.parametrize("cut", [0.05, 0.5, 0.99])
def test_truncated_checkpoint_is_refused(good, tmp_path, cut):
    data = good.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError):
        featinv.load_decoder(path)


def test_corrupt_header_and_metadata_are_refused(good, tmp_path):
    data = bytearray(good.read_bytes())
    data[8:16] = b"\xff" * 8  # inside the JSON header
    path = tmp_path / "header.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        featinv.load_decoder(path)
    bad_json = tmp_path / "meta.safetensors"
    save_file(load_file(str(good)), str(bad_json), metadata={META_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="corrupt featinv metadata"):
        featinv.load_decoder(bad_json)


def test_pickles_are_never_unpickled(good, tmp_path, monkeypatch):
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, torch_file)  # a zip archive with a pickle inside
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    for path in (evil, torch_file):
        with pytest.raises(CheckpointError, match="never unpickles"):
            featinv.load_decoder(path)


def test_metadata_nested_too_deeply_is_refused(good, tmp_path):
    path = tmp_path / "deep.safetensors"
    with safe_open(str(good), "pt") as f:
        text = f.metadata()[META_KEY]
    deep = text[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"
    save_file(load_file(str(good)), str(path), metadata={META_KEY: deep})
    with pytest.raises(CheckpointError, match="nested too deeply"):
        featinv.load_decoder(path)


def header_claiming(tmp_path, size: int, name: str = "claim.safetensors"):
    """A file whose first 8 bytes declare a safetensors header of ``size`` bytes and which is
    that long, but sparse: a few bytes on disk, the rest a hole."""
    path = tmp_path / name
    with open(path, "wb") as f:
        f.write(size.to_bytes(8, "little") + b'{"__metadata__":{"featinv":"')
        f.truncate(8 + size + 16)
    return path


@pytest.mark.parametrize("claim", [MAX_SAFETENSORS_HEADER + 1, 90_000_000])
def test_a_header_over_the_cap_is_refused_before_it_is_parsed(tmp_path, capsys, claim):
    path = header_claiming(tmp_path, claim)
    with pytest.raises(CheckpointError, match="its header declares .* MB .* over the 8 MiB"):
        featinv.load_decoder(path)
    with pytest.raises(SystemExit) as info:
        main(["invert", "-c", str(path), "skimage:astronaut", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if "header declares" in line]
    weights = header_claiming(tmp_path, claim, "weights.safetensors")  # a CNN's weights
    with pytest.raises(featinv.FeatinvError, match="header declares"):
        featinv.get_feature("squeezenet.fire2", weights=str(weights))
    with pytest.raises(ValueError, match="header declares"):  # a decoder in the Hub's cache
        _header_meta(path)


def test_a_real_header_over_the_cap_is_refused_and_one_under_it_loads(good, tmp_path):
    """9 MB of metadata (safetensors itself parses up to 100 MB) is refused; 1 MB loads (a
    packed history of 20000 epochs: an unknown entry of 1 MB is refused, see
    test_metadata_sizes.py)."""
    big = rewrite(good, tmp_path, edit_meta=lambda m: m.update(note="x" * 9_000_000))
    with pytest.raises(CheckpointError, match="header declares 9 MB"):
        featinv.load_decoder(big)
    history = [{"epoch": i, "step": i, "val_psnr": 20.5, "train_loss": 0.01}
               for i in range(1, 20_001)]
    fine = rewrite(good, tmp_path, edit_meta=lambda m: m.update(packed={"history": history}))
    assert len(fine.read_bytes()) > 1_000_000
    assert featinv.load_decoder(fine).meta["feature"]["name"] == "hog"


@pytest.mark.parametrize("claim", [90_000_000, 2**63])
def test_a_header_longer_than_its_file_is_one_line(tmp_path, claim):
    path = tmp_path / "short.safetensors"
    path.write_bytes(claim.to_bytes(8, "little") + b'{"__metadata__":{}}')
    with pytest.raises(CheckpointError, match="not a safetensors file|looks like a pickled"):
        featinv.load_decoder(path)


def test_an_archive_that_is_no_pickle_is_named_for_what_it_is(tmp_path):
    """Round 13 N10: any .npz passed as a decoder was 'a pickled PyTorch file'."""
    import zipfile

    import numpy as np

    npz = tmp_path / "features.npz"
    np.savez_compressed(npz, a=np.zeros(3))
    other = tmp_path / "bundle.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError, match=r"a NumPy archive \(\.npz\), not a featinv decoder"):
        featinv.load_decoder(npz)
    with pytest.raises(CheckpointError, match="a zip archive, not a safetensors file"):
        featinv.load_decoder(other)
