"""The smaller things of issue 24 (defect 7): an output named as another format is refused even
with --overwrite, compare names every reconstruction it cannot use (a link to /dev/zero, a 1 x 1
picture), and a missing timm weight is reported offline before timm is imported. (--out inside
--data and the lock naming process 1 are in tests/training/test_refusals_overwrite/_recovery,
--decoder '' and -f hog.realistic in tests/inversion/test_decoder_names.)"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from helpers import error_lines, run_cli, write_images


@pytest.mark.parametrize("args, suffix", [
    (["extract", "-f", "hog", "IMG", "-o", "OUT.jpg"], ".npz"),
    (["extract", "-f", "hog", "IMG", "-o", "OUT.safetensors"], ".npz"),
    (["show-features", "-f", "hog", "IMG", "-o", "OUT.jpg"], ".png"),
    (["analyze", "unit", "hog", "-u", "1", "-o", "OUT.jpg"], ".png"),
    (["analyze", "interpolate", "hog", "IMG", "IMG", "-o", "OUT.jpg"], ".png"),
    (["analyze", "sample", "hog", "--data", "DATA", "-o", "OUT.jpeg"], ".png"),
    (["pack", "hog", "-o", "OUT.jpg"], ".safetensors"),
])
def test_an_output_named_as_another_format_is_never_written(tmp_path, capsys, args, suffix):
    """``-o photo.jpg --overwrite`` would put an archive or a PNG where a JPEG was."""
    (img,) = write_images(tmp_path / "data", 1)
    target = tmp_path / ("other" + args[-1][3:])
    Image.new("RGB", (8, 8)).save(tmp_path / "keep.png")
    target.write_bytes((tmp_path / "keep.png").read_bytes())
    before = target.read_bytes()
    args = [img if a == "IMG" else tmp_path / "data" if a == "DATA" else
            target if a.startswith("OUT") else a for a in args]
    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert code == 1 and len(error_lines(err)) == 1 and suffix in err, err
    assert target.read_bytes() == before


def test_compare_names_what_it_cannot_use(tmp_path, capsys):
    write_images(tmp_path / "orig", 4, size=(40, 40))
    write_images(tmp_path / "rec", 2, size=(40, 40), seed=1)
    (tmp_path / "rec" / "img002.png").symlink_to("/dev/zero")
    Image.new("RGB", (1, 1)).save(tmp_path / "rec" / "img003.png")
    code, out, err = run_cli(capsys, "compare", tmp_path / "orig", tmp_path / "rec",
                             "--perceptual-weights", "none", "--image-size", "32", "--json")
    lines = error_lines(err)
    assert any("img002.png" in line and "character device" in line for line in lines), err
    assert any("img003.png" in line and "enlarged" in line for line in lines), err
    import json

    assert json.loads(out)["n_images"] == 2 and code == 1


@pytest.mark.slow
def test_a_missing_timm_weight_is_reported_before_timm_is_imported(tmp_path):
    """Offline and nothing cached: the one-line error comes without importing timm (whose
    import alone takes seconds)."""
    pytest.importorskip("timm")
    script = ("import sys\n"
              "from featinv.cli.main import main\n"
              "try:\n"
              f"    main(['extract', '-f', 'timm.resnet18.stage2', 'skimage:coffee', '-o', "
              f"{str(tmp_path / 'x.npz')!r}])\n"
              "except SystemExit as exc:\n"
              "    print('timm' in sys.modules, exc.code)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "TORCH_HOME": str(tmp_path / "torch")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.stdout.split() == ["False", "1"], (done.stdout, done.stderr)
    assert "not cached" in done.stderr


@pytest.mark.parametrize("command", [["invert", "-f", "hog"], ["extract", "-f", "hog"],
                                     ["show-features", "-f", "hog"]])
def test_an_output_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys, command):
    """Round 4: ``-o`` with a 300-byte name gave 'OSError: [Errno 36] File name too long' (the
    generic wrapper, pointing at --debug); it is refused by name before any work."""
    write_images(tmp_path / "img", 1)
    image = next((tmp_path / "img").iterdir())
    out = tmp_path / ("a" * 300 + ".png")
    code, _, err = run_cli(capsys, *command, image, "-o", out)
    [line] = error_lines(err)
    assert code == 1 and "has 304 bytes; a file or folder name may have at most 255" in line, err
    assert "OSError" not in err


def test_a_path_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    """Round 4: --out, --data and -c with a 300-byte name gave 'OSError: [Errno 36] File name
    too long ... (run featinv --debug ...)'."""
    write_images(tmp_path / "img", 2)
    long = tmp_path / ("b" * 300)
    for args in (["train", "-f", "hog", "--data", tmp_path / "img", "--out", long, "--epochs",
                  "1", "--image-size", "16", "--device", "cpu"],
                 ["train", "-f", "hog", "--data", long, "--out", tmp_path / "r", "--epochs", "1"],
                 ["invert", "-c", f"{long}.safetensors", "skimage:coffee", "-o", tmp_path / "o"]):
        code, _, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and "longer than the file system allows (255 bytes)" in line, err
        assert "OSError" not in line


