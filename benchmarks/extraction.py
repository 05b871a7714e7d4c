"""Feature extraction throughput: featinv's torch HOG/LBP and sparse SIFT against VLFeat, skimage, OpenCV.

Every implementation gets the same grayscale images (centre-cropped square photos from the
validation folder, converted with featinv's 0.299/0.587/0.114 weights; conversion not timed):

* ``featinv torch``: ``hog_uoctti`` / ``lbp_uniform`` (the modules ``featinv.get_feature`` runs
  after its grayscale conversion) at batch 1 and batch ``--batch``, with all threads and with
  ``torch.set_num_threads(1)``; on CUDA too when there is one.
* ``VLFeat C``: libvl through ``featinv.features.vlfeat``, one image at a time (row-major call, no
  transposed copy). libvl is built with OpenMP and shares the process's OpenMP runtime with torch,
  so its thread count is set with ``vl_set_num_threads`` (what ``OMP_NUM_THREADS`` would do).
* ``skimage``: ``skimage.feature.hog`` (8-px cells, 9 orientations, 2x2 blocks, L2-Hys) and
  ``local_binary_pattern(img, 8, 1, 'nri_uniform')`` plus vectorised per-16-px-cell histograms.
* SIFT: ``cv2.SIFT_create()`` (OpenCV's defaults) ``detectAndCompute`` on uint8, and featinv's
  sparse SIFT grid with the OpenCV and the VLFeat detector: the whole module, detection alone and
  building the grid alone (target: the grid adds at most 10 % to detection).

Throughput is images / (best of ``--repeats`` timed passes over ``--images`` images, after one
untimed pass).

    python benchmarks/extraction.py [--sizes 64,128,256] [--features hog,lbp,sift] [--repeats 5]
                                    [--images 64] [--batch 64] [--json out.json] [--quick]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from featinv.features import vlfeat
from featinv.features.hog import hog_uoctti
from featinv.features.lbp import lbp_uniform
from featinv.features.sift import SparseSIFT, detect, keypoint_grid
from featinv.io.images import center_crop_resize, find_images, open_rgb, pil_to_tensor
from featinv.representation.spec import rgb_to_gray

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("hog", "lbp", "sift")
HOG_CELL, HOG_ORIENTATIONS, LBP_CELL, SIFT_CELL = 8, 9, 16, 4
COLUMNS = ("feature", "size", "implementation", "batch", "threads", "images_per_s", "ms_per_image")
GRID_TARGET = 0.10  # building the SIFT grid may add at most this fraction to detection
SKIMAGE_FACTOR = 5.0  # torch must be this many times faster than skimage


# ---------------------------------------------------------------------------------------------
# machine and thread control


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _vlfeat_call(name: str, restype, *args):
    """Call a libvl function this benchmark needs but featinv.features.vlfeat does not declare."""
    fn = getattr(vlfeat.library(), name)
    fn.restype = restype
    fn.argtypes = [ctypes.c_int] * len(args)
    return fn(*args)


def _vlfeat_configuration() -> str | None:
    if not vlfeat.available():
        return None
    text = _vlfeat_call("vl_configuration_to_string_copy", ctypes.c_char_p)  # leaks a few bytes
    return " | ".join(line.strip() for line in text.decode().splitlines() if line.strip())


def machine() -> dict:
    import cv2
    import skimage

    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "torch_parallel_backend": next((line.split(":")[-1].strip() for line in
                                        torch.__config__.parallel_info().splitlines()
                                        if "parallel backend" in line), None),
        "opencv": cv2.__version__,
        "skimage": skimage.__version__,
        "numpy": np.__version__,
        "vlfeat": vlfeat.version(),
        "vlfeat_configuration": _vlfeat_configuration(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def set_threads(n: int) -> None:
    """Threads for torch, OpenCV and libvl (libvl and torch share one OpenMP runtime here)."""
    import cv2

    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    if vlfeat.available():
        _vlfeat_call("vl_set_num_threads", None, n)


def get_threads() -> tuple[int, int, int | None]:
    import cv2

    return (torch.get_num_threads(), cv2.getNumThreads(),
            _vlfeat_call("vl_get_max_threads", ctypes.c_int) if vlfeat.available() else None)


def restore_threads(saved: tuple[int, int, int | None]) -> None:
    import cv2

    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])
    if saved[2] is not None:
        _vlfeat_call("vl_set_num_threads", None, saved[2])


# ---------------------------------------------------------------------------------------------
# images and timing


def load_gray(folder: str | Path, count: int, size: int) -> np.ndarray:
    """``(count, size, size)`` float32 gray images in [0, 1]: the folder's photos, centre-cropped,
    cycled when the folder has fewer than ``count``."""
    paths = find_images(folder)
    if not paths:
        raise SystemExit(f"no images found in {folder}")
    images = []
    for path in paths[:count]:
        rgb = pil_to_tensor(center_crop_resize(open_rgb(path), size))
        images.append(rgb_to_gray(rgb[None])[0, 0].numpy())
    return np.stack([images[i % len(images)] for i in range(count)]).astype(np.float32)


def _no_sync() -> None:
    pass


def best_time(fn: Callable[..., object], repeats: int, *args,
              sync: Callable[[], None] = _no_sync) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn(*args)`` after one untimed call."""
    fn(*args)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def each(fn: Callable, items: Sequence) -> None:
    """``fn`` on every item: one timed pass over the images or batches."""
    for item in items:
        fn(item)


