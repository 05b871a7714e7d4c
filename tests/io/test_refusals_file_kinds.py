"""Issue 24, round 14 A7: a file of another kind given as a decoder is named for what it is (no
more 'header length 7715134377680210719 does not fit a file of 6939071 bytes'), and files of
several pictures are read alike, whatever their format."""
from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import tarfile
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from featinv.errors import CheckpointError
from featinv.io import checkpoint, frames
from featinv.io.images import load_image, probe_image
from helpers import error_lines, run_cli

DECODER = b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14  # safetensors-like bytes


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _tar(path, gz: bool) -> None:
    inner = path.parent / "hog.safetensors"
    inner.write_bytes(DECODER)
    with tarfile.open(path, "w:gz" if gz else "w") as archive:
        archive.add(inner, arcname="hog.safetensors")


def _zip(path, names) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")


KINDS = {  # file name -> (how to write it, what the message names)
    "hog.safetensors.gz": (lambda p: p.write_bytes(gzip.compress(DECODER)),
                           "a gzip-compressed file (.gz, .tgz), not a safetensors file; unpack "
                           "it first"),
    "t.tgz": (lambda p: _tar(p, True), "a gzip-compressed file (.gz, .tgz)"),
    "t.tar": (lambda p: _tar(p, False), "a tar archive, not a safetensors file; unpack it first "
                                        "(tar -xf)"),
    "t.bz2": (lambda p: p.write_bytes(bz2.compress(DECODER)), "a bzip2-compressed file"),
    "t.xz": (lambda p: p.write_bytes(lzma.compress(DECODER)), "an xz-compressed file"),
    "t.zip": (lambda p: _zip(p, ["hog.safetensors"]), "a zip archive, not a safetensors file"),
    "w.npz": (lambda p: _zip(p, ["a.npy"]), "a NumPy archive (.npz)"),
    "w.pt": (lambda p: _zip(p, ["archive/data.pkl"]), "looks like a pickled PyTorch file"),
    "w.pkl": (lambda p: p.write_bytes(pickle.dumps({"a": 1}, protocol=4)),
              "looks like a pickled PyTorch file; featinv never unpickles"),
    "photo.png": (lambda p: p.write_bytes(_png()), "a PNG image, not a safetensors file; images "
                                                   "are the command's inputs"),
    "photo.jpg": (lambda p: p.write_bytes(_jpeg()), "a JPEG image"),
    "a.npy": (lambda p: np.save(p, np.zeros(3)), "a NumPy array (.npy)"),
    "config.json": (lambda p: p.write_text(json.dumps({"format": "featinv-decoder"})),
                    "a JSON file, not a safetensors file"),
    "notes.txt": (lambda p: p.write_text("the decoder is in runs/hog\n"),
                  "a text file, not a safetensors file"),
    "lfs.safetensors": (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\n"
                                               "oid sha256:0\nsize 12\n"),
                        "a Git LFS pointer (the file it stands for was not fetched), not a "
                        "safetensors file; fetch the file itself (git lfs pull)"),
    "empty.safetensors": (lambda p: p.write_bytes(b""), "empty file (0 bytes), not a checkpoint"),
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_file_of_another_kind_is_named(tmp_path, name):
    write, said = KINDS[name]
    write(tmp_path / name)
    with pytest.raises(CheckpointError) as info:
        checkpoint.read_meta(tmp_path / name)
    assert said in str(info.value) and "header length" not in str(info.value), str(info.value)


def test_a_safetensors_header_of_128_bytes_is_no_pickle(tmp_path):
    """Its first byte is 0x80, a pickle's mark: the bytes after it tell them apart."""
    path = tmp_path / "cut.safetensors"
    path.write_bytes((128).to_bytes(8, "little") + b"{" + b" " * 20)  # truncated
    with pytest.raises(CheckpointError) as info:
        checkpoint.read_meta(path)
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize("path", ["/proc/self/environ", "/proc/self/status"])
def test_a_kernel_file_is_named_and_not_read(capsys, tmp_path, path):
    code, out, err = run_cli(capsys, "invert", "-c", path, "skimage:coffee", "-o",
                             tmp_path / "a.png")
    assert code == 1 and error_lines(err) == [
        f"Error: {path}: a file of the kernel (proc), not a checkpoint file; featinv reads only "
        "regular files."], err


def test_the_cli_names_a_gzip_decoder(capsys, tmp_path):
    (tmp_path / "hog.safetensors.gz").write_bytes(gzip.compress(DECODER))
    code, _, err = run_cli(capsys, "invert", "-c", tmp_path / "hog.safetensors.gz",
                           "skimage:coffee", "-o", tmp_path / "a.png")
    assert code == 1 and len(error_lines(err)) == 1 and "gzip-compressed" in err, err


# -- files of several pictures: the first, of any format ------------------------------------

def _pictures(path, fmt: str, n: int = 6, size=(16, 16)) -> None:
    pages = [Image.new("RGB", size, (40 * i, 200 - 30 * i, 7)) for i in range(n)]
    pages[0].save(path, format=fmt, save_all=True, append_images=pages[1:], duration=50)


@pytest.mark.parametrize("name, fmt", [("a.gif", "GIF"), ("a.png", "PNG"), ("a.tif", "TIFF"),
                                       ("a.webp", "WEBP")])
def test_every_format_of_several_pictures_gives_its_first_and_says_so_once(
        tmp_path, monkeypatch, name, fmt):
    monkeypatch.setattr(frames, "_SAID", [False])
    _pictures(tmp_path / name, fmt)
    with Image.open(tmp_path / name) as img:
        assert img.n_frames == 6
    with pytest.warns(frames.FirstFrameOnly, match="holds several frames or pages; featinv uses "
                                                   "the first alone"):
        image = load_image(tmp_path / name)
    first = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float32) / 255
    assert np.abs(image.permute(1, 2, 0).numpy() - first).max() < 0.05
    _pictures(tmp_path / f"b{name}", fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        load_image(tmp_path / f"b{name}")


def test_a_many_page_tiff_beyond_one_pictures_bound_is_read(tmp_path, monkeypatch):
    """The file's bound counts its pages (round 14 A7: 2000 pages of 64x64 px, 25 MB, were
    'save that page alone' while a 2000-frame APNG was read); beyond the memory budget it is
    refused with why (training reads a file whole)."""
    monkeypatch.setattr(frames, "_SAID", [True])
    monkeypatch.setattr(frames, "max_file_bytes",
                        lambda width, height, pictures=1: 4 * width * height * pictures + 500)
    _pictures(tmp_path / "many.tif", "TIFF", n=40)
    assert probe_image(tmp_path / "many.tif") == (16, 16)
    monkeypatch.setattr(frames.limits, "memory_budget", lambda: 5000)  # decoding: 4096
    with pytest.raises(Exception, match="of several frames or pages, more than featinv's memory "
                                        "budget .* lets it read whole; save the first picture"):
        probe_image(tmp_path / "many.tif")


def test_data_appended_to_one_picture_is_still_refused(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(_png() + bytes(17 * 2**20))
    with pytest.raises(Exception, match=r"far more than it needs \(data appended"):
        probe_image(path)
