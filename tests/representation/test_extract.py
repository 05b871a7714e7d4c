"""``featinv extract``: features plus layout metadata in an .npz, reports, and bad input."""
import json

import numpy as np
import pytest
import torch

import featinv
from helpers import write_images
from featinv.errors import FeatinvError
from featinv.representation.extract import load_features
from featinv.io.images import load_image
from helpers import run_cli as run


def test_same_size_images_are_stacked_and_equal_the_extractor(capsys, tmp_path):
    paths = write_images(tmp_path / "imgs", 3, size=(40, 48))
    code, out, err = run(capsys, "extract", "-f", "hog", "-p", "cell_size=4", str(tmp_path / "imgs"),
                         "-o", str(tmp_path / "f.npz"))
    assert code == 0 and "3 images" in out
    feats, meta = load_features(tmp_path / "f.npz")
    assert meta["stacked"] and meta["feature"]["params"]["cell_size"] == 4
    assert [im["layout"]["height"] for im in meta["images"]] == [12] * 3
    with np.load(tmp_path / "f.npz") as data:
        assert data["features"].shape == (3, 31, 12, 10)
    hog = featinv.get_feature("hog", cell_size=4)
    for path, f in zip(paths, feats):
        expected = hog(load_image(path)[None])[0].numpy()
        np.testing.assert_allclose(f, expected, atol=1e-6)


def test_mixed_sizes_give_one_array_per_image_and_size_option_stacks(capsys, tmp_path):
    write_images(tmp_path / "a", 1, size=(40, 48))
    write_images(tmp_path / "b", 1, size=(64, 32), seed=1)
    code, _, _ = run(capsys, "extract", "-f", "lbp", str(tmp_path / "a"), str(tmp_path / "b"),
                     "-o", str(tmp_path / "mixed.npz"))
    feats, meta = load_features(tmp_path / "mixed.npz")
    assert code == 0 and not meta["stacked"]
    assert [f.shape for f in feats] == [(58, 3, 2), (58, 2, 4)]
    code, _, _ = run(capsys, "extract", "-f", "lbp", str(tmp_path / "a"), str(tmp_path / "b"),
                     "--size", "32", "--crop", "-o", str(tmp_path / "crop.npz"))
    feats, meta = load_features(tmp_path / "crop.npz")
    assert code == 0 and meta["stacked"] and [f.shape for f in feats] == [(58, 2, 2)] * 2


def test_sift_reports_keypoints(capsys, tmp_path):
    write_images(tmp_path / "imgs", 2, size=(96, 96))
    code, _, err = run(capsys, "extract", "-f", "sift", str(tmp_path / "imgs"),
                       "-o", str(tmp_path / "s.npz"))
    feats, meta = load_features(tmp_path / "s.npz")
    assert code == 0 and "keypoints" in err
    assert len(meta["report"]["keypoints"]) == 2
    for f, n in zip(feats, meta["report"]["cells_filled"]):
        assert int((np.abs(f[:128]).sum(0) > 0).sum()) == n


def test_bad_files_are_reported_and_the_rest_saved(capsys, tmp_path):
    write_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG not really")
    write_images(tmp_path / "tiny", 1, size=(3, 3))
    code, out, err = run(capsys, "extract", "-f", "hog", str(tmp_path / "imgs"),
                         str(tmp_path / "tiny"), "-o", str(tmp_path / "f.npz"))
    assert code == 1
    assert "broken.png" in err and "too small" in err and "2 of 4 images failed" in err
    assert len(load_features(tmp_path / "f.npz")[0]) == 2


def test_all_failing_writes_nothing(capsys, tmp_path):
    code, _, err = run(capsys, "extract", "-f", "hog", str(tmp_path / "nope.png"),
                       "-o", str(tmp_path / "f.npz"))
    assert code == 1 and "every image failed" in err and not (tmp_path / "f.npz").exists()


def test_load_refuses_foreign_and_pickled_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(FeatinvError, match="not a readable featinv features file"):
        load_features(tmp_path / "other.npz")
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"format": "featinv-features"}], dtype=object))
    with pytest.raises(FeatinvError, match="not a readable"):
        load_features(tmp_path / "pickled.npz")
    meta = np.array(json.dumps({"format": "featinv-features", "stacked": True, "images": []}))
    np.savez(tmp_path / "nofeatures.npz", meta=meta)
    with pytest.raises(FeatinvError):
        load_features(tmp_path / "nofeatures.npz")


def test_crop_needs_size(capsys, tmp_path):
    code, _, err = run(capsys, "extract", "-f", "hog", "x.png", "--crop", "-o", "f.npz")
    assert code == 2 and "--crop needs --size" in err


def test_extract_on_cpu_tensor_device(tmp_path):
    from featinv.representation.extract import extract_files

    write_images(tmp_path / "imgs", 1)
    result = extract_files(featinv.get_feature("lbp"), [tmp_path / "imgs" / "img000.png"],
                           device=torch.device("cpu"))
    assert result.stacked().shape == (1, 58, 2, 3)
