"""Nothing featinv reads can hang it (issue 24, defect 3): parameters have bounds (a cell of
10^12 px in a checkpoint's metadata made a linear search spin), and a file that is a FIFO or a
link to an endless device (cache files, lock files, images, weights, feature caches) is refused
unread. Each command runs in a child process with a timeout, so a hang fails the test instead
of stalling the suite."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from helpers import REPO, write_images
from featinv.errors import FeatinvError
from featinv.representation.layout import CellGrid

SHIPPED = REPO / "featinv" / "zoo" / "hog.safetensors"


def featinv_cli(*args, env=None, timeout=120):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "featinv", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return done, time.monotonic() - start


def with_params(path: Path, **params) -> Path:
    """A copy of the shipped HOG decoder whose metadata claims other parameters."""
    with safe_open(str(SHIPPED), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["featinv"])
    meta["feature"]["params"].update(params)
    save_file(tensors, str(path), metadata={"featinv": json.dumps(meta)})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("cell", [1e12, 2**62, 4097, -8])
def test_a_checkpoint_with_an_absurd_cell_is_refused_at_once(tmp_path, cell):
    evil = with_params(tmp_path / "evil.safetensors", cell_size=cell)
    for args in (["invert", "-c", evil, "skimage:coffee", "-o", tmp_path / "out"],
                 ["pack", evil, "-o", tmp_path / "packed.safetensors"]):
        done, seconds = featinv_cli(*args, timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert "cell_size" in done.stderr and seconds < 30


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["describe", "hog", "-p", "cell_size=1000000000"],
    ["describe", "lbp", "-p", "cell_size=99999999999"],
    ["extract", "-f", "hog", "-p", "cell_size=1000000000", "skimage:coffee", "-o", "OUT"],
    ["extract", "-f", "sift", "-p", "cell_size=1000000000", "skimage:coffee", "-o", "OUT"],
    ["extract", "-f", "hog", "-p", "num_orientations=100000000", "skimage:coffee", "-o", "OUT"],
    ["show-features", "-f", "lbp", "-p", "cell_size=4000000000", "skimage:coffee", "-o", "OUT"],
])
def test_absurd_parameters_are_refused_from_their_bounds(tmp_path, args):
    args = [str(tmp_path / "x.npz") if a == "OUT" and "extract" in args else
            str(tmp_path / "x.png") if a == "OUT" else a for a in args]
    done, seconds = featinv_cli(*args, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "does not accept" in done.stderr and "must be from" in done.stderr, done.stderr


def test_the_smallest_side_is_found_without_a_linear_search():
    start = time.monotonic()
    for rounding in ("floor", "ceil", "half_up"):
        assert CellGrid(31, 10**12, rounding).smallest_side >= 1
    assert time.monotonic() - start < 0.1
    for rounding, cell, want in (("floor", 8, 8), ("ceil", 8, 1), ("half_up", 8, 4),
                                 ("half_up", 7, 4)):
        assert CellGrid(31, cell, rounding).smallest_side == want


def test_numbers_without_declared_bounds_are_still_bounded(extra_plugins):
    import featinv
    from featinv.representation.hookspecs import hookimpl
    from featinv.representation.spec import FeatureSpec, Param
    from featinv.representation.layout import FixedVector
    import torch

    class Plugin:
        @hookimpl
        def featinv_register_features(self, register):
            register(FeatureSpec(name="nobounds", description="test", input="gray",
                                 differentiable=False, build=lambda k=1, s=1.0: torch.nn.Identity(),
                                 rule=lambda k=1, s=1.0: FixedVector(3),
                                 params=(Param("k", 1), Param("s", 1.0))))

    extra_plugins("nobounds_plugin", Plugin())
    for value in (10**30, -10**30, "99999999999999"):
        with pytest.raises(FeatinvError, match="does not accept k="):
            featinv.get_feature("nobounds", k=value)
    with pytest.raises(FeatinvError, match="does not accept s="):
        featinv.get_feature("nobounds", s=1e300)


# -- special files ------------------------------------------------------------------------------

def special(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(f"/dev/{kind}")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "zero", "urandom"])
def test_a_cache_file_that_never_ends_is_ignored_and_replaced(tmp_path, kind):
    cache = tmp_path / "cache"
    for name in ("listing.json", "zoo.json"):
        special(cache / name, kind)
    env = {"FEATINV_CACHE_DIR": str(cache)}
    for command in (["list-features"], ["zoo"]):
        done, seconds = featinv_cli(*command, env=env, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    for name in ("listing.json", "zoo.json"):  # rewritten as files
        assert (cache / name).is_file() and not (cache / name).is_symlink(), name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_images_that_are_no_regular_files_are_reported(tmp_path, kind):
    write_images(tmp_path / "data", 6, size=(40, 40))
    special(tmp_path / "data" / "z_special.png", kind)
    done, _ = featinv_cli("invert", "-f", "hog", tmp_path / "data" / "z_special.png",
                          tmp_path / "data" / "img000.png", "-o", tmp_path / "out", timeout=120)
    assert done.returncode == 1 and "not an image file" in done.stderr, done.stderr
    assert (tmp_path / "out" / "img000.hog.png").exists()  # the rest is done
    done, _ = featinv_cli("train", "-f", "hog", "--data", tmp_path / "data", "--out",
                          tmp_path / "run", "--image-size", "16", "--epochs", "1",
                          "--batch-size", "4", "--workers", "0", "--device", "cpu", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "skipping" in done.stderr and "z_special.png" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("which, kind", [("json", "fifo"), ("bin", "zero")])
def test_a_feature_cache_file_that_never_ends_is_one_line(tmp_path, which, kind):
    write_images(tmp_path / "data", 4, size=(40, 40))
    args = ["train", "-f", "lbp", "--data", tmp_path / "data", "--image-size", "32", "--epochs",
            "1", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--feature-cache",
            tmp_path / "cache"]
    done, _ = featinv_cli(*args, "--out", tmp_path / "r1", timeout=300)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "cache").iterdir()
    special(folder / f"writer0.{which}", kind)
    done, _ = featinv_cli(*args, "--out", tmp_path / "r2", timeout=300)
    assert done.returncode == 1 and "Feature cache" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("kind, words", [("fifo", "named pipe"), ("zero", "character device")])
def test_a_checkpoint_that_is_no_regular_file_is_named_as_such(tmp_path, capsys, kind, words):
    """-c, pack, and a run's training state that are a FIFO or a link to /dev/zero: refused
    unread, saying what they are (it said "not found" of a file that is there)."""
    from helpers import error_lines, run_cli
    from featinv.errors import CheckpointError
    from featinv.io.checkpoint import STATE_FORMAT, read_meta

    bad = special(tmp_path / "d.safetensors", kind)
    for args in (["invert", "-c", bad, "skimage:coffee", "-o", tmp_path / "o"],
                 ["pack", bad, "-o", tmp_path / "p.safetensors"]):
        code, _, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and words in line and "not found" not in line, err
    with pytest.raises(CheckpointError, match=words):
        read_meta(special(tmp_path / "run" / "train_state.safetensors", kind), STATE_FORMAT)


@pytest.mark.parametrize("kind, words", [("fifo", "named pipe"), ("zero", "character device")])
def test_a_run_folder_whose_decoder_is_no_regular_file_names_it(tmp_path, capsys, kind, words):
    """Round 4: ``-c RUN`` where RUN/decoder.safetensors is a FIFO or a device said the folder
    'holds no model.safetensors or decoder.safetensors', of a folder that holds one."""
    from helpers import error_lines, run_cli

    special(tmp_path / "run" / "decoder.safetensors", kind)
    code, _, err = run_cli(capsys, "invert", "-c", tmp_path / "run", "skimage:coffee", "-o",
                           tmp_path / "o")
    [line] = error_lines(err)
    assert code == 1 and words in line and "holds no" not in line, err


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="Linux /proc")
def test_a_checkpoint_that_cannot_be_read_is_one_line(tmp_path, capsys):
    """Round 4: a link to /proc/self/mem (a regular file whose reads fail) gave 'OSError:
    [Errno 5] Input/output error (run featinv --debug ...)'."""
    from helpers import error_lines, run_cli

    (tmp_path / "m.safetensors").symlink_to("/proc/self/mem")
    code, _, err = run_cli(capsys, "invert", "-c", tmp_path / "m.safetensors", "skimage:coffee",
                           "-o", tmp_path / "o")
    [line] = error_lines(err)
    assert code == 1 and "OSError" not in line, err
    assert "m.safetensors: a file of the kernel (proc), not a checkpoint file" in line, err


@pytest.mark.parametrize("width", [math.nan, math.inf, 1e9, -1.0, 0.0])
def test_a_checkpoint_with_an_absurd_decoder_width_is_the_files_fault(tmp_path, capsys, width):
    """A width no --width allows, in a checkpoint's metadata: refused as the file's invalid
    description, not as a failure of the decoders plugin (it said "Plugin 'featinv.decoders'
    failed in featinv_build_decoder: ValueError: cannot convert float NaN to integer")."""
    from helpers import error_lines, run_cli

    with safe_open(str(SHIPPED), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["featinv"])
    meta["decoder"]["width"] = width
    evil = tmp_path / "evil.safetensors"
    save_file(tensors, str(evil), metadata={"featinv": json.dumps(meta)})
    code, _, err = run_cli(capsys, "invert", "-c", evil, "skimage:coffee", "-o", tmp_path / "o")
    [line] = error_lines(err)
    assert code == 1 and "decoder description is invalid" in line and "width" in line, err
    assert "Plugin" not in line
