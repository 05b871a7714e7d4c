"""Memory guards that bound memory (issue 24, defect 4): one budget, checked from headers before
anything is decoded, a reduced decode where Pillow can do it, and a bad input in a batch
reported and skipped while the rest is done. Peak memory is measured in a child process, each
attack after a warm-up run of the same command on a normal image."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featinv
from featinv.errors import DataError, ImageError
from featinv.io.images import probe_image

from helpers import run_cli, run_measured as measured, write_images

MB = 1024  # ru_maxrss is in KiB


def png_header(width: int, height: int, rows: bytes = b"") -> bytes:
    """A PNG whose header claims ``width x height`` px, with ``rows`` of data (69 bytes with
    none: the file of the issue)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def big_png(path: Path, side: int) -> Path:
    """A ``side x side`` black RGB PNG of a few hundred KB, written row by row."""
    c = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * side)
    data = b"".join(c.compress(row) for _ in range(side)) + c.flush()
    head = png_header(side, side)
    path.write_bytes(head[:33] + struct.pack(">I", len(data)) + b"IDAT" + data
                     + struct.pack(">I", zlib.crc32(b"IDAT" + data) & 0xFFFFFFFF) + head[-12:])
    return path


@pytest.fixture(scope="module")
def traps(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    (root / "tall.png").write_bytes(png_header(1, 80_000_000))
    (root / "wide.png").write_bytes(png_header(80_000_000, 1))
    (root / "thin.png").write_bytes(png_header(3, 20_000_000))
    assert (root / "tall.png").stat().st_size < 80
    big_png(root / "big.png", 9000)
    gradient = np.linspace(0, 255, 8192, dtype=np.uint8)
    Image.fromarray(np.broadcast_to(gradient, (8192, 8192))).convert("RGB").save(
        root / "big.jpg", quality=50)
    write_images(root / "photos", 4, size=(48, 40))
    write_images(root / "recs", 4, size=(48, 40), seed=1)
    # a normal JPEG with 4 GB appended (a sparse file: no disk space used)
    Image.fromarray(np.full((40, 48, 3), 128, np.uint8)).save(root / "photos" / "tail.jpg")
    with open(root / "photos" / "tail.jpg", "r+b") as f:
        f.truncate(4 * 2**30)
    return root


def run_measured(cases: list[tuple[list, list]]) -> list[tuple[int, str, int]]:
    """Each ``(warm_up_args, args)`` in one child process (one thread):
    ``(exit code, stderr, KiB the peak grew by during args)``."""
    return measured(cases, env={"OMP_NUM_THREADS": "1"})


def errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("Error:")]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tall.png", "wide.png", "thin.png"])
def test_a_header_claiming_a_strip_is_refused_everywhere_from_the_header(traps, tmp_path, name):
    """The 69-byte PNG claiming 1 x 80,000,000 px (and its variants) in every command that
    reads images: refused (the rest of a batch done), no more than a few MB used."""
    strip, photos, recs = traps / name, traps / "photos", traps / "recs"
    mixed = tmp_path / "mixed"
    write_images(mixed, 3, size=(48, 40))
    (mixed / name).write_bytes(strip.read_bytes())
    mixed_recs = tmp_path / "mixed_recs"  # the strip as the reconstruction of img001.png
    write_images(mixed_recs, 4, size=(48, 40), seed=1)
    (mixed_recs / "img001.png").write_bytes(strip.read_bytes())
    good = photos / "img000.png"
    cases = [
        (["invert", "-f", "hog", good, "-o", tmp_path / "w1"],
         ["invert", "-f", "hog", strip, good, "-o", tmp_path / "o1"]),
        (["invert", "-f", "hog", good, "--size", "64", "-o", tmp_path / "w2"],
         ["invert", "-f", "hog", strip, good, "--size", "64", "-o", tmp_path / "o2"]),
        (["evaluate", "-f", "hog", "--data", photos, "--image-size", "32"],
         ["evaluate", "-f", "hog", "--data", mixed, "--image-size", "32"]),
        (["compare", photos, recs, "--perceptual-weights", "none", "--image-size", "32"],
         ["compare", photos, mixed_recs, "--perceptual-weights", "none", "--image-size",
          "32"]),
        (["analyze", "interpolate", "hog", good, good, "-o", tmp_path / "w3.png"],
         ["analyze", "interpolate", "hog", strip, good, "-o", tmp_path / "o3.png"]),
        (["show-features", "-f", "hog", good, "-o", tmp_path / "w4.png"],
         ["show-features", "-f", "hog", strip, "-o", tmp_path / "o4.png"]),
        (["extract", "-f", "hog", good, "-o", tmp_path / "w5.npz"],
         ["extract", "-f", "hog", strip, good, "-o", tmp_path / "o5.npz"]),
        (["train", "-f", "hog", "--data", photos, "--out", tmp_path / "w6", "--image-size", "16",
          "--epochs", "1", "--workers", "0", "--device", "cpu"],
         ["train", "-f", "hog", "--data", mixed, "--out", tmp_path / "o6", "--image-size", "16",
          "--epochs", "1", "--workers", "0", "--device", "cpu"]),
    ]
    results = run_measured(cases)
    for (_, args), (code, err, grown) in zip(cases, results):
        assert "Traceback" not in err and "MemoryError" not in err, (args[0], err)
        # named: refused or skipped, never used silently
        assert name in err or args[0] == "compare" and "img001.png" in err, (args[0], err)
        assert grown < 64 * MB, f"{args[0]} grew by {grown // MB} MB"
    assert (tmp_path / "o1" / "img000.hog.png").exists()  # the rest of the batch
    assert (tmp_path / "o6" / "decoder.safetensors").exists()  # trained on the rest


