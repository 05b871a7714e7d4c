"""Pictures whose pixels are not plain 8-bit (issue 24, D12-D14): every number type Pillow can
give for a TIFF, PNG or PGM is read on its type's scale or refused in one line that says why,
never read on a wrong scale with exit code 0; and what libtiff or Pillow print while decoding
never reaches the user beside featinv's own line.

Float pictures: [0, 1] (from -0.1 to 1.5, clipped) or 0-255 (brightest pixel from 25.5 to
280.5), anything else refused. Integers: 8- and 16-bit types by their type's range (a signed
type by its positive half), 32-bit types by the range their values use; negatives refused.
"""
from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from featinv.errors import ImageError
from featinv.io.decode_output import stderr_held
from featinv.io.images import load_image, pixel_type
from featinv.io.pixels import to_rgb
from helpers import error_lines, run_cli

tifffile = pytest.importorskip("tifffile")

RAMP = np.linspace(0, 1, 32 * 40).reshape(32, 40)  # a gradient: read right, its mean is 0.5


def _tif(path, arr, **kw):
    tifffile.imwrite(path, arr, **kw)
    return path


def _gray(path) -> torch.Tensor:
    x = load_image(path)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    return x[0]


# -- D12: float pictures -------------------------------------------------------------------------

@pytest.mark.parametrize("low, high, scale", [
    (0.0, 1.0, 1.0), (0.0, 1.01, 1.0), (-0.01, 1.0, 1.0), (-0.1, 1.5, 1.0),
    (0.0, 255.0, 255.0), (-20.0, 270.0, 255.0), (0.0, 30.0, 255.0)])
def test_float_pictures_on_either_scale_are_read_on_it_and_clipped(tmp_path, low, high, scale):
    """[0, 1.01] (a resampling overshoot) is a [0, 1] picture, not a near-black 0-255 one."""
    arr = (low + RAMP * (high - low)).astype(np.float32)
    x = _gray(_tif(tmp_path / "f.tif", arr))
    want = torch.from_numpy(np.clip(arr / scale, 0, 1)).float()
    torch.testing.assert_close(x, want, atol=1 / 255 + 1e-6, rtol=0)
    if high / scale > 1:
        assert float(x.max()) == 1.0 and float((x == 1).float().mean()) > 0


@pytest.mark.parametrize("low, high", [
    (0.0, 2.0), (0.0, 1.6), (0.0, 25.0), (-0.5, 0.5), (-0.2, 1.0), (0.0, 300.0),
    (0.0, 65535.0), (-30.0, 200.0)])
def test_float_pictures_on_neither_scale_are_refused(tmp_path, low, high):
    """[0, 2]: too bright for [0, 1], too dark for 0-255: refused, not guessed."""
    arr = (low + RAMP * (high - low)).astype(np.float32)
    with pytest.raises(ImageError, match=r"f.tif: float image with values in \[.*and this is "
                                         r"neither\. Rescale it to \[0, 1\] first\."):
        load_image(_tif(tmp_path / "f.tif", arr))


# -- D13: integer pictures -------------------------------------------------------------------------

def _ramp(dtype, top):
    return np.round(RAMP * top).astype(dtype)


@pytest.mark.parametrize("dtype, top, byteorder, mode, kind", [
    (np.uint8, 255, "<", "L", None),
    (np.uint16, 65535, "<", "I;16", ("u", 16)),
    (np.uint16, 65535, ">", "I;16B", ("u", 16)),
    (np.int8, 127, "<", "L", ("i", 8)),  # Pillow: mode L, the bytes read as unsigned
    (np.int16, 32767, "<", "I", ("i", 16)),
    (np.int16, 32767, ">", "I", ("i", 16)),
    (np.int32, 2**31 - 1, "<", "I", ("i", 32)),
    (np.uint32, 2**32 - 1, "<", "I", ("u", 32)),  # Pillow: int32, the top half negative
    (np.uint32, 65535, "<", "I", ("u", 32)),  # 16-bit data in a 32-bit file
    (np.int32, 255, ">", "I", ("i", 32)),  # 8-bit data in a 32-bit file
])
def test_integer_tiffs_are_read_on_their_types_scale(tmp_path, dtype, top, byteorder, mode,
                                                      kind):
    path = _tif(tmp_path / "i.tif", _ramp(dtype, top), byteorder=byteorder)
    with Image.open(path) as img:
        assert img.mode == mode and pixel_type(img) == kind
    x = _gray(path)
    assert abs(float(x.mean()) - 0.5) < 0.01 and float(x.max()) == 1.0 and float(x.min()) == 0
    step = 0.5 / min(top, 255) + 0.5 / 255 + 1e-6  # the ramp's rounding to the type, to 8 bits
    torch.testing.assert_close(x, torch.from_numpy(RAMP).float(), atol=step, rtol=0)


