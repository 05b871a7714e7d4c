"""The on-disk feature cache: computed once, read back memory-mapped, invalidated by any change."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import featinv
from featinv.datasets.folders import TrainImages, crop_plan, scan_folder
from featinv.errors import FeatinvError
from featinv.datasets.feature_cache import FeatureCache
from featinv.training.loop import TrainConfig, train

from helpers import write_images


class Counting:
    """An extractor wrapper that counts the images it computes features for."""

    def __init__(self, extractor):
        self.extractor, self.images = extractor, 0

    def __call__(self, x):
        self.images += x.shape[0]
        return self.extractor(x)


@pytest.fixture
def lbp():
    return featinv.get_feature("lbp")


def images(n=4, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_features_are_computed_once_and_read_back(tmp_path, lbp):
    x, names = images(), ["a", "b", "c", "d"]
    counting = Counting(lbp)
    cache = FeatureCache(tmp_path, lbp, 32, dtype="float32")
    first = cache.features(names, x, counting)
    again = cache.features(names, x, counting)
    assert counting.images == 4 and cache.hits == 4 and cache.misses == 4
    torch.testing.assert_close(again, lbp(x), rtol=0, atol=0)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    # a mix of cached and new names computes only the new ones, in the right places
    mixed = cache.features(["c", "e", "a"], x[[2, 0, 0]], counting)
    assert counting.images == 5
    torch.testing.assert_close(mixed, lbp(x[[2, 0, 0]]), rtol=0, atol=0)


def test_cache_persists_between_runs_and_float16_is_close(tmp_path, lbp):
    x = images()
    cache = FeatureCache(tmp_path, lbp, 32)  # float16 by default
    cache.features(list("abcd"), x, lbp)
    cache.flush()
    counting = Counting(lbp)
    reopened = FeatureCache(tmp_path, lbp, 32)
    read = reopened.features(list("abcd"), x, counting)
    assert counting.images == 0 and len(reopened) == 4
    torch.testing.assert_close(read, lbp(x), rtol=1e-3, atol=1e-3)


def test_changed_parameters_or_size_start_a_fresh_cache(tmp_path, lbp):
    x = images()
    cache = FeatureCache(tmp_path, lbp, 32)
    cache.features(list("abcd"), x, lbp)
    cache.flush()
    other = featinv.get_feature("lbp", cell_size=8)
    assert len(FeatureCache(tmp_path, other, 32)) == 0
    assert len(FeatureCache(tmp_path, lbp, 64)) == 0
    assert len(FeatureCache(tmp_path, lbp, 32, dtype="float32")) == 0
    assert len(FeatureCache(tmp_path, lbp, 32)) == 4
    metas = [json.loads(p.read_text()) for p in tmp_path.glob("*/meta.json")]
    assert {m["params"]["cell_size"] for m in metas} == {8, lbp.params["cell_size"]}


def test_unindexed_records_of_a_killed_writer_are_cut(tmp_path, lbp):
    x = images()
    cache = FeatureCache(tmp_path, lbp, 32, dtype="float32")
    cache.features(["a", "b"], x[:2], lbp)
    cache.flush()
    cache.features(["c"], x[2:3], lbp)  # appended, never indexed: as if killed here
    with open(next(tmp_path.glob("*/writer0.bin")), "ab") as f:
        f.write(b"\0" * 7)  # and a torn partial record
    reopened = FeatureCache(tmp_path, lbp, 32, dtype="float32")
    assert len(reopened) == 2 and "c" not in reopened
    got = reopened.features(["c", "a"], x[[2, 0]], lbp)
    torch.testing.assert_close(got, lbp(x[[2, 0]]), rtol=0, atol=0)


def test_writers_see_each_others_features_after_refresh(tmp_path, lbp):
    x = images()
    rank0 = FeatureCache(tmp_path, lbp, 32, writer=0)
    rank1 = FeatureCache(tmp_path, lbp, 32, writer=1)
    rank1.features(["a", "b"], x[:2], lbp)
    rank1.flush()
    assert "a" not in rank0
    rank0.refresh()
    counting = Counting(lbp)
    rank0.features(["a", "b", "c"], x[:3], counting)
    assert counting.images == 1


def test_float16_overflow_is_refused(tmp_path, lbp):
    cache = FeatureCache(tmp_path, lbp, 32)
    with pytest.raises(FeatinvError, match="float32"):
        cache.features(["a"], images(1), lambda x: lbp(x) * 1e6)


def _names(folder, draw):
    """The cache names training gives each image's crop in ``draw`` (digest of the bytes, crop)."""
    images = TrainImages(scan_folder(folder), None, with_names=True)
    names = []
    for i in range(len(images)):
        _, img, digest = images[i]
        names.append(f"{digest}@{crop_plan(0, draw, i, img.shape[2], img.shape[1], (1.0, 1.0)).name()}")
    return names


