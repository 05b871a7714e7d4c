"""Every bad (and awkward but valid) input file we try, through the API and each command.

Invalid files, each of which must give one line naming the file and the reason:
    empty.jpg           zero bytes
    text.jpg            a text file named .jpg
    truncated.jpg       a JPEG cut to a third of its length
    truncated.png       a PNG cut to a third of its length
    bomb.png            a PNG header declaring 50000 x 50000 pixels (decompression bomb)
    emptydir/           a folder with no images, given on the command line
Valid files, each of which must be read correctly:
    gray.png            8-bit grayscale
    gray16.png          16-bit grayscale (rescaled, not clipped)
    rgba.png            RGB with alpha (transparent parts become white)
    palette.png         palette image
    palette_alpha.png   palette image with a transparent colour
    cmyk.jpg            CMYK JPEG
    exif_rotated.jpg    a JPEG whose EXIF orientation says "rotate 90 degrees"
    tiny.png            2 x 2 pixels: smaller than one HOG cell at its own size
"""
from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import featinv
from featinv.errors import ImageError
from featinv.io.images import load_image, probe_image
from helpers import run_cli as run, error_lines as _error_lines

INVALID = {"empty.jpg": "empty file (0 bytes)", "text.jpg": "not an image file",
           "truncated.jpg": "cannot decode image", "truncated.png": "cannot decode image",
           "bomb.png": "too large", "emptydir": "is a directory"}
