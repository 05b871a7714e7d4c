"""End-to-end training throughput: ``featinv train`` as a user runs it, on real photos.

    python benchmarks/train_throughput.py                          # CPU matrix, ../shared/data
    python benchmarks/train_throughput.py --features hog --widths 0.125 --batches 64 \\
        --limit 2048 --epochs 3 --json docs/train_throughput_cpu.json
    python benchmarks/train_throughput.py --device cuda --limit 8000 --epochs 4   # on a GPU

Each setting (representation x residual width x batch size) runs the real command line in a fresh
process: ``featinv train -f F --preset residual --width W --batch-size B`` with validation on
``--val`` and the default schedules for validation and checkpoints. Reported per run:

- ``loop_images_per_s``: training images per second over the whole training loop, validations,
  checkpoints and epoch boundaries included (from the run's "settings:" line to its exit);
- ``in_epoch_images_per_s``: the mean of the epochs' own figures (metrics.jsonl), steps only;
- ``startup_s``: process start to the first step (imports, scanning, decoding into memory);
- ``overhead_pct``: how much slower the loop is than its epochs alone.

Prints a table and, with ``--json``, writes every number with the machine it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = {"cpu": {"feature": "hog", "width": 0.125, "images_per_s": 700.0},
           "cuda": {"feature": "hog", "width": 0.5, "batch": 256, "images_per_s": 30000.0}}


def run_one(feature: str, width: float, batch: int, args, out: Path) -> dict:
    cmd = [sys.executable, "-m", "featinv", "train", "-f", feature, "--data", args.data,
           "--out", str(out), "--preset", "residual", "--width", str(width),
           "--batch-size", str(batch), "--epochs", str(args.epochs), "--device", args.device,
           "--workers", str(args.workers), "--image-size", str(args.image_size),
           "--schedule", "cosine", *args.extra]
    if args.limit:
        cmd += ["--limit", str(args.limit)]
    if args.val:
        cmd += ["--val", args.val, "--val-limit", str(args.val_limit)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tempfile.gettempdir())
    t_loop, settings, log = None, "", []
    for line in proc.stderr:
        log.append(line)
        if line.startswith("settings:") and t_loop is None:
            t_loop, settings = time.perf_counter(), line.strip()
    proc.wait()
    t_end = time.perf_counter()
    if proc.returncode != 0 or t_loop is None:
        raise SystemExit(f"featinv train failed ({proc.returncode}):\n{''.join(log[-20:])}")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [r["images_per_second"] for r in records]
    trained = records[-1]["step"] * batch
    loop = trained / (t_end - t_loop)
    in_epoch = sum(per_epoch) / len(per_epoch)
    validated = [r for r in records if "val_normalized_error" in r]
    return {"feature": feature, "width": width, "batch": batch, "epochs": len(records),
            "images_trained": trained, "loop_images_per_s": round(loop, 1),
            "in_epoch_images_per_s": round(in_epoch, 1),
            "overhead_pct": round(100 * (in_epoch / loop - 1), 1),
            "startup_s": round(t_loop - t_start, 1), "wall_s": round(t_end - t_start, 1),
            "validations": len(validated),
            "val_normalized_error": validated[-1]["val_normalized_error"] if validated else None,
            "settings": settings}


def machine(device: str) -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(), "torch": torch.__version__, "device": device}
    try:
        info["cpu_model"] = next(line.split(":", 1)[1].strip()
                                 for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "train"))
    parser.add_argument("--val", default=str(SHARED / "val"))
    parser.add_argument("--val-limit", type=int, default=500)
    parser.add_argument("--limit", type=int, default=2048, help="training photos (0: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--features", default="hog,lbp,sift")
    parser.add_argument("--widths", default="0.125,0.5")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("extra", nargs="*", help="more featinv train options (after --)")
    args = parser.parse_args(argv)
    rows = []
    header = (f"{'feature':8s} {'width':>6s} {'batch':>6s} {'loop img/s':>11s} "
              f"{'epoch img/s':>12s} {'overhead':>9s} {'startup s':>10s} {'val err':>8s}")
    print(header, flush=True)
    for feature in args.features.split(","):
        for width in (float(w) for w in args.widths.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                out = Path(tempfile.mkdtemp(prefix="featinv-bench-"))
                try:
                    row = run_one(feature, width, batch, args, out / "run")
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                rows.append(row)
                err = row["val_normalized_error"]
                print(f"{feature:8s} {width:6.3f} {batch:6d} {row['loop_images_per_s']:11.1f} "
                      f"{row['in_epoch_images_per_s']:12.1f} {row['overhead_pct']:8.1f}% "
                      f"{row['startup_s']:10.1f} {err if err is None else round(err, 3)!s:>8s}",
                      flush=True)
    result = {"machine": machine(args.device),
              "settings": {k: v for k, v in vars(args).items() if k != "json"},
              "rows": rows, "targets": TARGETS}
    print(json.dumps({"rows": len(rows), "device": args.device}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