@pytest.mark.slow
def test_big_images_are_decoded_small(traps, tmp_path):
    """A 9000 x 9000 PNG (a few hundred KB) inverted at the default --max-side: the 8-bit
    decode at most (3.3 GB before); a 8192 x 8192 JPEG is decoded at 1/8 scale; show-features
    and extract cap the size as invert does."""
    good = traps / "photos" / "img000.png"
    cases = [
        (["invert", "-f", "hog", good, "-o", tmp_path / "w1"],
         ["invert", "-f", "hog", traps / "big.png", "-o", tmp_path / "o1"]),
        (["invert", "-f", "hog", good, "-o", tmp_path / "w2"],
         ["invert", "-f", "hog", traps / "big.jpg", "-o", tmp_path / "o2"]),
        (["show-features", "-f", "hog", good, "-o", tmp_path / "w3.png"],
         ["show-features", "-f", "hog", traps / "big.jpg", "-o", tmp_path / "o3.png"]),
        (["extract", "-f", "sift", good, "-o", tmp_path / "w4.npz"],
         ["extract", "-f", "sift", traps / "big.jpg", "-o", tmp_path / "o4.npz"]),
    ]
    limits = [600, 250, 600, 600]  # MB
    for (_, args), (code, err, grown), limit in zip(cases, run_measured(cases), limits):
        assert code == 0, (args, err)
        assert grown < limit * MB, f"{args[:3]} grew by {grown // MB} MB"
    assert max(Image.open(next((tmp_path / "o1").iterdir())).size) == 1024


@pytest.mark.slow
def test_a_file_far_longer_than_its_picture_is_refused_unread(traps, tmp_path):
    """A JPEG with 4 GB appended: refused from its header and size, not read whole."""
    tail = traps / "photos" / "tail.jpg"
    with pytest.raises(ImageError, match="far more than it needs"):
        probe_image(tail)
    cases = [(["train", "-f", "hog", "--data", traps / "recs", "--out", tmp_path / "w",
               "--image-size", "16", "--epochs", "1", "--workers", "0", "--device", "cpu"],
              ["train", "-f", "hog", "--data", traps / "photos", "--out", tmp_path / "o",
               "--image-size", "16", "--epochs", "1", "--workers", "0", "--device", "cpu",
               "--data-store", "files"])]
    ((code, err, grown),) = run_measured(cases)
    assert code == 0 and "skipping" in err and "tail.jpg" in err, err
    assert grown < 64 * MB, f"grew by {grown // MB} MB"