def torch_pass(fn: Callable, batches: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        each(fn, batches)


def _hog(x: torch.Tensor) -> torch.Tensor:
    return hog_uoctti(x, HOG_CELL, HOG_ORIENTATIONS)


def _lbp(x: torch.Tensor) -> torch.Tensor:
    return lbp_uniform(x, LBP_CELL)


def _row(feature, size, implementation, batch, threads, seconds, n_images, device="cpu") -> dict:
    return {"feature": feature, "size": size, "implementation": implementation, "device": device,
            "batch": batch, "threads": threads, "images_per_s": n_images / seconds,
            "ms_per_image": 1e3 * seconds / n_images}


# ---------------------------------------------------------------------------------------------
# the implementations


def torch_rows(feature: str, size: int, gray: np.ndarray, batches: Sequence[int],
               thread_counts: Sequence[int], repeats: int, notes: list[str]) -> list[dict]:
    fn = _hog if feature == "hog" else _lbp
    images = torch.from_numpy(gray)[:, None]
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        x = images.to(device)
        sync = torch.cuda.synchronize if device == "cuda" else _no_sync
        for batch in batches:
            chunks = list(torch.split(x, batch))
            for threads in (thread_counts if device == "cpu" else [None]):
                if threads is not None:
                    set_threads(threads)
                seconds = best_time(torch_pass, repeats, fn, chunks, sync=sync)
                rows.append(_row(feature, size, "featinv torch", batch, threads, seconds,
                                 len(gray), device))
    if "cuda" not in devices and not any("CUDA" in n for n in notes):
        notes.append("CUDA not available (torch.cuda.is_available() is False): GPU rows skipped")
    return rows


def vlfeat_rows(feature: str, size: int, gray: np.ndarray, thread_counts: Sequence[int],
                repeats: int, notes: list[str]) -> list[dict]:
    if not vlfeat.available():
        note = "VLFeat's libvl not available: VLFeat rows skipped"
        if note not in notes:
            notes.append(note)
        return []
    fn = {"hog": lambda im: vlfeat.hog(im, HOG_CELL, HOG_ORIENTATIONS, matlab=False),
          "lbp": lambda im: vlfeat.lbp(im, LBP_CELL, matlab=False),
          "sift": vlfeat.sift}[feature]
    rows = []
    for threads in thread_counts:
        set_threads(threads)
        seconds = best_time(each, repeats, fn, gray)
        rows.append(_row(feature, size, "VLFeat C", 1, threads, seconds, len(gray)))
    return rows


def skimage_hog(im: np.ndarray) -> np.ndarray:
    from skimage.feature import hog

    return hog(im, orientations=HOG_ORIENTATIONS, pixels_per_cell=(HOG_CELL, HOG_CELL),
               cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=False)


def skimage_lbp(im_u8: np.ndarray, cell: int = LBP_CELL) -> np.ndarray:
    """nri_uniform codes (59) pooled into per-cell histograms, square-rooted and L2-normalised
    like VLFeat's: ``(Hc, Wc, 59)``, partial cells dropped."""
    from skimage.feature import local_binary_pattern

    codes = local_binary_pattern(im_u8, 8, 1, "nri_uniform")
    hc, wc = im_u8.shape[0] // cell, im_u8.shape[1] // cell
    blocks = codes[:hc * cell, :wc * cell].astype(np.intp).reshape(hc, cell, wc, cell)
    index = blocks + 59 * (np.arange(hc)[:, None, None, None] * wc
                           + np.arange(wc)[None, None, :, None])
    hist = np.bincount(index.ravel(), minlength=59 * hc * wc).reshape(hc, wc, 59)
    root = np.sqrt(hist)
    return root / (np.sqrt(hist.sum(-1, keepdims=True)) + 1e-10)


def skimage_rows(feature: str, size: int, gray: np.ndarray, repeats: int) -> list[dict]:
    set_threads(1)
    if feature == "hog":
        seconds = best_time(each, repeats, skimage_hog, gray)
    else:
        as_u8 = np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)
        seconds = best_time(each, repeats, skimage_lbp, as_u8)
    return [_row(feature, size, "skimage", 1, 1, seconds, len(gray))]