VALID = ["gray.png", "gray16.png", "rgba.png", "palette.png", "palette_alpha.png", "cmyk.jpg",
         "exif_rotated.jpg", "tiny.png"]


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _photo(h=48, w=64) -> np.ndarray:
    """A smooth colour picture with a bright top-left corner (to check orientation)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0 * xx], -1)
    img[: h // 4, : w // 4] = 1.0
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    photo = _photo()
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a picture\n")
    Image.fromarray(photo).save(root / "full.jpg", quality=90)
    data = (root / "full.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "full.jpg").unlink()
    Image.fromarray(photo).save(root / "full.png")
    data = (root / "full.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 3])
    (root / "full.png").unlink()
    (root / "bomb.png").write_bytes(_png_header_only(50_000, 50_000))
    Image.fromarray(photo[..., 0]).save(root / "gray.png")
    Image.fromarray((photo[..., 0].astype(np.uint16) * 257)).save(root / "gray16.png")
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, 32:, 3] = 0  # right half transparent
    Image.fromarray(rgba, "RGBA").save(root / "rgba.png")
    Image.fromarray(photo).quantize(16).save(root / "palette.png")
    pal = Image.fromarray(photo).quantize(16)
    pal.info["transparency"] = 0
    pal.save(root / "palette_alpha.png", transparency=0)
    Image.fromarray(photo).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(photo).save(root / "exif_rotated.jpg", exif=exif, quality=95)
    Image.fromarray(photo[:2, :2]).save(root / "tiny.png")
    (root / "sub").mkdir()  # a sub-folder; commands search folders recursively
    (root / "emptydir").mkdir()
    return root


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_file_is_one_clear_error_naming_it(folder, name):
    with pytest.raises(ImageError) as info:
        load_image(folder / name)
    message = str(info.value)
    assert name in message and INVALID[name] in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(set(INVALID) - {"truncated.jpg", "truncated.png"}))
def test_header_probe_catches_what_needs_no_decoding(folder, name):
    with pytest.raises(ImageError, match=re.escape(INVALID[name])):
        probe_image(folder / name)


def test_valid_variants_are_read_correctly(folder):
    photo = _photo().astype(np.float32) / 255
    read = {name: load_image(folder / name) for name in VALID}
    assert all(t.shape[0] == 3 and t.dtype == torch.float32 for t in read.values())
    gray = read["gray.png"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    torch.testing.assert_close(gray[0], torch.from_numpy(photo[..., 0]), atol=1 / 255, rtol=0)
    torch.testing.assert_close(read["gray16.png"], gray, atol=1 / 255, rtol=0)  # not clipped
    rgba = read["rgba.png"]
    assert torch.all(rgba[:, :, 32:] == 1.0)  # transparent -> white
    torch.testing.assert_close(rgba[:, :, :32].permute(1, 2, 0),
                               torch.from_numpy(photo[:, :32]), atol=1 / 255, rtol=0)
    assert (read["palette.png"].permute(1, 2, 0) - torch.from_numpy(photo)).abs().mean() < 0.05
    assert read["palette_alpha.png"].shape == (3, 48, 64)
    assert (read["cmyk.jpg"].permute(1, 2, 0) - torch.from_numpy(photo)).abs().mean() < 0.03
    rotated = read["exif_rotated.jpg"]
    assert rotated.shape == (3, 64, 48)  # orientation applied: portrait
    # the bright corner, top-left when stored, is top-right after rotating clockwise
    assert rotated[:, :8, -8:].mean() > 0.95 and rotated[:, :8, :8].mean() < 0.9
    assert read["tiny.png"].shape == (3, 2, 2)


def test_invert_reports_each_bad_file_and_writes_the_rest(folder, tmp_path, capsys):
    code, out, err = run(capsys, "invert", "-f", "hog", folder, folder / "emptydir",
                         "--size", 32, "-o", tmp_path)  # --size: tiny.png (2 x 2) is enlarged
    assert code == 1 and "Traceback" not in err
    lines = _error_lines(err)
    for name, reason in INVALID.items():
        assert sum(name in line and reason in line for line in lines) >= 1, name
    assert len(lines) == len(INVALID)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(f"{n.rsplit('.', 1)[0]}.hog.png" for n in VALID)


def test_extract_reports_bad_files_and_too_small_images(folder, tmp_path, capsys):
    code, out, err = run(capsys, "extract", "-f", "hog", folder, "-o", tmp_path / "f.npz")
    assert code == 1 and "Traceback" not in err
    lines = _error_lines(err)
    assert any("tiny.png" in line and "at least" in line for line in lines)  # below one cell
    for name in set(INVALID) - {"emptydir"}:
        assert any(name in line for line in lines), name
    assert (tmp_path / "f.npz").is_file()
    assert f"wrote {tmp_path / 'f.npz'} ({len(VALID) - 1} images" in out


def test_evaluate_lists_failed_files_and_scores_the_rest(folder, capsys):
    code, out, err = run(capsys, "evaluate", "-f", "hog", "--data", folder, "--json")
    assert code == 1 and "Traceback" not in err
    import json

    result = json.loads(out)
    # tiny.png (2 x 2 px) is a valid image, but evaluating it at 128 px would enlarge it 64
    # times: it is refused and listed too (issue 24: a 1 px strip is no photo)
    assert result["n_images"] == len(VALID) - 1
    assert len(result["failed"]) == len(INVALID) - 1 + 1  # the empty folder is not a file
    assert any("tiny.png" in f and "enlarged 64 times" in f for f in result["failed"])
    assert all(np.isfinite(result[k]) for k in ("normalized_error", "psnr", "ssim"))


@pytest.mark.slow
def test_train_skips_bad_files_and_trains_on_the_rest(folder, tmp_path, capsys):
    code, out, err = run(capsys, "train", "-f", "hog", "--data", folder, "--out", tmp_path,
                         "--image-size", 32, "--epochs", 1, "--batch-size", 4, "--workers", 0)
    assert code == 0 and "Traceback" not in err
    # the header scan skips most; what only fails when decoded is reported at its first use
    skipped = [line for line in err.splitlines() if line.startswith("skipping ")]
    decoded = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert {"empty.jpg", "text.jpg", "bomb.png"} <= {n for n in INVALID if any(n in x for x in skipped)}
    for name in set(INVALID) - {"emptydir"}:
        assert sum(name in line for line in skipped + decoded) == 1, name
    assert featinv.load_decoder(tmp_path / "decoder.safetensors").meta["progress"]["step"] > 0
