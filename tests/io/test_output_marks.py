"""Issue 24, round 14 A3: the PNGs featinv writes carry a mark, and no command reads them back
as photos when it lists a folder (``featinv.io.marks``).

``featinv invert -f hog v9/v0.png -o v9`` (or the default ``-o .`` run among the photos) writes
``v9/v0.hog.png`` beside the photos; ``audit``, ``evaluate``, ``train`` and ``invert`` of ``v9``
then took it for a photo (audit's top-1 of 100% on it)."""
from __future__ import annotations

import os
import warnings

import pytest
import torch
from PIL import Image

from featinv.datasets.folders import scan_folder
from featinv.errors import DataError
from featinv.io.images import save_png
from featinv.io.marks import MARK_KEY, OutputsSkipped, featinv_output, without_outputs
from featinv.io.outputs import plan_inputs
from helpers import run_cli, write_images


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "v9", 3, size=(64, 64))
    return tmp_path / "v9"


def test_every_png_featinv_writes_is_marked_and_photos_are_not(tmp_path, photos):
    path = save_png(torch.rand(3, 8, 8), tmp_path / "a.png", "a test picture")
    with Image.open(path) as img:
        assert MARK_KEY in img.text and img.text[MARK_KEY].endswith(": a test picture")
    assert featinv_output(path)
    assert not any(featinv_output(p) for p in photos.iterdir())
    Image.open(path).save(tmp_path / "resaved.png")  # a picture saved again elsewhere: a photo
    assert not featinv_output(tmp_path / "resaved.png")


def test_the_mark_is_looked_for_without_reading_what_is_no_regular_png(tmp_path):
    (tmp_path / "text.png").write_text("not a png")
    os.mkfifo(tmp_path / "fifo.png")  # opening it would block
    (tmp_path / "dev.png").symlink_to("/dev/zero")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.jpg")
    assert not any(featinv_output(tmp_path / name) for name in
                   ("text.png", "fifo.png", "dev.png", "empty.png", "x.jpg", "missing.png"))


def test_a_folder_listing_leaves_featinv_outputs_out_and_says_so_once(tmp_path, photos):
    save_png(torch.rand(3, 8, 8), photos / "v0.hog.png")
    save_png(torch.rand(3, 8, 8), photos / "o3" / "v1.hog.png")
    with pytest.warns(OutputsSkipped, match=r"skipped 2 featinv outputs \(o3/v1\.hog\.png, \.\.\.\)"
                                            ": pictures featinv wrote, not photos"):
        files = scan_folder(photos)
    assert sorted(f.name for f in files) == ["img000.png", "img001.png", "img002.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert without_outputs(files, photos) == files  # nothing left out: not a word
        scan_folder(photos)  # said once per folder and count
    assert len(scan_folder(photos, photos=False)) == 5  # a folder of reconstructions: all


def test_a_folder_of_outputs_alone_is_no_data_folder(tmp_path):
    save_png(torch.rand(3, 8, 8), tmp_path / "recs" / "v0.hog.png")
    with pytest.warns(OutputsSkipped), pytest.raises(DataError, match="holds only pictures "
                                                     "featinv wrote"):
        scan_folder(tmp_path / "recs")


def test_invert_of_a_folder_skips_them_and_a_named_file_is_read(tmp_path, photos):
    save_png(torch.rand(3, 8, 8), photos / "v0.hog.png")
    with pytest.warns(OutputsSkipped):
        inputs = plan_inputs([photos])
    assert [i.stem for i in inputs] == ["img000", "img001", "img002"]
    assert [i.stem for i in plan_inputs([photos / "v0.hog.png"])] == ["v0.hog"]


def test_the_reported_sequence_no_longer_reads_reconstructions_as_photos(tmp_path, capsys,
                                                                           photos):
    """A3's commands: invert into the photos' folder (allowed: file inputs, as with the
    default -o . among the photos), then invert and audit that folder."""
    os.chdir(tmp_path)
    code, out, err = run_cli(capsys, "invert", "-f", "hog", "v9/img000.png", "-o", "v9")
    assert code == 0 and out.strip() == "v9/img000.hog.png", err
    with Image.open("v9/img000.hog.png") as img:
        assert "reconstruction (feature hog, decoder zoo:hog) of img000.png" in img.text[MARK_KEY]
    code, out, err = run_cli(capsys, "invert", "-f", "hog", "v9/img000.png", "v9/img001.png",
                             "-o", "v9/o3")
    assert code == 0, err
    code, out, err = run_cli(capsys, "invert", "-f", "hog", "v9", "-o", "v9_out")
    assert code == 0, err
    assert sorted(os.listdir("v9_out")) == ["img000.hog.png", "img001.hog.png", "img002.hog.png"]
    assert err.count("Warning: v9: skipped 3 featinv outputs") == 1, err
    code, out, err = run_cli(capsys, "evaluate", "-f", "hog", "--data", "v9", "--image-size", 64,
                             "--perceptual-weights", "none", "--comparator", "none", "--json")
    assert code == 0 and '"n_images": 3' in out, err


def test_compare_reads_its_reconstructions_folder_whole(tmp_path, capsys, photos):
    recs = tmp_path / "recs"
    for path in sorted(photos.iterdir()):
        save_png(torch.rand(3, 64, 64), recs / f"{path.stem}.hog.png")
    save_png(torch.rand(3, 64, 64), photos / "img000.hog.png")  # among the originals: left out
    code, out, err = run_cli(capsys, "compare", photos, recs, "--image-size", 32, "--json",
                             "--perceptual-weights", "none")
    assert code == 0 and '"n_images": 3' in out and '"unmatched": []' in out, err