def sift_rows(size: int, gray: np.ndarray, batch: int, thread_counts: Sequence[int],
              repeats: int) -> tuple[list[dict], list[dict]]:
    """Rows for the table and the detection / grid split per detector."""
    import cv2

    rows, split = [], []
    as_u8 = np.clip(np.rint(gray * 255), 0, 255).astype(np.uint8)
    opencv = cv2.SIFT_create()
    for threads in thread_counts:
        set_threads(threads)
        seconds = best_time(each, repeats, partial(opencv.detectAndCompute, mask=None), as_u8)
        rows.append(_row("sift", size, "OpenCV SIFT (defaults)", 1, threads, seconds, len(gray)))

    backends = ["opencv"] + (["vlfeat"] if vlfeat.available() else [])
    images = torch.from_numpy(gray)[:, None]
    chunks = list(torch.split(images, batch))
    for backend in backends:
        module = SparseSIFT(SIFT_CELL, backend=backend)
        keypoints = [detect(im, backend) for im in gray]
        by_threads = {}
        for threads in thread_counts:
            set_threads(threads)
            full = best_time(each, repeats, module, chunks)
            found = best_time(each, repeats, partial(detect, backend=backend), gray)
            grid = best_time(each, repeats, partial(keypoint_grid, height=size, width=size,
                                                    cell_size=SIFT_CELL), keypoints)
            name = f"featinv sift/{backend}"
            rows += [_row("sift", size, name, batch, threads, full, len(gray)),
                     _row("sift", size, f"{name}: detect only", 1, threads, found, len(gray)),
                     _row("sift", size, f"{name}: grid only", 1, threads, grid, len(gray))]
            by_threads[threads] = (full, found, grid)
        full, found, grid = by_threads[min(thread_counts)]
        split.append({
            "size": size, "backend": backend, "threads": min(thread_counts),
            "keypoints_per_image": float(np.mean([len(k) for k in keypoints])),
            "detect_ms": 1e3 * found / len(gray), "grid_ms": 1e3 * grid / len(gray),
            "module_ms": 1e3 * full / len(gray),
            "grid_fraction": grid / found,
            "module_overhead_fraction": (full - found) / found,
        })
    return rows, split


# ---------------------------------------------------------------------------------------------
# targets and output


def _lookup(rows, **match) -> dict | None:
    found = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r["images_per_s"]) if found else None


def targets(rows: list[dict], split: list[dict], batch: int) -> list[dict]:
    """Per size: torch at ``batch`` (one thread) against VLFeat (one thread) and skimage."""
    out = []
    for feature in ("hog", "lbp"):
        for size in sorted({r["size"] for r in rows if r["feature"] == feature}):
            ours = _lookup(rows, feature=feature, size=size, implementation="featinv torch",
                           device="cpu", batch=batch, threads=1)
            if ours is None:
                continue
            for other, factor in (("VLFeat C", 1.0), ("skimage", SKIMAGE_FACTOR)):
                theirs = _lookup(rows, feature=feature, size=size, implementation=other, threads=1)
                if theirs is None:
                    continue
                speedup = ours["images_per_s"] / theirs["images_per_s"]
                name = f"torch batch {batch}, 1 thread >= {factor:g}x {other}, 1 thread"
                out.append({"target": name,
                            "feature": feature, "size": size, "speedup": speedup,
                            "required": factor, "met": speedup >= factor})
    for s in split:
        out.append({"target": f"sift grid <= {GRID_TARGET:.0%} of detection ({s['backend']})",
                    "feature": "sift", "size": s["size"], "grid_fraction": s["grid_fraction"],
                    "required": GRID_TARGET, "met": s["grid_fraction"] <= GRID_TARGET})
    return out


