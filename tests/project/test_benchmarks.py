"""Smoke test of benchmarks/extraction.py: its --quick mode on two tiny generated images."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featinv.features import vlfeat
from helpers import REPO

SCRIPT = REPO / "benchmarks" / "extraction.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_extraction", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_images(folder: Path, n: int = 2) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        coarse = (rng.random((5, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((44, 36), Image.BICUBIC).save(folder / f"img{i}.png")


def test_quick_mode_writes_every_row(tmp_path, capsys):
    _write_images(tmp_path / "images")
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    result = _load_script().main(["--quick", "--val", str(tmp_path / "images"),
                                  "--json", str(out)])
    assert torch.get_num_threads() == threads  # thread settings are restored
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert {"machine", "settings", "rows", "sift_grid", "targets", "notes"} <= set(result)
    machine = result["machine"]
    assert {"cpu", "logical_cpus", "torch", "opencv", "skimage", "numpy", "vlfeat"} <= set(machine)
    assert result["settings"]["sizes"] == [32] and result["settings"]["images"] == 2

    rows = result["rows"]
    keys = {"feature", "size", "implementation", "device", "batch", "threads", "images_per_s",
            "ms_per_image"}
    assert rows and all(keys <= set(r) for r in rows)
    assert all(r["images_per_s"] > 0 and r["ms_per_image"] > 0 for r in rows)
    seen = {(r["feature"], r["implementation"], r["batch"], r["threads"]) for r in rows}
    for feature in ("hog", "lbp"):
        for batch in (1, 2):
            assert (feature, "featinv torch", batch, 1) in seen
        assert (feature, "skimage", 1, 1) in seen
        assert (feature, "VLFeat C", 1, 1) in seen or not vlfeat.available()
    assert ("sift", "OpenCV SIFT (defaults)", 1, 1) in seen
    backends = ["opencv"] + (["vlfeat"] if vlfeat.available() else [])
    for backend in backends:
        for part in ("", ": detect only", ": grid only"):
            assert any(f == "sift" and i == f"featinv sift/{backend}{part}" for f, i, _, _ in seen)
    assert [s["backend"] for s in result["sift_grid"]] == backends
    assert all(s["detect_ms"] > 0 and s["grid_ms"] > 0 for s in result["sift_grid"])

    targets = result["targets"]
    assert {t["feature"] for t in targets} == {"hog", "lbp", "sift"}
    for t in targets:  # each verdict follows from the measurements it names
        if t["feature"] == "sift":
            assert 0 < t["grid_fraction"] and t["met"] == (t["grid_fraction"] <= t["required"])
            continue
        batch = int(t["target"].split("batch ")[1].split(",")[0])
        ours = next(r for r in rows if (r["feature"], r["size"], r["implementation"], r["batch"],
                                        r["threads"]) == (t["feature"], t["size"], "featinv torch",
                                                          batch, 1) and r["device"] == "cpu")
        other = t["target"].split(">= ")[1].split("x ", 1)[1].rsplit(", 1 thread", 1)[0]
        theirs = next(r for r in rows if (r["feature"], r["size"], r["implementation"],
                                          r["threads"]) == (t["feature"], t["size"], other, 1))
        assert t["speedup"] == pytest.approx(ours["images_per_s"] / theirs["images_per_s"])
        assert t["met"] == (t["speedup"] >= t["required"])
    if not torch.cuda.is_available():
        assert any("CUDA" in note for note in result["notes"])
    printed = capsys.readouterr().out
    assert "images/s" in printed and "ms/image" in printed


def test_train_step_benchmark_prints_every_combination(capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_train_step", SCRIPT.parent / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import sys
    argv = sys.argv
    sys.argv = ["train_step.py", "--image-size", "32", "--batch-size", "4", "--repeats", "1"]
    try:
        module.main()
    finally:
        sys.argv = argv
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    combos = {(r["precision"], r["channels_last"]) for r in result["rows"]}
    assert combos == {("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)}
    assert all(r["ms_per_image"] > 0 for r in result["rows"])


SPEED = REPO / "benchmarks" / "speed.py"


@pytest.mark.slow
def test_speed_benchmark_measures_every_column(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_speed", SPEED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "speed.json"
    result = module.main(["--features", "hog,lbp,nosuchfeature", "--batch-size", "4",
                          "--repeats", "1", "--image-size", "32", "--optimize-steps", "3",
                          "--threads", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {r["feature"]: r for r in result["rows"]}
    assert set(rows) == {"hog", "lbp"}  # the unknown name fails alone
    for row in rows.values():
        for key in ("features_ms_per_image", "decoder_ms_per_image_b1", "decoder_ms_per_image_b4",
                    "decoder_ms_per_image_b4_bf16_cl", "inversion_ms_per_image_b1",
                    "inversion_ms_per_image_b4", "train_images_per_s_fp32",
                    "train_images_per_s_bf16_cl", "peak_mb_after_inversion",
                    "peak_mb_after_training"):
            assert row[key] > 0, key
        assert row["peak_mb_after_training"] >= row["peak_mb_after_inversion"]
    # HOG is differentiable: timed against the optimisation baseline; LBP is not
    assert rows["hog"]["optimize_steps"] == 3 and rows["hog"]["optimize_over_decoder"] > 0
    assert "optimize_s_per_image" not in rows["lbp"]
    assert result["settings"]["threads"] == 1 and result["machine"]["logical_cpus"] >= 1


@pytest.mark.slow
def test_train_throughput_runs_featinv_train_end_to_end(tmp_path):
    from helpers import write_images

    spec = importlib.util.spec_from_file_location(
        "bench_train", SCRIPT.parent / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_images(tmp_path / "train", 16)
    write_images(tmp_path / "val", 4, seed=1)
    out = tmp_path / "t.json"
    result = module.main(["--data", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
                          "--features", "hog", "--widths", "0.125", "--batches", "8",
                          "--epochs", "2", "--limit", "0", "--image-size", "32",
                          "--workers", "0", "--json", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row == result["rows"][0]
    assert row["images_trained"] == 2 * 16 and row["epochs"] == 2 and row["validations"] == 2
    assert 0 < row["loop_images_per_s"] <= row["in_epoch_images_per_s"] * 1.05
    assert "settings: precision" in row["settings"]
