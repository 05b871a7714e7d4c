"""Untrusted archives are checked by their headers before anything is read (issue 24, defect 3).

A small ``.npz`` can hold gigabytes of compressed zeros, and an ``.npy`` header can claim any
shape: ``--weights`` (``-p weights=``), ``--perceptual-weights``, ``--comparator-weights`` and
``load_features`` read the names, shapes, dtypes and declared sizes first, refuse what does not
fit (or exceeds the memory budget), and only then read arrays. Peak memory is measured in a child
process.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import featinv
from featinv.errors import FeatinvError
from featinv.io.archives import npz_entries, read_npz
from featinv.representation.extract import load_features

from helpers import run_measured, write_images

MB = 2**20
BOMB_BYTES = 512 * MB


def npy_header(shape, dtype="<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def write_bomb(path: Path, name: str = "features.0.weight", nbytes: int = BOMB_BYTES,
               extra: dict | None = None) -> Path:
    """An .npz whose member ``name`` is ``nbytes`` of float32 zeros, compressed (a few
    hundred KB on disk), beside the small arrays of ``extra``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name + ".npy", "w", force_zip64=True) as f:
            f.write(npy_header((nbytes // 4,)))
            zeros = bytes(16 * MB)
            for _ in range(nbytes // len(zeros)):
                f.write(zeros)
        for key, value in (extra or {}).items():
            with zf.open(key + ".npy", "w") as f:
                np.lib.format.write_array(f, value)
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    write_bomb(root / "bomb.npz")
    assert (root / "bomb.npz").stat().st_size < 4 * MB
    return root


def forged(path: Path, claimed_shape, data: bytes = b"\0" * 64) -> Path:
    """A member whose header claims ``claimed_shape`` but holds only ``data``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("features.0.weight.npy", npy_header(claimed_shape) + data)
    return path


# -- the archive reader -------------------------------------------------------------------------

@pytest.mark.slow
def test_headers_are_read_without_the_data(bombs):
    entries = npz_entries(bombs / "bomb.npz")
    assert entries["features.0.weight"].nbytes == BOMB_BYTES  # known, nothing decompressed


@pytest.mark.parametrize("shape", [(10**12,), (2**31, 2**31), (0,), (3,)])
def test_a_header_that_lies_about_its_data_is_refused(tmp_path, shape):
    with pytest.raises(FeatinvError, match="declares .* bytes, but its header describes"):
        read_npz(forged(tmp_path / "f.npz", shape))


def test_objects_names_and_compression_np_savez_does_not_write(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FeatinvError, match="Python objects; featinv never unpickles"):
        read_npz(tmp_path / "o.npz")
    with zipfile.ZipFile(tmp_path / "n.npz", "w") as zf:
        zf.writestr("payload.bin", b"x" * 10)
    with pytest.raises(FeatinvError, match="not one array"):
        read_npz(tmp_path / "n.npz")
    with zipfile.ZipFile(tmp_path / "b.npz", "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x.npy", npy_header((2,)) + b"\0" * 8)
    with pytest.raises(FeatinvError, match="compression"):
        read_npz(tmp_path / "b.npz")
    (tmp_path / "t.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(FeatinvError, match="not a readable .npz"):
        read_npz(tmp_path / "t.npz")


@pytest.mark.slow
def test_the_memory_budget_bounds_any_archive(bombs, monkeypatch):
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.1")  # 100 MB
    with pytest.raises(FeatinvError, match="over featinv's memory budget"):
        read_npz(bombs / "bomb.npz")
    with pytest.raises(FeatinvError, match="not a readable featinv features file"):
        load_features(bombs / "bomb.npz")


def test_a_valid_archive_still_reads(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.asfortranarray(
        np.ones((2, 5))), "c": np.array("text")}
    np.savez_compressed(tmp_path / "ok.npz", **arrays)
    out = read_npz(tmp_path / "ok.npz")
    assert out.keys() == arrays.keys()
    assert all(np.array_equal(out[k], arrays[k]) for k in arrays)


# -- the options that read weights ---------------------------------------------------------------

def test_weights_of_the_wrong_shape_are_refused_before_reading(bombs, tmp_path):
    """Names right, shape wrong: refused from the header (npz and safetensors)."""
    with pytest.raises(FeatinvError, match="do not fit SqueezeNet 1.0"):
        featinv.get_feature("squeezenet.fire2", weights=str(bombs / "bomb.npz"))
    save_file({"features.0.weight": torch.zeros(7, 3)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(FeatinvError, match="do not fit"):
        featinv.get_feature("squeezenet.fire2", weights=str(tmp_path / "w.safetensors"))


@pytest.mark.parametrize("special", ["fifo", "dev_zero", "folder"])
def test_weights_that_are_no_regular_file_are_refused(tmp_path, special):
    import os

    path = tmp_path / "w.npz"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(FeatinvError, match="not a regular file"):
        featinv.get_feature("squeezenet.fire2", weights=str(path))


@pytest.mark.slow
def test_bombs_in_every_weights_option_stay_small(bombs, tmp_path):
    """Each option that reads a weights file, with the 512 MB bomb: refused in one line, and the
    process grows by less than 100 MB (np.load would decompress all of it)."""
    write_images(tmp_path / "data", 4, size=(40, 40))
    write_images(tmp_path / "rec", 4, size=(40, 40), seed=1)
    bomb = "BOMB"
    write_bomb(tmp_path / "small.npz", nbytes=16 * MB)  # the same refusal, 32 times smaller
    cases = [
        ["extract", "-f", "squeezenet.fire2", "-p", f"weights={bomb}", "skimage:coffee",
         "-o", str(tmp_path / "f.npz")],
        ["extract", "-f", "alexnet.conv1", "--weights", bomb, "skimage:coffee",
         "-o", str(tmp_path / "g.npz")],
        ["compare", str(tmp_path / "data"), str(tmp_path / "rec"), "--perceptual-weights", bomb,
         "--image-size", "32"],
        ["evaluate", "-f", "hog", "--data", str(tmp_path / "data"), "--perceptual-weights", bomb,
         "--image-size", "32"],
        ["train", "-f", "hog", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
         "--loss", "pixel,feature", "--comparator", "squeezenet.fire2", "--comparator-weights",
         bomb, "--image-size", "32", "--epochs", "1", "--workers", "0", "--device", "cpu"],
    ]
    small, bomb = str(tmp_path / "small.npz"), str(bombs / "bomb.npz")
    measured = run_measured(
        [([a.replace("BOMB", small) for a in args], [a.replace("BOMB", bomb) for a in args])
         for args in cases], timeout=600,
        preamble="import featinv.features.squeezenet, featinv.analysis.perceptual\n"
                 "import torchvision.models\n")  # imports counted before measuring
    for args, (code, err, grown) in zip(cases, measured):
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert code == 1 and len(errors) == 1 and "Traceback" not in err, (args[0], err)
        assert "do not fit" in errors[0] or "budget" in errors[0], (args[0], errors)
        assert grown < 100 * 1024, f"{args[0]} grew by {grown // 1024} MB"
    assert not (tmp_path / "run" / "decoder.safetensors").exists()


# -- checkpoints padded with tensors their decoder does not have (attack round 3, defect 12) ----

GB = 2**30
SHIPPED_HOG = Path(featinv.__file__).parent / "zoo" / "hog.safetensors"


def padded(src: Path, out: Path, name: str = "zzz", nbytes: int = 4 * GB) -> Path:
    """``src`` (a .safetensors file) with one more float32 tensor ``name`` of ``nbytes``, as a
    sparse file: a few MB on disk, ``nbytes`` more to map or read."""
    import json
    import struct

    raw = src.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    header, data = json.loads(raw[8:8 + length]), raw[8 + length:]
    header[name] = {"dtype": "F32", "shape": [nbytes // 4],
                    "data_offsets": [len(data), len(data) + nbytes]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)
        f.truncate(8 + len(text) + len(data) + nbytes)
    return out


def test_a_padded_decoder_is_refused_from_its_header_under_an_address_space_limit(tmp_path):
    """safetensors maps the whole file before its names can be checked: with ``ulimit -v`` that
    failed as 'out of memory ... use a smaller --size', advice for images. The header names the
    tensor the decoder does not have, in one line, before anything is mapped."""
    import resource
    import subprocess
    import sys

    bad = padded(SHIPPED_HOG, tmp_path / "pad.safetensors")
    assert bad.stat().st_blocks * 512 < 64 * MB  # sparse: nothing written to disk
    write_images(tmp_path / "img", 1, size=(40, 40))
    image = next((tmp_path / "img").iterdir())

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 10**9, 6 * 10**9))

    for args in (["invert", "-c", bad, "-o", tmp_path / "o.png", image],
                 ["pack", bad, "-o", tmp_path / "p.safetensors"]):
        done = subprocess.run([sys.executable, "-m", "featinv.cli.main", *map(str, args)],
                              capture_output=True, text=True, timeout=120, preexec_fn=limit)
        lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, \
            done.stderr
        assert str(bad) in lines[0] and "unexpected zzz" in lines[0], lines
        assert "out of memory" not in lines[0]
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "p.safetensors").exists()


def test_tensors_a_decoder_does_not_have_are_refused_before_reading(tmp_path):
    from featinv.errors import CheckpointError
    from featinv.inversion.load import read_decoder

    # an encoder's tensor in a decoder trained without --finetune-encoder
    with pytest.raises(CheckpointError, match="encoder.zzz: an encoder's, but the decoder was "
                                              "trained without --finetune-encoder"):
        read_decoder(padded(SHIPPED_HOG, tmp_path / "e.safetensors", "encoder.zzz"))
    # a small extra tensor too: the names are checked, not only the size
    with pytest.raises(CheckpointError, match="unexpected x;"):
        read_decoder(padded(SHIPPED_HOG, tmp_path / "x.safetensors", "x", 8))


def test_every_checkpoint_is_bounded_by_the_memory_budget(tmp_path, monkeypatch):
    from featinv.errors import CheckpointError
    from featinv.io import checkpoint

    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "0.001")  # 1 MB; the HOG decoder takes 7 MB
    with pytest.raises(CheckpointError, match="over featinv's memory budget"):
        checkpoint.load(SHIPPED_HOG)


def test_a_training_state_with_tensors_its_run_has_not_is_refused(tmp_path):
    from featinv.errors import CheckpointError
    from featinv.io import checkpoint

    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    good = checkpoint.save_train_state(tmp_path / "s.safetensors", {"decoder": net},
                                       {"opt.": opt}, {"step": 1, "config": {}})
    checkpoint.load_train_state(good, {"decoder": net}, {"opt.": opt})  # loads as it is
    for name, match in [("zzz", "zzz of shape"), ("decoder.zzz", "decoder.zzz"),
                        ("opt.7.exp_avg", "opt.7.exp_avg"), ("opt.1.zzz", "opt.1.zzz")]:
        bad = padded(good, tmp_path / f"{name}.safetensors", name, 4 * GB)
        with pytest.raises(CheckpointError, match=f"holds a tensor this run does not have "
                                                  f"\\({match}"):
            checkpoint.load_train_state(bad, {"decoder": net}, {"opt.": opt})
    # a part this run does not resume (an average, without --ema) is left alone
    checkpoint.load_train_state(padded(good, tmp_path / "ema.safetensors", "ema.weight", 24),
                                {"decoder": net}, {"opt.": opt})


def test_a_safetensors_header_is_parsed_without_mapping_the_file(tmp_path):
    from featinv.errors import CheckpointError
    from featinv.io import checkpoint
    from featinv.io.archives import safetensors_entries

    entries = safetensors_entries(padded(SHIPPED_HOG, tmp_path / "p.safetensors"))
    assert entries["zzz"].nbytes == 4 * GB
    raw = SHIPPED_HOG.read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-100])
    with pytest.raises(CheckpointError, match="weights are unreadable .* may be truncated"):
        checkpoint.read_meta(tmp_path / "t.safetensors")
    (tmp_path / "g.safetensors").write_bytes(raw[:8] + b"[" + raw[9:])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        checkpoint.read_meta(tmp_path / "g.safetensors")


def _forged_directory(path: Path, members: int, decoy: bool) -> Path:
    """A zip whose directory holds ``members`` entries; with ``decoy``, the end record's offset
    field holds the bytes of an end record's signature, which a search from the end finds first
    (zipfile still reads the real record: round 16, N1)."""
    import struct
    name = b"a.npy"
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name),
                        0, 0, 0, 0, 0, 0) + name
    local = b"PK\x03\x04\x14\x00" + b"\0" * 20 + struct.pack("<HH", len(name), 0) + name
    directory = entry * members
    offset = int.from_bytes(b"PK\x05\x06", "little") if decoy else len(local)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, members & 0xFFFF, members & 0xFFFF,
                      len(directory), offset, 0)
    path.write_bytes(local + directory + end)
    return path


@pytest.mark.parametrize("decoy", [False, True], ids=["plain", "decoy_signature"])
def test_a_forged_directory_is_judged_by_the_record_zipfile_reads(tmp_path, monkeypatch, decoy):
    monkeypatch.setattr("featinv.io.archives.MAX_DIRECTORY", 20 * 1000)
    path = _forged_directory(tmp_path / "w.npz", 1000, decoy)
    with pytest.raises(FeatinvError, match=r"a directory of \d+ members in 51000 bytes; an \.npz "
                       "featinv reads has fewer than"):
        npz_entries(path)