@pytest.mark.parametrize("layout", ["file", "folder"])
def test_demo_refuses_an_out_that_is_a_file_before_any_work(tmp_path, capsys, monkeypatch,
                                                           layout):
    """``demo -o FILE`` inverted the examples, then said 'Cannot write FILE/astronaut.hog.png
    (File exists); check that its folder is writable', of a file."""
    import featinv.inversion.pipeline as pipeline

    out = tmp_path / "out"
    if layout == "file":
        out.write_text("keep")
    else:
        (out / "astronaut.hog.png").mkdir(parents=True)
    monkeypatch.setattr(pipeline.Inverter, "load", lambda *a, **k: pytest.fail("did work"))
    code, _, err = run_cli(capsys, "demo", "-o", out, "--device", "cpu")
    assert code == 1 and len(error_lines(err)) == 1, err
    assert ("is a file, not a folder" if layout == "file" else "is a folder") in err
    assert layout == "folder" or out.read_text() == "keep"


def test_demo_of_an_unknown_name_says_so_and_any_case_finds_the_shipped_decoder(tmp_path,
                                                                              capsys):
    """Round 7: 'demo -f nosuch' said 'No shipped decoder for nosuch yet: pass --train-data
    DIR', and 'demo -f HOG' the same, although hog ships a decoder."""
    code, _, err = run_cli(capsys, "demo", "-f", "nosuch", "-o", tmp_path / "a")
    [line] = error_lines(err)
    assert code == 1 and "Unknown feature 'nosuch'" in line and "--train-data" not in line
    code, _, err = run_cli(capsys, "demo", "-f", "HOG", "-o", tmp_path / "b", "--device", "cpu")
    assert code == 0 and (tmp_path / "b" / "examples.hog.png").exists(), err


def test_too_few_images_after_limit_names_the_limit(tmp_path):
    """``evaluate``/``analyze sample``/``perturb --limit 1`` on a folder of 4 photos said 'Need at
    least 2 readable images in DATA, found 1', of a folder holding 4."""
    from featinv.analysis.evaluate import load_square_images
    from featinv.errors import FeatinvError

    write_images(tmp_path / "data", 4)
    with pytest.raises(FeatinvError, match=r"found 1 among the first 1 \(--limit 1\)"):
        load_square_images(tmp_path / "data", 16, limit=1)
    write_images(tmp_path / "one", 1)
    with pytest.raises(FeatinvError, match=r"found 1\.$"):  # nothing cut: as before
        load_square_images(tmp_path / "one", 16, limit=5)


def test_compare_with_too_few_pairs_after_limit_names_the_limit(tmp_path, capsys):
    """``compare --limit 1`` on 3 pairs said 'Need at least 2 readable pairs, found 1'."""
    write_images(tmp_path / "data", 3)
    (tmp_path / "rec").mkdir()
    for path in sorted((tmp_path / "data").iterdir()):
        (tmp_path / "rec" / f"{path.stem}.hog.png").write_bytes(path.read_bytes())
    code, _, err = run_cli(capsys, "compare", tmp_path / "data", tmp_path / "rec", "--limit", "1",
                           "--perceptual-weights", "none", "--device", "cpu")
    assert code == 1 and len(error_lines(err)) == 1, err
    assert "found 1 among the first 1 (--limit 1)" in err
