"""``backend="vlfeat"`` of hog and lbp: VLFeat's C library through the same extractor API.

The torch implementations must equal it on real photos and on random images of odd sizes. Without
libvlfeat1 these tests skip (saying why), except the one that checks the error message.
"""
import pytest
import torch

import featinv
from featinv.features import vlfeat
from featinv.errors import FeatinvError
from featinv.io.images import load_image
from helpers import needs_libvl, photo_like

FEATURES = [("hog", {}), ("hog", {"cell_size": 4, "num_orientations": 6}), ("lbp", {}),
            ("lbp", {"cell_size": 8})]


def _pair(name, params):
    return (featinv.get_feature(name, **params),
            featinv.get_feature(name, backend="vlfeat", **params))


@needs_libvl
@pytest.mark.parametrize("name, params", FEATURES)
@pytest.mark.parametrize("size", [(99, 131), (17, 200), (64, 64)])
def test_torch_equals_vlfeat_on_random_odd_sizes(name, params, size):
    ours, theirs = _pair(name, params)
    g = torch.Generator().manual_seed(size[0])
    images = torch.stack([torch.rand(3, *size, generator=g),
                          torch.from_numpy(photo_like(*size, seed=3)).expand(3, -1, -1)])
    a, b = ours(images), theirs(images)
    assert a.shape == b.shape
    assert (a - b).abs().max() <= 1e-5


@pytest.mark.slow
@needs_libvl
@pytest.mark.parametrize("name, params", FEATURES[::2])
def test_torch_equals_vlfeat_on_photos(name, params, shared_dir):
    photos = sorted((shared_dir / "data" / "val").glob("*.jpg"))[:4]
    ours, theirs = _pair(name, params)
    for photo in photos:
        image = load_image(photo)[None]  # full size, e.g. 160 x 213
        assert (ours(image) - theirs(image)).abs().max() <= 1e-5, photo.name


@needs_libvl
def test_vlfeat_backend_keeps_the_input_device_and_dtype():
    out = featinv.get_feature("lbp", backend="vlfeat")(torch.rand(2, 3, 32, 48, dtype=torch.float64))
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (2, 58, 2, 3)


@pytest.mark.parametrize("name", ["hog", "lbp", "sift"])
def test_missing_library_is_one_clear_error(name, monkeypatch):
    monkeypatch.setattr(vlfeat, "_load", lambda: (None, "libvl.so.1: cannot open shared object"))
    with pytest.raises(FeatinvError, match="apt-get install libvlfeat1") as info:
        featinv.get_feature(name, backend="vlfeat")
    assert "\n" not in str(info.value)
    assert "not available" in featinv.get_spec(name).to_json()["backends"]["vlfeat"]


def test_describe_lists_backends(monkeypatch):
    from click.testing import CliRunner

    from featinv.cli.main import cli

    result = CliRunner().invoke(cli, ["describe", "hog"])
    assert result.exit_code == 0
    assert "backends (-p backend=NAME):" in result.output
    expected = "VLFeat 0.9" if vlfeat.available() else "apt-get install libvlfeat1"
    assert expected in result.output


@pytest.mark.parametrize("value", ["/dev/zero", "/nonexistent/libvl.so"])
def test_a_vlfeat_lib_that_cannot_be_loaded_is_reported_not_passed_over(value, monkeypatch):
    """Round 7: VLFEAT_LIB naming no library (a typo, /dev/zero) was passed over for the
    system's libvl without a word; the backend ran on another library than the one asked for."""
    monkeypatch.setenv("VLFEAT_LIB", value)
    vlfeat._load.cache_clear()
    try:
        with pytest.raises(FeatinvError, match=r"\$VLFEAT_LIB=.*unset it") as info:
            featinv.get_feature("hog", backend="vlfeat")
        assert "\n" not in str(info.value) and value in str(info.value)
        assert not vlfeat.available()
    finally:
        monkeypatch.delenv("VLFEAT_LIB")
        vlfeat._load.cache_clear()
