"""Pictures of features: each representation's view, the generic view, and `featinv show-features`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

import featinv
from featinv.cli.main import cli
from featinv.errors import ShapeError
from featinv.features.sift import grid_keypoints
from featinv.representation.layout import FixedVector
from featinv.representation.spec import Extractor, FeatureSpec
from featinv.analysis.visualize import generic_view, pca_rgb, show_features
from featinv.features.drawing import GAP, upscale
from helpers import run_cli as run


def blobs(height: int = 64, width: int = 80) -> torch.Tensor:
    """A grey ``(3, H, W)`` image with a few dark and bright Gaussian blobs (SIFT finds them)."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    img = np.full((height, width), 0.5)
    for cx, cy, r, sign in ((20, 20, 4, 1), (55, 40, 6, -1), (60, 15, 3, 1), (25, 48, 5, -1)):
        img += sign * 0.4 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    rgb = np.stack([img, img * 0.9, img * 0.8])
    return torch.from_numpy(rgb).float().clamp(0, 1)


# a 64 x 80 image is upscaled 4x (shorter side 256 px); views beside it add a 4 px gap
SIDE_BY_SIDE = (256, 2 * 320 + GAP, 3)


@pytest.mark.parametrize("name, shape", [("hog", SIDE_BY_SIDE), ("lbp", SIDE_BY_SIDE),
                                         ("sift", (256, 320, 3)), ("dct", SIDE_BY_SIDE)])
def test_each_builtin_draws_a_finite_picture_in_range(name, shape):
    picture = show_features(featinv.get_feature(name), blobs())
    assert picture.shape == shape and picture.dtype == np.float32
    assert np.isfinite(picture).all() and picture.min() >= 0 and picture.max() <= 1
    assert picture.std() > 0.05  # not blank


def test_dct_has_no_visualize_so_the_generic_view_is_used():
    image = blobs()
    extractor = featinv.get_feature("dct")
    assert extractor.spec.visualize is None
    features = extractor(image[None])[0].numpy()
    expected = generic_view(image.permute(1, 2, 0).numpy(), features)
    np.testing.assert_allclose(show_features(extractor, image), expected, atol=1e-6)


def _stroke_energy(picture: np.ndarray) -> tuple[float, float]:
    """Summed |change| of the glyph panel across columns (x) and across rows (y)."""
    panel = picture[:, 256 + GAP:, 0]
    return (float(np.abs(np.diff(panel, axis=1)).sum()),
            float(np.abs(np.diff(panel, axis=0)).sum()))


# a vertical gradient (90 degrees) is a bin of its own only for an even number of orientations
@pytest.mark.parametrize("vertical, orientations", [(True, 9), (False, 8)])
def test_hog_glyph_strokes_run_along_a_single_edge(vertical, orientations):
    step = torch.zeros(3, 64, 64)
    if vertical:
        step[:, :, 32:] = 1.0
    else:
        step[:, 32:, :] = 1.0
    hog = featinv.get_feature("hog", num_orientations=orientations)
    across_x, across_y = _stroke_energy(show_features(hog, step))
    # a vertical stroke changes from column to column but hardly from row to row
    if vertical:
        assert across_x > 5 * across_y
    else:
        assert across_y > 5 * across_x


def test_hog_glyph_follows_parameters():
    picture = show_features(featinv.get_feature("hog", cell_size=4, num_orientations=6), blobs())
    assert picture.shape == SIDE_BY_SIDE


def test_sift_picture_marks_keypoints_and_leaves_the_rest():
    image = blobs()
    extractor = featinv.get_feature("sift")
    frames = grid_keypoints(extractor(image[None])[0].numpy())
    assert len(frames) >= 2
    picture = show_features(extractor, image)
    changed = np.abs(picture - upscale(image.permute(1, 2, 0).numpy(), 4)).max(-1) > 0.05
    x, y, sigma, angle = frames.T
    cx, cy, r = x * 4 + 1.5, y * 4 + 1.5, np.maximum(8 * sigma, 2)
    # where the orientation line meets the circle, the picture is drawn over
    for px, py in zip(cx + r * np.cos(angle), cy + r * np.sin(angle)):
        row, col = int(round(py)), int(round(px))
        if 0 <= row < 256 and 0 <= col < 320:
            assert changed[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].any()
    # far from every keypoint, the picture is the image itself
    rows, cols = np.mgrid[:256, :320]
    distance = np.min([np.hypot(cols - a, rows - b) for a, b in zip(cx, cy)], axis=0)
    far = distance > r.max() + 5  # the outline is 3 px wide, plus anti-aliasing
    assert far.any() and not changed[far].any()


def test_lbp_picture_shows_a_textured_cell_brighter_than_a_flat_one():
    image = torch.full((3, 64, 64), 0.5)
    image[:, :32, :32] = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
    picture = show_features(featinv.get_feature("lbp"), image)
    panel = picture[:, 256 + GAP:]
    textured, flat = panel[:128, :128], panel[128:, 128:]
    assert textured.std() > 0.1
    # a constant image codes every pixel as flat: a grey disc, no colour
    assert np.allclose(flat[..., 0], flat[..., 1]) and np.allclose(flat[..., 1], flat[..., 2])


