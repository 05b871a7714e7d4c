"""invert at the image's own size: the default for grid layouts, --size N, the --max-side cap,
sides the cells do not divide (padded and cropped back), vector layouts at their training size,
and decoders that reconstruct any grid size exactly."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import featinv
from featinv.io.checkpoint import decoder_metadata, save_decoder
from featinv.decoders.networks import build_decoder
from featinv.io.images import pil_to_tensor
from featinv.inversion.load import (decode, encode, extractor_for, fit_sides, load_decoder, prepare,
                               work_size)
from featinv.representation.layout import GridLayout, VectorLayout
from helpers import run_cli as run


def photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth random RGB picture (structure at about 8 px) written as PNG."""
    rng = np.random.default_rng(seed)
    coarse = (rng.random((height // 8 + 2, width // 8 + 2, 3)) * 255).astype(np.uint8)
    Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(path)
    return path


def png(path) -> torch.Tensor:
    with Image.open(path) as img:
        return pil_to_tensor(img.convert("RGB"))


def as_8bit(image: torch.Tensor) -> torch.Tensor:
    """What ``save_png`` writes, read back."""
    return image.clamp(0, 1).mul(255).round().div(255)


# --- sizes ------------------------------------------------------------------------------------

def test_work_size_keeps_the_image_and_caps_the_longer_side():
    assert work_size(200, 150, None, 1024) == (200, 150)  # native: as is
    assert work_size(200, 150, 128, 1024) == (171, 128)   # the shorter side to 128
    assert work_size(3000, 200, None, 1024) == (1024, 68)  # the cap wins, aspect kept
    assert work_size(200, 3000, None, 1024) == (68, 1024)
    assert work_size(3000, 200, 128, 1024) == (1024, 68)  # 1920x128, then the cap
    assert work_size(3000, 200, None, 2000) == (2000, 133)
    assert work_size(3000, 200, None, None) == (3000, 200)


@pytest.mark.slow
def test_invert_writes_at_the_input_size_by_default(tmp_path, capsys):
    src = photo(tmp_path / "p.png", 200, 150)
    code, stdout, err = run(capsys, "invert", "-f", "hog", src, "-o", tmp_path / "out")
    assert code == 0, err
    with Image.open(stdout.strip()) as img:
        assert img.size == (200, 150)
    (api,) = featinv.invert([src], feature="hog")
    assert api.shape == (3, 150, 200)
    assert torch.equal(png(stdout.strip()), as_8bit(api))


@pytest.mark.slow
def test_size_128_is_the_previous_default(tmp_path, capsys):
    """--size 128 equals the API at size=128 and, where the cells divide the sides, the
    previous pipeline (resize to 128, features, decoder) exactly."""
    wide = photo(tmp_path / "wide.png", 200, 150)
    square = photo(tmp_path / "square.png", 160, 160, seed=1)
    code, stdout, err = run(capsys, "invert", "-f", "lbp", wide, square, "--size", "128",
                            "-o", tmp_path / "out")
    assert code == 0, err
    out_wide, out_square = stdout.split()
    api_wide, api_square = featinv.invert([wide, square], feature="lbp", size=128)
    assert api_wide.shape == (3, 128, 171) and api_square.shape == (3, 128, 128)
    assert torch.equal(png(out_wide), as_8bit(api_wide))
    decoder = load_decoder("lbp")
    x = prepare(square, 128)[None]
    old = decode(decoder, encode(extractor_for(decoder), decoder, x), (128, 128))[0]
    assert torch.equal(png(out_square), as_8bit(old))


@pytest.mark.slow
@pytest.mark.parametrize("name,padded", [("hog", (104, 136)), ("sift", (100, 132)),
                                         ("lbp", (112, 144))])
def test_sides_the_cells_do_not_divide_are_padded_and_cropped_back(tmp_path, name, padded):
    src = photo(tmp_path / "odd.png", 131, 97)
    decoder = load_decoder(name)
    extractor = extractor_for(decoder)
    assert fit_sides(extractor, decoder, 97, 131) == padded
    assert fit_sides(extractor, decoder, *padded) == padded  # accepted sides stay as they are
    (y,) = featinv.invert([src], feature=name)
    assert y.shape == (3, 97, 131) and torch.isfinite(y).all()
    # the crop of the padded reconstruction, not a stretched one: the top-left pixels agree
    # with the decoder's output on the padded image
    x = prepare(src, None)[None]
    pad = torch.nn.functional.pad(x, (0, padded[1] - 131, 0, padded[0] - 97), mode="reflect")
    full = decode(decoder, encode(extractor, decoder, pad), padded)[0]
    assert torch.allclose(y, full[:, :97, :131], atol=1e-5)


def test_too_small_images_are_still_refused(tmp_path, capsys):
    src = photo(tmp_path / "tiny.png", 12, 40)
    code, _, err = run(capsys, "invert", "-f", "lbp", src, "-o", tmp_path / "out")
    assert code == 1 and "too small" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_advice_for_a_thin_image_works(tmp_path, capsys):
    """Round 10: a 1x600 px image was 'too small ... e.g. 4' (its sides printed as 600x1 without
    saying which is which), and
    --size 4 then failed again: its longer side, 2400 px, is capped to 1024 px, which leaves 1 px.
    The advice names the --max-side it needs, and following it works."""
    src = photo(tmp_path / "thin.png", 1, 600)
    code, _, err = run(capsys, "invert", "-f", "hog", src, "-o", tmp_path / "a.png")
    assert code == 1 and "at 1x600 px (width x height) the image is too small" in err
    assert "e.g. --size 4, with --max-side 2400 or more" in err
    code, _, err = run(capsys, "invert", "-f", "hog", src, "--size", "4", "--max-side", "2400",
                       "-o", tmp_path / "b.png")
    assert code == 0, err


@pytest.mark.parametrize("feature, side, width, advice", [
    ("sift", 8, 1000, "crop it to a less elongated shape (it is 1000:1; at most 512:1 can be "
     "used)."),  # --max-side 8000 was advised: the CLI refuses over 4096
    ("squeezenet.conv1", 9, 600, "crop it to a less elongated shape (it is 600:1; at most 455:1 "
     "can be used)."),  # a network's layout: no advice at all
    ("squeezenet.conv1", 9, 300, "invert it at a larger size, e.g. --size 9, with "
     "--max-side 2700 or more: at 9 px its longer side is 2700 px; or crop it."),
])
def test_thin_image_advice_can_be_followed(tmp_path, capsys, feature, side, width, advice):
    """Round 12 D9: every representation's 'too small' says what to do, and never advises a
    --max-side over the 4096 the CLI accepts."""
    src = photo(tmp_path / "thin.png", 1, width)
    code, _, err = run(capsys, "invert", "-f", feature, src, "-o", tmp_path / "a.png")
    assert code == 1 and f"needs at least {side}x{side} px; {advice}" in err, err
    assert "Traceback" not in err


def test_too_small_names_the_size_worked_at_not_the_files(tmp_path, capsys):
    """Round 12 D9: '--size 9 --max-side 4096' on a 1000x1 px file named 4096x4 px as if it were
    the file's size."""
    src = photo(tmp_path / "thin.png", 1, 1000)
    code, _, err = run(capsys, "invert", "-f", "squeezenet.conv1", src, "--size", "9",
                       "--max-side", "4096", "-o", tmp_path / "a.png")
    assert code == 1 and "at 4x4096 px (width x height) the image is too small" in err
    assert "image of 4x4096" not in err


def test_extract_gives_the_same_advice(tmp_path, capsys):
    src = photo(tmp_path / "thin.png", 1, 600)
    code, _, err = run(capsys, "extract", "-f", "hog", src, "-o", tmp_path / "f.npz")
    assert code == 1 and "extract it at a larger size, e.g. --size 4, with " \
        "--max-side 2400 or more" in err, err


@pytest.mark.slow
def test_the_longer_side_is_capped(tmp_path, capsys):
    src = photo(tmp_path / "strip.png", 3000, 200)
    code, stdout, err = run(capsys, "invert", "-f", "hog", src, "-o", tmp_path / "a.png")
    assert code == 0, err
    with Image.open(tmp_path / "a.png") as img:
        assert img.size == (1024, 68)
    code, stdout, err = run(capsys, "invert", "-f", "hog", src, "--max-side", "1500",
                            "-o", tmp_path / "b.png")
    assert code == 0, err
    with Image.open(tmp_path / "b.png") as img:
        assert img.size == (1500, 100)


@pytest.mark.parametrize("value", ["0", "5000", "big"])
def test_bad_max_side_is_a_usage_error(tmp_path, capsys, value):
    src = photo(tmp_path / "p.png", 40, 40)
    code, _, err = run(capsys, "invert", "-f", "hog", src, "--max-side", value,
                       "-o", tmp_path / "out")
    assert code == 2 and "--max-side" in err and "Traceback" not in err


def test_api_refuses_bad_sizes_in_one_line():
    with pytest.raises(featinv.FeatinvError, match="max_side 0"):
        featinv.invert([torch.rand(3, 32, 32)], feature="hog", max_side=0)
    with pytest.raises(featinv.FeatinvError, match="size 99999"):
        featinv.invert([torch.rand(3, 32, 32)], feature="hog", size=99999)


# --- vector layouts -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vector_checkpoint(tmp_path_factory) -> Path:
    """A small untrained decoder for alexnet.fc8 (random weights) at 227 px."""
    extractor = featinv.get_feature("alexnet.fc8", weights="random")
    decoder = build_decoder(extractor.spec, VectorLayout(1000), 227, preset="compact", width=0.05)
    path = tmp_path_factory.mktemp("vector") / "fc8.safetensors"
    return save_decoder(decoder, path, decoder_metadata(extractor, decoder))


@pytest.mark.slow
def test_vector_layouts_keep_their_training_size(vector_checkpoint, tmp_path, capsys):
    src = photo(tmp_path / "p.png", 200, 150)
    code, stdout, err = run(capsys, "invert", "-c", vector_checkpoint, src, "-o", tmp_path / "out")
    assert code == 0, err
    with Image.open(stdout.strip()) as img:
        assert img.size == (303, 227)  # shorter side at the training size, as before
    decoder = load_decoder(vector_checkpoint)
    assert decoder.output_factor() is None
    assert fit_sides(extractor_for(decoder), decoder, 150, 200) == (150, 200)


# --- decoders at grid sizes other than the training one ------------------------------------

@pytest.mark.parametrize("preset", ["residual", "residual_fine", "compact"])
@pytest.mark.parametrize("layout", [GridLayout(31, 16, 16), GridLayout(133, 32, 32, sparse=True),
                                    GridLayout(58, 8, 8)])
@pytest.mark.parametrize("grid", [(5, 7), (9, 13), (17, 4)])
def test_decoders_reconstruct_any_grid_exactly(preset, layout, grid):
    """Every built-in family turns an (h, w) grid into exactly (r*h, r*w) pixels."""
    spec = featinv.get_spec("sift" if layout.sparse else "hog")
    decoder = build_decoder(spec, layout, 128, preset=preset, width=0.05).eval()
    r = decoder.output_factor()
    assert r == 128 // layout.height
    with torch.no_grad():
        y = decoder(torch.randn(1, layout.channels, *grid))
    assert tuple(y.shape) == (1, 3, r * grid[0], r * grid[1])


# --- evaluate at the photos' own size ----------------------------------------------------------

@pytest.mark.slow
def test_evaluate_native_is_the_photos_own_side(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    for i in range(3):
        photo(tmp_path / "data" / f"p{i}.png", 72, 48, seed=i)
    code, stdout, err = run(capsys, "evaluate", "-f", "hog", "--data", tmp_path / "data",
                            "--image-size", "native", "--comparator", "none", "--json")
    assert code == 0, err
    native = json.loads(stdout)
    assert native["image_size"] == 48 and native["n_images"] == 3
    code, stdout, err = run(capsys, "evaluate", "-f", "hog", "--data", tmp_path / "data",
                            "--image-size", "48", "--comparator", "none", "--json")
    assert json.loads(stdout)["normalized_error"] == native["normalized_error"]
    code, stdout, err = run(capsys, "evaluate", "-f", "hog", "--data", tmp_path / "data",
                            "--comparator", "none", "--json")  # the default stays 128 px
    assert json.loads(stdout)["image_size"] == 128


def test_evaluate_native_refuses_mixed_sides_in_one_line(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    photo(tmp_path / "data" / "a.png", 64, 48)
    photo(tmp_path / "data" / "b.png", 64, 40)
    code, _, err = run(capsys, "evaluate", "-f", "hog", "--data", tmp_path / "data",
                       "--image-size", "native")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "40 px" in err and "48 px" in err and "--image-size N" in err
    code, _, err = run(capsys, "evaluate", "-f", "hog", "--data", tmp_path / "data",
                       "--image-size", "nativ")
    assert code == 2 and "nor 'native'" in err