def test_unsigned_32_bit_pixels_above_two_to_the_31_are_not_negative(tmp_path):
    """An unsigned 32-bit TIFF was refused for 'negative values' it does not have."""
    arr = np.full((16, 16), 3 * 2**30, dtype=np.uint32)
    arr[0, 0] = 2**32 - 1
    x = _gray(_tif(tmp_path / "u.tif", arr))
    assert float(x[0, 0]) == 1.0 and abs(float(x[1, 1]) - 0.75) < 1 / 255


def test_a_12_bit_tiff_is_read_on_the_12_bit_scale(tmp_path):
    """Pillow gives it as I;16 holding 0-4095; the TIFF's BitsPerSample says 12."""
    values = [0, 4095, 2048, 100]
    packed = int("".join(f"{v:012b}" for v in values), 2).to_bytes(6, "big")
    tags = [(256, 4), (257, 1), (258, 12), (259, 1), (262, 1), (273, 0), (277, 1), (278, 1),
            (279, len(packed))]
    start = 8 + 2 + 12 * len(tags) + 4
    ifd = b"".join(struct.pack("<HHII", tag, 4, 1, start if tag == 273 else value)
                   for tag, value in tags)
    path = tmp_path / "t12.tif"
    path.write_bytes(b"II*\0" + struct.pack("<IH", 8, len(tags)) + ifd + b"\0" * 4 + packed)
    with Image.open(path) as img:
        assert img.mode == "I;16" and pixel_type(img) == ("u", 12)
    x = _gray(path)[0]
    assert x.tolist() == pytest.approx([0, 1, 128 / 255, 6 / 255], abs=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_signed_pictures_with_negatives_are_refused_naming_the_type(tmp_path, dtype):
    """A signed 8-bit TIFF was read as garbage (-1 became 255, white) with exit code 0."""
    bits = np.dtype(dtype).itemsize * 8
    arr = np.round((RAMP * 2 - 1) * (2 ** (bits - 1) - 1)).astype(dtype)
    with pytest.raises(ImageError, match=rf"s.tif: signed {bits}-bit integer image with "
                                         r"negative values \(-\d+ to \d+\).*unsigned 8 or 16"):
        load_image(_tif(tmp_path / "s.tif", arr))


def test_16_bit_png_and_pgm_are_read_on_the_16_bit_scale(tmp_path):
    arr = _ramp(np.uint16, 65535)
    Image.fromarray(arr).save(tmp_path / "g.png")
    (tmp_path / "g.pgm").write_bytes(b"P5\n40 32\n65535\n" + arr.astype(">u2").tobytes())
    dark = np.round(RAMP * 200).astype(">u2")  # 200 of 65535: dark, not read as 8-bit
    (tmp_path / "dark.pgm").write_bytes(b"P5\n40 32\n65535\n" + dark.tobytes())
    for name, mode in (("g.png", "I;16"), ("g.pgm", "I")):
        with Image.open(tmp_path / name) as img:
            assert img.mode == mode and pixel_type(img) == ("u", 16)
        torch.testing.assert_close(_gray(tmp_path / name), torch.from_numpy(RAMP).float(),
                                   atol=1 / 255 + 1e-6, rtol=0)
    assert float(_gray(tmp_path / "dark.pgm").max()) == pytest.approx(1 / 255)


@pytest.mark.parametrize("arr", [
    np.zeros((8, 8), np.float64), np.zeros((8, 8), np.float16), np.zeros((8, 8), np.int64),
    np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 3), np.int8)],
    ids=["float64", "float16", "int64", "rgb-float", "rgb-int8"])
