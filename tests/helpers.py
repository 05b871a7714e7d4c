"""Helpers shared by the tests (import them with ``from helpers import ...``).

Fixtures live in conftest.py; plain functions live here, in one place: image folders, running
``featinv`` in-process, small training configs and commands, and VLFeat's reference vectors.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featinv
from featinv.features import vlfeat

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# ---- image folders -----------------------------------------------------------------------------

def link_photos(src: Path, n: int, out: Path) -> Path:
    """A folder of symlinks to the first ``n`` photos of ``src`` (no copies of ../shared)."""
    for photo in sorted(src.glob("*.jpg"))[:n]:
        (out / photo.name).symlink_to(photo)
    return out


def write_images(folder: Path, n: int, size=(48, 40), seed: int = 0) -> list[Path]:
    """Write ``n`` smooth random RGB images (``size`` = (W, H)) as PNG into ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = rng.random((4, 4, 3))
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize(size, Image.BICUBIC)
        paths.append(folder / f"img{i:03d}.png")
        img.save(paths[-1])
    return paths


# ---- the command line --------------------------------------------------------------------------

def run_cli(capsys, *args):
    """Run ``featinv ARGS`` in this process; return (exit code, stdout, stderr)."""
    from featinv.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def error_lines(err: str) -> list[str]:
    """The ``Error:`` lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("Error:")]


# ---- small training runs -----------------------------------------------------------------------

def quiet(_message) -> None:
    """A ``log`` callback that prints nothing."""


def digest(folder: Path) -> dict[str, str]:
    """Name -> content hash of every file in a run folder (the lock excluded)."""
    import hashlib

    from featinv.training.run_folder import LOCK_FILE

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != LOCK_FILE}


def _train_config(data, out, defaults: dict, **kw):
    from featinv.training.config import TrainConfig

    base = dict(feature="hog", data=str(data), out=str(out), workers=0, device="cpu",
                precision="fp32")
    return TrainConfig(**{**base, **defaults, **kw})


def train_configs(**defaults):
    """``config(data, out, **kw) -> TrainConfig``: hog on the CPU in fp32 without workers, with
    this file's ``defaults`` (image_size, batch_size, ...), overridden by ``kw``."""
    return partial(_train_config, defaults=defaults)


def train_command(data, out, *extra, image_size: int = 48, batch_size: int = 8) -> list[str]:
    """``python -m featinv train`` of hog on the CPU, one thread, fp32, plus ``extra`` options."""
    return [sys.executable, "-m", "featinv", "train", "-f", "hog", "--data", str(data),
            "--out", str(out), "--image-size", str(image_size), "--batch-size", str(batch_size),
            "--workers", "0", "--device", "cpu", "--precision", "fp32", "--threads", "1", *extra]


def saved_step(out) -> int:
    """The step of the training state in run folder ``out`` (-1 before the first checkpoint)."""
    from featinv.errors import FeatinvError
    from featinv.io import checkpoint
    from featinv.training.loop import STATE_FILE

    try:
        return checkpoint.read_meta(Path(out) / STATE_FILE, checkpoint.STATE_FORMAT)["step"]
    except FeatinvError:
        return -1


# ---- shipped decoders --------------------------------------------------------------------------

def tiny_layer_decoders(folder, layers, network="squeezenet", size=48, **params):
    """Untrained compact decoders (width 0.125) of ``network.<layer>`` for each of ``layers`` at
    ``size`` px, with feature statistics of random pictures (as training sets them: their
    pictures stay near [0, 1]), saved in ``folder``; returns ``ShippedDecoder`` entries."""
    import torch

    from featinv.decoders.networks import build_decoder
    from featinv.io.checkpoint import decoder_metadata, save_decoder

    entries = []
    pictures = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    for layer in layers:
        ext = featinv.get_feature(f"{network}.{layer}", **params)
        decoder = build_decoder(ext.spec, ext.layout(size, size), size, "compact", 0.125)
        with torch.no_grad():
            decoder.set_feature_stats(ext(pictures))
        path = save_decoder(decoder, folder / f"{ext.name}.safetensors",
                            decoder_metadata(ext, decoder))
        entries.append(featinv.ShippedDecoder(ext.name, path, description="tiny test decoder"))
    return entries


class Shipper:
    """A plugin that ships ``entries`` (``ShippedDecoder``s) through ``featinv_shipped_decoders``."""

    def __init__(self, entries):
        self.entries = list(entries)

    @featinv.hookimpl
    def featinv_shipped_decoders(self):
        return self.entries


# ---- VLFeat: the stored reference vectors and libvl --------------------------------------------

VLFEAT_REFERENCE = SHARED / "reference/vlfeat"
REFERENCE_FILES = sorted(VLFEAT_REFERENCE.glob("*.npz")) if VLFEAT_REFERENCE.is_dir() else []
NO_REFERENCE = f"VLFeat reference vectors not found in {VLFEAT_REFERENCE}"

# tests that need the C library skip, saying why, where Debian's libvlfeat1 is not installed
needs_libvl = pytest.mark.skipif(not vlfeat.available(), reason="VLFeat's libvl.so.1 cannot be "
                                 "loaded (apt-get install libvlfeat1, or set VLFEAT_LIB)")


def photo_like(h: int, w: int, seed: int) -> np.ndarray:
    """(H, W) float32: smooth structure plus noise, quantised to 8 bits like a decoded photo
    (many exact ties)."""
    import torch

    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 1, max(h // 6, 2), max(w // 6, 2)), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic",
                                             align_corners=False)[0, 0].numpy()
    x = np.clip(0.85 * smooth + 0.15 * rng.random((h, w), dtype=np.float32), 0, 1)
    return (np.round(x * 255) / 255).astype(np.float32)


def vl_hog(image: np.ndarray, cell_size: int, num_orientations: int = 9, matlab: bool = True):
    """VLFeat's HOG of an (H, W) image as an (Hc, Wc, D) array, the reference files' axis order."""
    return vlfeat.hog(image, cell_size, num_orientations, matlab=matlab).transpose(1, 2, 0)


def vl_lbp(image: np.ndarray, cell_size: int = 16, matlab: bool = True) -> np.ndarray:
    """VLFeat's LBP of an (H, W) image as an (Hc, Wc, 58) array, the reference files' axis order."""
    return vlfeat.lbp(image, cell_size, matlab=matlab).transpose(1, 2, 0)


# -- peak memory of commands, measured in a child process ----------------------------------------

# Source of ``peak()`` and ``run(args)`` for a child Python process: the child's own high-water
# mark in KiB (VmHWM is reset by exec; ru_maxrss would include the parent pytest's memory at the
# fork) and one CLI command run in-process, returning ``(exit code, stderr)``.
CHILD_MEASURE = '''
import contextlib, io, json, resource
from featinv.cli.main import main
def peak():
    try:
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def run(args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
        except SystemExit as exc:
            return exc.code, err.getvalue()
'''


def run_measured(cases, preamble: str = "", timeout: float = 900, env=None):
    """Run each ``(warm_up_args, args)`` of ``cases`` in one child process (``preamble``: code
    run first, e.g. imports to count before measuring); returns ``(exit code, stderr, KiB the
    peak grew by during args)`` per case."""
    import json
    import os
    import subprocess

    pairs = [(list(map(str, w)), list(map(str, a))) for w, a in cases]
    script = CHILD_MEASURE + preamble + f"""
results = []
for warm, args in {pairs!r}:
    run(warm)
    before = peak()
    code, err = run(args)
    results.append((code, err, peak() - before))
print(json.dumps(results))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])