def test_a_png_is_decoded_in_full_only_when_the_free_memory_holds_it(traps, tmp_path, capsys,
                                                                     monkeypatch):
    """Pillow decodes a JPEG at a reduced scale, a PNG only in full: one just under Pillow's
    89-megapixel guard takes about 1.4 GB however small --max-side wants it. With 1 GB free, such
    a PNG (a header of 69 bytes) is refused in one line before decoding and the rest of the batch
    is done, while an 8192 x 8192 JPEG (1.1 GB in full) is still decoded at 1/8 scale."""
    from featinv.io.images import load_fitted

    claim = tmp_path / "claim.png"
    claim.write_bytes(png_header(9440, 9440))  # 89.1 megapixels, 1.43 GB to decode
    monkeypatch.setattr(featinv.limits, "memory_available", lambda: 10**9)
    assert probe_image(claim) == (9440, 9440)  # the header alone is read as before
    for png in (claim, traps / "big.png"):
        with pytest.raises(ImageError, match=r"decoding 9\d\d0x9\d\d0 px \(width x height\) "
                           r"takes about 1\.\d GB, "
                           r"more than the 1\.0 GB of memory free now \(featinv decodes a PNG in "
                           r"full, only a JPEG at a reduced scale\); downscale it first"):
            load_fitted(png, max_side=1024)
    assert load_fitted(traps / "big.jpg", max_side=1024).shape == (3, 1024, 1024)
    with pytest.raises(ImageError,
                       match=r"decoding 8192x8192 px \(width x height\) takes about 1.1 GB"):
        load_fitted(traps / "big.jpg")  # wanted in full: no reduced decode helps
    good = traps / "photos" / "img000.png"
    code, _, err = run_cli(capsys, "invert", "-f", "hog", claim, good, "-o", tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert len(errors(err)) == 1 and "claim.png" in errors(err)[0] and "free now" in err, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["img000.hog.png"]


def test_enlarging_a_tiny_square_is_refused():
    from featinv.io.images import fitted_size

    assert fitted_size(48, 40, 128, crop=True) == (128, 128)
    assert fitted_size(8, 8, 128, crop=True) == (128, 128)  # 16 times: the most allowed
    for width, height in ((1, 1), (7, 700), (1, 80_000_000), (80_000_000, 2)):
        with pytest.raises(ImageError, match="enlarged"):
            fitted_size(width, height, 128, crop=True)
    with pytest.raises(ImageError, match="too small to use"):
        fitted_size(2, 40_000_000, None, max_side=1024)
    assert fitted_size(2, 2, None) == (2, 2)  # as it is: the representation judges


def test_compare_and_evaluate_estimate_their_memory_before_reading(traps, monkeypatch):
    """The estimate counts the metrics' float64 copies (it was 4x too low); --image-size 4096
    over the budget is refused before any image is read."""
    from featinv.analysis.compare import compare_folders
    from featinv.analysis.metrics import metrics_bytes

    assert metrics_bytes(2, 4096) > 2 * 2 * 3 * 4096 ** 2 * 4 * 3  # > 3x the images alone
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "1")  # 1 GB
    with pytest.raises(DataError, match=r"over the \$FEATINV_MEMORY_BUDGET of 1 GB"):
        compare_folders(traps / "photos", traps / "recs", image_size=4096,
                        perceptual_weights="none")
    with pytest.raises(DataError, match=r"over the \$FEATINV_MEMORY_BUDGET of 1 GB"):
        featinv.evaluate(traps / "photos", feature="hog", image_size=4096)


def test_ssim_works_in_bounded_bands():
    import torch

    from featinv.analysis import metrics

    x = torch.rand(2, 3, 70, 90)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    whole = metrics.ssim(x, y)
    old = metrics.SSIM_WORK_BYTES
    try:
        metrics.SSIM_WORK_BYTES = 50_000  # bands of a few rows of one image
        banded = metrics.ssim(x, y)
    finally:
        metrics.SSIM_WORK_BYTES = old
    torch.testing.assert_close(whole, banded, rtol=0, atol=1e-12)


def test_an_image_out_of_memory_is_reported_and_the_batch_goes_on(traps, tmp_path,
                                                                   monkeypatch):
    import featinv.inversion.batch as batch
    from featinv.inversion.batch import invert_files
    from featinv.inversion.methods import make_methods

    real = batch.prepare

    def prepare(path, size, max_side):
        if "img001" in str(path):
            raise MemoryError()
        return real(path, size, max_side)

    monkeypatch.setattr(batch, "prepare", prepare)
    failed = []
    report = invert_files(sorted((traps / "photos").glob("img*.png")),
                          make_methods("decoder", ["hog"]), tmp_path,
                          on_error=lambda exc, path: failed.append(str(exc)))
    assert len(report.written) == 3 and len(failed) == 1 and "not enough memory" in failed[0]


@pytest.mark.slow
def test_analyze_sample_names_the_photos_it_skips(tmp_path, capsys):
    """analyze sample --data skipped a photo it could not read without a word (perturb and
    evaluate name theirs)."""
    write_images(tmp_path / "data", 3, size=(48, 40))
    (tmp_path / "data" / "strip.png").write_bytes(png_header(1, 80_000_000))
    code, _, err = run_cli(capsys, "analyze", "sample", "hog", "--data", tmp_path / "data",
                           "--n", "1", "-o", tmp_path / "s.png")
    assert code == 0 and (tmp_path / "s.png").exists(), err
    assert [line for line in errors(err) if "strip.png" in line], err


def test_a_data_folder_with_no_image_of_use_says_why(tmp_path):
    """train --image-size 4096 on small photos said only "holds no readable images (3 files
    failed)": the reasons went to messages shown after the scan, which the refusal cut off."""
    from featinv.datasets.folders import scan_folder

    write_images(tmp_path / "data", 3, size=(48, 40))
    with pytest.raises(DataError, match=r"3 files failed; the first: .*img000\.png.*enlarged"):
        scan_folder(tmp_path / "data", None, on_error=lambda _m: None, image_size=4096)


