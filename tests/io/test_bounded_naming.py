"""Round 15 (attack 15) D6 and D7: naming a forged zip reads a few kB only; smaller wording
points (a folder of outputs alone, a training state given as a decoder, show-features' own
options when out of memory, bare weights file names in a packed decoder's parameters)."""
from __future__ import annotations

import builtins
import struct
import zipfile

import numpy as np
import pytest
import torch

import featinv
from featinv.errors import CheckpointError, ImageError
from featinv.io import archives, checkpoint, file_types
from featinv.io.images import read_bytes, save_png
from featinv.io.marks import INCLUDE_ENV, OutputsSkipped, without_outputs
from featinv.io.outputs import plan_inputs
from helpers import write_images


def _forged_zip(path, n: int) -> None:
    """A zip whose central directory lists ``n`` members named a.npy (no data)."""
    name = b"a.npy"
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name),
                        0, 0, 0, 0, 0, 0) + name
    head = b"PK\x03\x04\x14\x00\x00\x00" + bytes(22)
    directory = entry * n
    path.write_bytes(head + directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF,
                                                    0xFFFF, len(directory), len(head), 0))


@pytest.fixture
def read_counter(monkeypatch):
    """The bytes file_types reads through ``open`` (its only way of reading)."""
    counted = [0]

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            data = self.f.read(n)
            counted[0] += len(data)
            return data

        def seek(self, *args):
            return self.f.seek(*args)

    monkeypatch.setattr(file_types, "open", lambda p, mode="r": Counting(builtins.open(p, mode)),
                        raising=False)
    monkeypatch.setattr(zipfile, "ZipFile", None)  # never parses the archive
    return counted


def test_a_forged_zip_directory_is_named_from_a_few_kb(tmp_path, read_counter):
    forged = tmp_path / "zb.safetensors"
    _forged_zip(forged, 200_000)  # 10 MB of directory
    assert "a NumPy archive (.npz)" in file_types.what_it_is(forged)
    assert read_counter[0] < 10_000


def test_real_archives_keep_their_names(tmp_path):
    npz = tmp_path / "f.npz"
    np.savez_compressed(npz, a=np.zeros(3), b=np.ones(2))
    torch_file = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(2)}, torch_file)
    other = tmp_path / "bundle.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr("a.npy", "x")
    assert file_types._zip_kind(npz) == "numpy"
    assert file_types._zip_kind(torch_file) == "torch"
    assert file_types._zip_kind(other) == "zip"


def test_an_npz_with_a_forged_directory_is_refused_before_zipfile_reads_it(tmp_path,
                                                                           monkeypatch):
    forged = tmp_path / "w.npz"
    _forged_zip(forged, 200_000)  # 10 MB of directory
    monkeypatch.setattr(zipfile, "ZipFile", None)
    with pytest.raises(archives.ArchiveError, match="a directory of 65535 members in 10200000 "
                       "bytes; an .npz featinv reads has fewer than 100000 in at most 8388608 "
                       "bytes."):
        archives.npz_entries(forged)
    monkeypatch.undo()
    good = tmp_path / "g.npz"
    np.savez(good, a=np.zeros(3))
    assert archives.npz_entries(good)["a"].shape == (3,)


def test_a_folder_of_outputs_alone_says_so_when_inverted(tmp_path):
    save_png(torch.rand(3, 8, 8), tmp_path / "mk" / "v0.png")
    with pytest.warns(OutputsSkipped):
        (entry,) = plan_inputs([tmp_path / "mk"])
    with pytest.raises(ImageError, match=r"mk: holds only pictures featinv wrote "
                       r"\(reconstructions, skipped\), no photos; pass the photos' folder"):
        read_bytes(entry.path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="is a directory, not an image file"):
        read_bytes(tmp_path / "empty")


def test_marked_pngs_are_read_as_photos_when_asked(tmp_path, monkeypatch):
    write_images(tmp_path / "d", 2)
    save_png(torch.rand(3, 8, 8), tmp_path / "d" / "marked.png")
    files = sorted((tmp_path / "d").iterdir())
    with pytest.warns(OutputsSkipped, match=f"set {INCLUDE_ENV}=1"):
        assert len(without_outputs(files, tmp_path / "d")) == 2
    monkeypatch.setenv(INCLUDE_ENV, "1")
    assert len(without_outputs(files, tmp_path / "d")) == 3
    for off in ("0", "false", "no", "off", " 00", "nonsense"):  # round 16, N4: only a yes counts
        monkeypatch.setenv(INCLUDE_ENV, off)
        assert len(without_outputs(files, tmp_path / "d")) == 2, off
    monkeypatch.setenv(INCLUDE_ENV, " Yes ")
    assert len(without_outputs(files, tmp_path / "d")) == 3


def test_a_training_state_given_as_a_decoder_says_what_to_pass(tmp_path):
    state = checkpoint.atomic_save({"w": torch.zeros(1)}, tmp_path / "train_state.safetensors",
                                   {"format": "featinv-train-state", "format_version": 1})
    with pytest.raises(CheckpointError, match=r"found 'featinv-train-state' \(a training run's "
                       r"state\); pass the run folder or its decoder.safetensors instead\.$"):
        featinv.load_decoder(state)


def test_out_of_memory_names_the_commands_own_options(capsys):
    from featinv.cli.main import _out_of_memory

    with pytest.raises(SystemExit):
        _out_of_memory(["show-features", "-f", "lbp", "v0.png", "--size", "4096"])
    assert capsys.readouterr().err.strip().endswith("use a smaller --size or --max-side.")
    with pytest.raises(SystemExit):
        _out_of_memory(["train", "data"])
    err = capsys.readouterr().err
    assert "--image-size, --batch-size or --limit." in err and "--max-side" not in err


@pytest.mark.parametrize("value", ["sq.safetensors", "W.NPZ", "C:x", "c:sq"])
def test_pack_leaves_out_bare_weights_names_and_drive_relative_paths(value):
    from featinv import CellGrid, FeatureSpec, Param
    from featinv.inversion.pack_meta import PackedMetadata, portable_feature

    spec = FeatureSpec(name="w", description="x", input="gray", differentiable=True,
                       build=lambda weights: None, params=(Param("weights", "builtin"),),
                       rule=lambda weights: CellGrid(1, 4))
    with pytest.warns(PackedMetadata, match="is a path or URL"):
        out = portable_feature({"name": "w", "params": {"weights": value}}, spec, 32, "src")
    assert out["params"]["weights"] == "builtin"
    plain = {"name": "w", "params": {"weights": "bilinear"}}
    assert portable_feature(plain, spec, 32, "src") == plain