def _spec(name: str, layout, visualize=None) -> FeatureSpec:
    return FeatureSpec(name=name, description="test", input="gray", differentiable=True,
                       build=lambda: nn.Identity(), rule=lambda: layout, visualize=visualize)


class _Mean(nn.Module):
    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return gray.mean((2, 3)).repeat(1, 5) * torch.arange(5.0)


def test_generic_view_of_a_vector_is_a_strip_under_the_image():
    extractor = Extractor(_spec("vec", FixedVector(5)), {}, _Mean())
    picture = show_features(extractor, blobs(32, 40))
    assert picture.shape == (256 + GAP + 32, 320, 3)
    strip = picture[-32:, :, 0]
    assert strip[:, 0].max() < strip[:, -1].min()  # values grow left to right


def test_pca_colours_follow_the_dominant_variation():
    features = np.zeros((5, 4, 6), np.float32)
    features[2] = np.arange(6)[None, :]  # varies along x only
    colours = pca_rgb(features)
    assert colours.shape == (4, 6, 3)
    first = colours[..., 0]
    assert np.allclose(first, first[:1]) and np.all(np.diff(first[0]) > 0)


def test_bad_inputs_and_bad_pictures_are_shape_errors():
    hog = featinv.get_feature("hog")
    with pytest.raises(ShapeError, match=r"\(3, H, W\)"):
        show_features(hog, torch.rand(1, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"\[0, 1\]"):
        show_features(hog, torch.rand(3, 32, 32) * 2)
    with pytest.raises(ShapeError, match="too small"):
        show_features(featinv.get_feature("lbp"), torch.rand(3, 8, 8))
    broken = Extractor(_spec("broken", FixedVector(5), lambda image, features: np.zeros((4, 4))),
                       {}, _Mean())
    with pytest.raises(ShapeError, match="broken's visualize.*expected \\(H, W, 3\\)"):
        show_features(broken, blobs(32, 40))


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rgb = blobs().permute(1, 2, 0).numpy()
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


def test_cli_writes_the_picture(photo, tmp_path):
    out = tmp_path / "pics" / "hog.png"
    result = CliRunner().invoke(cli, ["show-features", "-f", "hog", str(photo), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    with Image.open(out) as img:
        assert img.size == (SIDE_BY_SIDE[1], SIDE_BY_SIDE[0]) and img.mode == "RGB"


def test_cli_size_and_params(photo, tmp_path):
    out = tmp_path / "lbp.png"
    result = CliRunner().invoke(cli, ["show-features", "--feature", "lbp", str(photo), "--out",
                                      str(out), "--size", "100", "-p", "cell_size=8"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:  # 125 x 100 px, upscaled 3x
        assert img.size == (2 * 375 + GAP, 300)


@pytest.mark.parametrize("case, message", [("missing", "no such file"),
                                           ("unknown", "Unknown feature 'hgo'"),
                                           ("small", "at 12x12 px (width x height) the image is "
                                                     "too small: lbp (layout")])
def test_cli_bad_input_is_one_line(capsys, tmp_path, photo, case, message):
    image, feature = str(photo), "lbp"
    if case == "missing":
        image = str(tmp_path / "nope.png")
    elif case == "unknown":
        feature = "hgo"
    else:
        image = str(tmp_path / "small.png")
        Image.new("RGB", (12, 12)).save(image)
    code, out, err = run(capsys, "show-features", "-f", feature, image, "-o",
                         str(tmp_path / "x.png"))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("Error: ") and message in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("width, height, args, advice", [
    (600, 1, [], "show it at a larger size, e.g. --size 4, with --max-side 2400"),
    (1000, 1, ["--size", "4"], "use --max-side 4000 or more"),
    (1000, 1, ["--size", "4", "--max-side", "4096"], None),   # following the advice works
    (4096, 4, ["--max-side", "4096"], None),
])
def test_thin_images_get_advice_that_works_and_a_bounded_drawing(tmp_path, capsys, width, height,
                                                                   args, advice):
    """Round 13 N5: show-features advised only '--size 4 or more', and following the advice to
    its end scaled a 4096x4 px strip 64 times: over 4 GB (now at most MAX_DISPLAY_PIXELS)."""
    from featinv.features.drawing import MAX_DISPLAY_PIXELS

    image = tmp_path / "strip.png"
    Image.new("RGB", (width, height), (90, 120, 200)).save(image)
    out = tmp_path / "x.png"
    code, _, err = run(capsys, "show-features", "-f", "hog", str(image), *args, "-o", str(out))
    if advice:
        assert code == 1 and advice in err and "Traceback" not in err, err
        return
    assert code == 0, err
    with Image.open(out) as img:
        assert img.width * img.height <= 2 * MAX_DISPLAY_PIXELS + 1_000_000


def test_the_display_scale_is_bounded_by_pixels_not_only_by_sides():
    from featinv.features.drawing import MAX_DISPLAY_PIXELS, display_scale

    assert display_scale(64, 80) == 4 and display_scale(160, 213, cell=8, min_cell=16) == 2
    s = display_scale(4, 4096, cell=8, min_cell=16)
    assert 1 <= s < 64 and 4 * 4096 * s * s <= MAX_DISPLAY_PIXELS
    assert display_scale(4096, 4096) == 1