@pytest.mark.parametrize("value", ["4G", "nan", "inf", "-1", "0", "1e9", "1e-300", "0.0009"])
def test_a_memory_budget_that_is_no_number_of_gb_is_refused(tmp_path, capsys, monkeypatch,
                                                             value):
    """$FEATINV_MEMORY_BUDGET=4G (or nan, 0, ...) was ignored without a word: the user's limit
    was silently not applied. One line, before any work, for every command. Round 4: 1e-300 (a
    budget of 0 bytes) was taken, and every file was then refused as too large."""
    from featinv import limits

    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", value)
    with pytest.raises(featinv.FeatinvError, match="FEATINV_MEMORY_BUDGET"):
        limits.memory_budget()
    write_images(tmp_path / "data", 2)
    code, _, err = run_cli(capsys, "invert", "-f", "hog", *sorted((tmp_path / "data").iterdir()),
                           "-o", tmp_path / "out")
    assert code == 1 and len(errors(err)) == 1 and "FEATINV_MEMORY_BUDGET" in err, err
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("FEATINV_MEMORY_BUDGET", "2.5")
    assert limits.memory_budget() == 2.5e9


ALLOCATOR_TEXT = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                  "allocate memory: you tried to allocate 67043344 bytes. Error code 12")


@pytest.mark.parametrize("error", [RuntimeError(ALLOCATOR_TEXT), MemoryError(),
                                   RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")])
def test_an_extractor_out_of_memory_is_the_images_not_a_plugin_failure(traps, tmp_path,
                                                                        monkeypatch, error):
    """Round 12 D8: PyTorch's allocator failing inside a built-in representation read as a
    plugin failure with the allocator's text; it is the image's 'not enough memory', and the
    rest of the batch is still done (invert and extract)."""
    from featinv.features.hog import HOG
    from featinv.inversion.batch import invert_files
    from featinv.inversion.methods import make_methods
    from featinv.representation.extract import extract_files

    real = HOG.forward
    calls = []

    def forward(self, gray):
        calls.append(1)
        if len(calls) == 2:  # the second photo
            raise error
        return real(self, gray)

    photos = sorted((traps / "photos").glob("img*.png"))
    monkeypatch.setattr(HOG, "forward", forward)
    failed = []
    methods = make_methods("decoder", ["hog"])
    calls.clear()
    report = invert_files(photos, methods, tmp_path,
                          on_error=lambda exc, path: failed.append(str(exc)))
    assert len(report.written) == len(photos) - 1 and len(failed) == 1
    assert "not enough memory to invert it" in failed[0] and "alloc" not in failed[0]
    notes = []
    calls.clear()
    got = extract_files(featinv.get_feature("hog"), photos, on_error=notes.append)
    assert len(got.features) == len(photos) - 1
    assert notes == [f"{photos[1]}: not enough memory for its features; use a smaller --size "
                     "or --max-side."]


def test_a_plugin_bug_that_is_not_about_memory_is_still_a_plugin_failure(monkeypatch):
    import torch

    from featinv.errors import PluginError
    from featinv.features.hog import HOG

    def forward(self, gray):
        raise RuntimeError("index 7 is out of bounds")

    monkeypatch.setattr(HOG, "forward", forward)
    with pytest.raises(PluginError, match="hog .plugin .*failed on a batch.*out of bounds"):
        featinv.get_feature("hog")(torch.rand(1, 3, 32, 32))


def test_opencv_running_out_of_memory_is_an_allocation_failure():
    """Round 13 N6: OpenCV's 'Insufficient memory' (cv2.error, no RuntimeError) in SIFT was
    shown raw as a plugin failure."""
    import cv2

    from featinv.limits import allocation_failure

    assert allocation_failure(cv2.error("OpenCV(5.1.0) alloc.cpp:73: error: (-4:Insufficient "
                                        "memory) Failed to allocate 68719476736 bytes"))
    assert not allocation_failure(cv2.error("(-215:Assertion failed) !_src.empty()"))


def test_a_representation_that_runs_out_of_memory_while_building_says_so(monkeypatch, capsys,
                                                                          tmp_path):
    """Round 13 N6: an allocation failure in a representation's build was 'failed to build'
    with the allocator's text; it is the documented out-of-memory line."""
    from featinv.features.hog import HOG

    def build(self, *args, **kwargs):
        raise RuntimeError(ALLOCATOR_TEXT)

    monkeypatch.setattr(HOG, "__init__", build)
    with pytest.raises(MemoryError):
        featinv.get_feature("hog")
    write_images(tmp_path / "p", 1)
    code, _, err = run_cli(capsys, "extract", "-f", "hog", tmp_path / "p", "-o",
                           tmp_path / "f.npz")
    assert code == 1 and err.startswith("Error: out of memory:") and "alloc_cpu" not in err, err