def test_tiffs_of_pixel_types_pillow_lacks_are_refused_saying_so(tmp_path, arr):
    with pytest.raises(ImageError, match="t.tif: a TIFF file Pillow cannot read: damaged, or of "
                                         "a pixel type it lacks .*8- or 16-bit unsigned"):
        load_image(_tif(tmp_path / "t.tif", arr, photometric="rgb" if arr.ndim == 3 else None))


@pytest.mark.parametrize("mode", sorted(Image.MODES))
def test_every_pillow_mode_becomes_rgb(mode):
    img = Image.new(mode, (3, 2))
    assert to_rgb(img).mode == "RGB"


def test_premultiplied_alpha_becomes_white_where_transparent():
    img = Image.new("La", (2, 2), (0, 0))
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)


# -- D14: what decoding libraries print -----------------------------------------------------------

def _zlib_tiff(path, extratags=()) -> bytes:
    rng = np.random.default_rng(0)
    arr = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, compression="zlib", extratags=list(extratags))
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_libtiff_output_is_held_and_only_featinvs_lines_are_seen(tmp_path, capfd):
    """A TIFF with an unknown tag reads quietly; a corrupt strip gives one Error line that names
    libtiff's reason (not "decoder error -2"), with nothing printed before it; the batch goes
    on. Pillow's own notes ("Tag data larger than file") are not shown either."""
    data = _zlib_tiff(tmp_path / "unknown_tag.tif", [(65000, "s", 0, "private", True)])
    with tifffile.TiffFile(tmp_path / "unknown_tag.tif") as tif:
        start = tif.pages[0].dataoffsets[0]
    bad = bytearray(data)
    bad[start:start + 2] = b"\0\0"  # no zlib stream there any more
    (tmp_path / "corrupt.tif").write_bytes(bytes(bad))
    data = bytearray(_zlib_tiff(tmp_path / "x.tif", [(65001, "I", 4, (1, 2, 3, 4), True)]))
    entry = data.find(struct.pack("<HHI", 65001, 4, 4))
    data[entry + 8:entry + 12] = struct.pack("<I", 10**7)  # its values past the end
    (tmp_path / "x.tif").unlink()
    (tmp_path / "far_tag.tif").write_bytes(bytes(data))
    code, out, err = run_cli(capfd, "extract", "-f", "hog", tmp_path, "-o", tmp_path / "f.npz")
    assert code == 1 and "wrote" in out and "(2 images" in out
    lines = err.splitlines()
    assert lines[0].startswith("Error: ") and "corrupt.tif: cannot decode image (ZIPDecode:" \
        in lines[0], err
    rest = [line for line in lines[1:] if line != "1 of 3 images failed."]
    assert sorted(line.rsplit("/", 1)[-1] for line in rest) == [
        "far_tag.tif: 31x6x6", "unknown_tag.tif: 31x6x6"], err  # featinv's own lines only


def test_writes_to_file_descriptor_2_while_decoding_are_held(capfd):
    said: list[str] = []
    with stderr_held(said):
        os.write(2, b"TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8)\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert said == ["TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8)"]
    with stderr_held(said, active=False):
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"


def test_a_multi_page_tiff_is_not_blamed_on_appended_data(tmp_path, monkeypatch):
    """Round 13 N10: a legitimate many-page TIFF was refused as 'data appended to the image?';
    issue 24 A7: its first page is read, as an animated GIF's or PNG's first frame is (the
    limit per picture is lowered here so that the file passes it only as 20 pages)."""
    import warnings

    from PIL import Image

    from featinv.io import frames
    from featinv.io.images import load_image

    monkeypatch.setattr(frames, "max_file_bytes",
                        lambda width, height, pictures=1: 4 * width * height * pictures + 500)
    pages = [Image.new("RGB", (16, 16), (i * 10, 0, 0)) for i in range(20)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert path.stat().st_size > 4 * 16 * 16 + 500
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", frames.FirstFrameOnly)
        image = load_image(path)
    assert image.shape == (3, 16, 16) and float(image[0].max()) == 0.0  # the first page


def test_a_kernel_file_is_not_called_empty(tmp_path):
    """Round 13 N10: a link to /proc/self/mem (size 0) was an 'empty file (0 bytes)'."""
    from featinv.errors import ImageError
    from featinv.io.images import load_image

    link = tmp_path / "mem.png"
    link.symlink_to("/proc/self/mem")
    with pytest.raises(ImageError, match=r"a file of the kernel \(proc\), not an image file"):
        load_image(link)