def test_names_follow_file_content_and_crop(tmp_path):
    paths = write_images(tmp_path / "data", 3)
    first, second = _names(tmp_path / "data", 0), _names(tmp_path / "data", 1)
    assert first == _names(tmp_path / "data", 0) and first != second  # crops differ per draw
    paths[0].rename(tmp_path / "data" / "renamed.png")  # a renamed file keeps its digest...
    digests = {n.split("@")[0] for n in _names(tmp_path / "data", 0)}
    assert {n.split("@")[0] for n in first} == digests
    write_images(tmp_path / "other", 1, seed=5)[0].replace(tmp_path / "data" / "renamed.png")
    assert {n.split("@")[0] for n in _names(tmp_path / "data", 0)} != digests  # ...an edited one not


@pytest.mark.slow
def test_training_with_a_warm_cache_gives_the_same_decoder(tmp_path):
    write_images(tmp_path / "data", 16)
    common = dict(feature="lbp", data=str(tmp_path / "data"), val=str(tmp_path / "data"),
                  image_size=32, epochs=3, batch_size=8, workers=0, device="cpu", val_limit=8,
                  feature_cache=str(tmp_path / "cache"), cache_variants=2, cache_dtype="float32",
                  val_every=1)
    cold = train(TrainConfig(out=str(tmp_path / "cold"), **common), log=lambda m: None)
    # epoch 3 reuses epoch 1's crops, validation reuses epoch 1's (and, with these small images,
    # a few crops of epoch 2 happen to equal epoch 1's)
    assert cold["cache_hit_rate"] >= (16 + 8) / (48 + 16)
    warm = train(TrainConfig(out=str(tmp_path / "warm"), **common), log=lambda m: None)
    assert warm["cache_hit_rate"] == 1.0
    a = load_file(str(tmp_path / "cold" / "decoder.safetensors"))
    b = load_file(str(tmp_path / "warm" / "decoder.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.isclose(cold["val_normalized_error"], warm["val_normalized_error"])


def test_cache_refuses_encoder_finetuning(tmp_path):
    write_images(tmp_path / "data", 4)
    cfg = TrainConfig(feature="lbp", data=str(tmp_path / "data"), out=str(tmp_path / "o"),
                      image_size=32, epochs=1, workers=0, device="cpu", finetune_encoder=True,
                      feature_cache=str(tmp_path / "cache"))
    with pytest.raises(FeatinvError, match="feature_cache cannot be used with finetune_encoder"):
        train(cfg, log=lambda m: None)


def test_two_runs_sharing_a_cache_folder_keep_their_own_records(tmp_path, lbp):
    """Round 7: two training runs given one --feature-cache both appended to writer0.bin, each
    counting records from its own view; the index written last pointed names at the other
    run's records (features of other crops), read later without a word. A run now takes the
    first writer number no live process holds (writer<r>.lock)."""
    xa, xb = images(2, seed=1), images(2, seed=2)
    a = FeatureCache(tmp_path, lbp, 32, dtype="float32")
    b = FeatureCache(tmp_path, lbp, 32, dtype="float32")  # another run, at the same time
    assert (a.writer, b.writer) == (0, 1)
    a.features(["a1", "a2"], xa, lbp)
    b.features(["b1", "b2"], xb, lbp)
    a.flush(), b.flush()
    later = FeatureCache(tmp_path, lbp, 32, dtype="float32")
    assert later.writer == 2
    got = later.features(["a1", "a2", "b1", "b2"], torch.zeros(4, 3, 32, 32), lbp)
    assert later.hits == 4
    torch.testing.assert_close(got, lbp(torch.cat([xa, xb])), rtol=0, atol=0)
    a.close(), b.close(), later.close()
    assert FeatureCache(tmp_path, lbp, 32, dtype="float32").writer == 0  # released