def format_table(rows: list[dict]) -> str:
    header = ("feature", "size", "implementation", "device", "batch", "threads", "images/s",
              "ms/image")
    lines = [(f"{header[0]:7s} {header[1]:>4s}  {header[2]:32s} {header[3]:6s} {header[4]:>5s} "
              f"{header[5]:>7s} {header[6]:>10s} {header[7]:>9s}")]
    for r in rows:
        threads = "-" if r["threads"] is None else str(r["threads"])
        lines.append(f"{r['feature']:7s} {r['size']:4d}  {r['implementation']:32s} "
                     f"{r['device']:6s} {r['batch']:5d} {threads:>7s} "
                     f"{r['images_per_s']:10.1f} {r['ms_per_image']:9.3f}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", default=str(ROOT.parent / "shared/data/val"),
                        help="folder of photos (read in place, sorted by name)")
    parser.add_argument("--sizes", type=_ints, default=[64, 128, 256],
                        help="comma-separated square sizes in px")
    parser.add_argument("--features", type=_names, default=list(FEATURES),
                        help="comma-separated subset of hog,lbp,sift")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the best counts")
    parser.add_argument("--images", type=int, default=64, help="images per pass")
    parser.add_argument("--batch", type=int, default=64, help="the large torch batch")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 32 px, 2 images, batch 2, 1 repeat")
    args = parser.parse_args(argv)
    unknown = set(args.features) - set(FEATURES)
    if unknown:
        parser.error(f"unknown features {sorted(unknown)}; choose from {','.join(FEATURES)}")
    if args.quick:
        args.sizes, args.images, args.batch, args.repeats = [32], 2, 2, 1
    if min(args.sizes) < LBP_CELL and "lbp" in args.features:
        parser.error(f"lbp needs sizes of at least {LBP_CELL} px")
    return args


def run_all(args: argparse.Namespace, thread_counts: Sequence[int], notes: list[str]
            ) -> tuple[list[dict], list[dict]]:
    rows: list[dict] = []
    split: list[dict] = []
    for size in args.sizes:
        gray = load_gray(args.val, args.images, size)
        for feature in args.features:
            if feature == "sift":
                more, more_split = sift_rows(size, gray, args.batch, thread_counts, args.repeats)
                rows += more
                split += more_split
                continue
            rows += torch_rows(feature, size, gray, sorted({1, args.batch}), thread_counts,
                               args.repeats, notes)
            rows += vlfeat_rows(feature, size, gray, thread_counts, args.repeats, notes)
            rows += skimage_rows(feature, size, gray, args.repeats)
    return rows, split


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    all_threads = torch.get_num_threads()
    thread_counts = sorted({all_threads, 1}, reverse=True)
    result = {"machine": machine(), "settings": {
        "command": " ".join([Path(sys.argv[0]).name] + list(argv if argv is not None
                                                             else sys.argv[1:])),
        "images_folder": str(args.val), "sizes": args.sizes, "features": args.features,
        "images": args.images, "batch": args.batch, "repeats": args.repeats,
        "thread_counts": thread_counts, "hog": {"cell": HOG_CELL, "orientations": HOG_ORIENTATIONS},
        "lbp": {"cell": LBP_CELL}, "sift": {"cell": SIFT_CELL}}}
    notes: list[str] = []
    saved = get_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            rows, split = run_all(args, thread_counts, notes)
        finally:
            restore_threads(saved)
    result.update(rows=rows, sift_grid=split, targets=targets(rows, split, args.batch),
                  notes=notes)
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    m = result["machine"]
    print(f"{m['cpu']}, {m['usable_cpus']} usable CPUs; torch {m['torch']}, OpenCV {m['opencv']}, "
          f"skimage {m['skimage']}, VLFeat {m['vlfeat']}")
    print(format_table(rows))
    for s in split:
        print(f"sift/{s['backend']} {s['size']} px: detect {s['detect_ms']:.3f} ms, grid "
              f"{s['grid_ms']:.3f} ms ({s['grid_fraction']:.1%} of detection), whole module "
              f"{s['module_ms']:.3f} ms ({s['module_overhead_fraction']:+.1%})")
    for t in result["targets"]:
        value = (f"{t['speedup']:.2f}x" if "speedup" in t else f"{t['grid_fraction']:.1%}")
        print(f"{'met ' if t['met'] else 'MISSED'} {t['feature']} {t['size']} px: {t['target']}: "
              f"{value}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
