"""Which training recipe gives the lowest error for a budget of images seen (issue 23).

    python benchmarks/recipe.py                      # the sweep, resumable, ../shared/data
    python benchmarks/recipe.py --defaults           # featinv's defaults at 30k, 60k, 120k
    python benchmarks/recipe.py --arms v1,default    # only these
    python benchmarks/recipe.py --speed              # CPU time per image of each speed setting
    python benchmarks/recipe.py --report             # table + JSON from the finished arms only

Each arm is one real ``featinv train -f hog`` run on ``../shared/data/train`` at 128 px for a
fixed budget of training images seen (``--budget``), validated on the 500 photos of
``../shared/data/val``; the score is the paper's normalized error. Arms differ from the base
recipe in one lever each (learning-rate schedule and peak, weight EMA, batch size, width, depth,
L1 loss, group norm, low-resolution first, precision, crop scale), so each lever is measured on
the same budget. Two arms change the network in a way ``featinv train`` has no option for
(depth, group norm): they run the same command with the decoder patched in the process (``PATCH``
below), to measure whether an option would be worth adding.

Runs live in ``--runs`` (default ``../runs/recipe``, outside the repository), one folder per arm
named after its settings, and are reused: an interrupted arm resumes, a finished one is read back.
Wall time and images/s come from the runs themselves (``train_s``, ``images_per_s``) and are only
comparable on a quiet machine; ``cpu_s`` (the run's CPU seconds) much less disturbed by other
work. ``--speed`` measures the steady-state CPU time per training image of the v1 recipe and of
the defaults (the time-per-image column).

Writes ``docs/recipe.json`` (every arm: settings, budget, val error, times, the machine) and the
table in ``docs/recipe.md`` between its ``<!-- recipe table -->`` markers.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
V1 = ["--preset", "residual", "--width", "0.125", "--schedule", "cosine", "--lr", "1e-3",
      "--crop-scale", "0.8"]  # the recipe of the v1 shipped decoders (sized to each budget)
# the base every lever is measured against; the winner of the sweep became featinv's default
BASE = ["--preset", "residual", "--width", "0.125", "--schedule", "onecycle", "--lr", "3e-3",
        "--crop-scale", "0.8"]
SMALL, MEDIUM, LARGE = 30_000, 60_000, 120_000
# what every sweep arm holds fixed unless it sets it (featinv's defaults when the sweep began);
# not part of an arm's name, so arms trained before a default changed stay valid
PINNED = [("--batch-size", "64"), ("--low-res-first", "off"), ("--ema", "0"),
          ("--pixel-distance", "l2")]

# code run in the training process before `featinv train`, for levers with no option
PATCH = {
    "group_norm": "import torch.nn as nn, featinv.decoders.networks as n\n"
                  "n._norm = lambda c: nn.GroupNorm(min(8, c), c)\n",
    "depth1": "import featinv.decoders.networks as n\norig = n.ResidualUNet.__init__\n"
              "n.ResidualUNet.__init__ = lambda self, *a, blocks=2, **k: orig(self, *a, "
              "blocks=1, **k)\n",
    "depth4": "import featinv.decoders.networks as n\norig = n.ResidualUNet.__init__\n"
              "n.ResidualUNet.__init__ = lambda self, *a, blocks=2, **k: orig(self, *a, "
              "blocks=4, **k)\n",
}


def with_opt(args: list[str], name: str, value: str | None) -> list[str]:
    """``args`` with option ``name`` set to ``value`` (removed when None)."""
    out, skip = [], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        out.append(a)
    return out + ([name, value] if value is not None else [])


def arms() -> list[dict]:
    """Every arm: name, lever group, budget, seed, train options, optional patch."""
    def arm(name, group, args, budget=SMALL, seed=0, patch=None):
        return {"name": name, "group": group, "budget": budget, "seed": seed, "args": args,
                "patch": patch}

    b = BASE
    w25_low = with_opt(b, "--width", "0.25") + ["--low-res-first", "64:0.5"]
    w25_b32_c1 = with_opt(with_opt(b, "--width", "0.25"), "--crop-scale", "1.0") + [
        "--batch-size", "32"]
    candidate = with_opt(with_opt(b, "--width", "0.25"), "--lr", "5e-3") + [
        "--batch-size", "32", "--low-res-first", "64:0.5"]
    # ordered by how much each arm was expected to tell, so that a sweep cut short is useful
    table = [
        arm("v1", "baseline", V1), arm("base", "baseline", b),
        arm("schedule linear", "schedule", with_opt(b, "--schedule", "linear")),
        arm("lr 5e-3", "peak learning rate", with_opt(b, "--lr", "5e-3")),
        arm("width 0.25", "width", with_opt(b, "--width", "0.25")),
        arm("64 px first half", "low resolution first", b + ["--low-res-first", "64:0.5"]),
        arm("ema 0.998", "weight EMA", b + ["--ema", "0.998"]),
        arm("batch 32", "batch size", b + ["--batch-size", "32"]),
        arm("crop 1.0", "crop scale", with_opt(b, "--crop-scale", "1.0")),
        arm("width 0.25, batch 32, crop 1.0", "combined", w25_b32_c1),
        arm("width 0.25, batch 32, lr 5e-3, 64 px first half", "combined", candidate),
        arm("width 0.5, batch 32, 64 px first half", "combined",
            with_opt(b, "--width", "0.5") + ["--batch-size", "32", "--low-res-first", "64:0.5"]),
        arm("width 0.25, batch 16, 64 px first half", "combined",
            with_opt(b, "--width", "0.25") + ["--batch-size", "16", "--low-res-first", "64:0.5"]),
        arm("lr 1e-3", "peak learning rate", with_opt(b, "--lr", "1e-3")),
        arm("lr 8e-3", "peak learning rate", with_opt(b, "--lr", "8e-3")),
        arm("l1 loss", "pixel loss", b + ["--pixel-distance", "l1"]),
        arm("default, lr 8e-3", "defaults", ["--lr", "8e-3"]),  # the defaults, a higher peak
        arm("group norm", "normalisation", b, patch="group_norm"),
        arm("fp32", "precision", b + ["--precision", "fp32"]),
        arm("depth 4 blocks", "depth", b, patch="depth4"),
        arm("v1", "baseline", V1, MEDIUM),
        arm("base", "baseline", b, seed=1), arm("v1", "baseline", V1, seed=1),
        # measured when the sweep has time for them
        arm("width 0.25 + 64 px first half", "combined", w25_low),
        arm("crop 0.35", "crop scale", with_opt(b, "--crop-scale", "0.35")),
        arm("batch 128", "batch size", b + ["--batch-size", "128"]),
        arm("depth 1 block", "depth", b, patch="depth1"),
        arm("width 0.0625", "width", with_opt(b, "--width", "0.0625")),
        arm("schedule cosine", "schedule", with_opt(b, "--schedule", "cosine")),
        arm("schedule step", "schedule", with_opt(b, "--schedule", "step")),
        arm("ema 0.99", "weight EMA", b + ["--ema", "0.99"]),
        arm("v1", "baseline", V1, LARGE), *default_arms()[-1:],
    ]
    return table


def default_arms() -> list[dict]:
    """featinv's defaults as a user gets them (no option but the budget), at every budget."""
    return [{"name": "default", "group": "defaults", "budget": budget, "seed": seed, "args": [],
             "patch": None} for budget, seed in ((SMALL, 0), (MEDIUM, 0), (SMALL, 1),
                                                 (MEDIUM, 1), (LARGE, 0))]


def folder_name(a: dict) -> str:
    key = json.dumps([a["args"], a["budget"], a["seed"], a["patch"]])
    slug = "".join(c if c.isalnum() else "_" for c in a["name"])
    return f"{slug}-{a['budget'] // 1000}k-s{a['seed']}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def cpu_info() -> dict:
    model, flags = platform.processor(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
                break
        for line in text.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": model, "flags": flags, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def run_arm(a: dict, runs: Path, data: Path, threads: int | None = None) -> dict:
    """Train (or resume, or read back) one arm; returns its result row."""
    out = runs / folder_name(a)
    done = out / "recipe_result.json"
    if done.exists():
        return json.loads(done.read_text())
    cmd = ["featinv", "train", "-f", "hog", "--data", str(data / "train"), "--val",
           str(data / "val"), "--budget", str(a["budget"]), "--seed", str(a["seed"]),
           "--out", str(out), *a["args"]]
    if (out / "train_state.safetensors").exists():
        cmd.append("--resume")
    for name, value in PINNED:  # held fixed whatever featinv's defaults are now
        if a["group"] != "defaults" and name not in a["args"]:
            cmd += [name, value]
    if threads:  # not part of the arm: it changes the speed, not what is learned
        cmd += ["--threads", str(threads)]
    code = (PATCH.get(a["patch"], "") + "import sys\nfrom featinv.cli.main import main\n"
            f"sys.argv = {cmd!r}\nmain()\n")
    print(f"[{time.strftime('%H:%M:%S')}] {a['name']} @ {a['budget']:,} seed {a['seed']}: "
          f"{out.name}", flush=True)
    t0, cpu0 = time.perf_counter(), _children_cpu()
    with open(runs / f"{out.name}.log", "a") as log:
        # run from the runs folder: with PYTHONPATH naming a copy of featinv, a sweep keeps
        # training the code it started with while the repository changes
        proc = subprocess.run([sys.executable, "-c", code], stdout=log, stderr=log, cwd=runs)
    if proc.returncode != 0:
        raise SystemExit(f"{a['name']}: featinv train exited {proc.returncode}; see "
                         f"{runs / (out.name + '.log')}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = records[-1]
    row = {**a, "folder": out.name, "images_seen": final["images_seen"],
           "val_normalized_error": final["val_normalized_error"],
           "val_psnr": final["val_psnr"], "val_ssim": final["val_ssim"],
           "train_s": sum(r["images_seen_epoch"] / r["images_per_second"]
                          for r in _epochs(records)),
           "wall_s": time.perf_counter() - t0,
           # CPU seconds of the run and its loader processes (start-up and validation
           # included): unlike wall time, barely changed by other work on the machine
           "cpu_s": _children_cpu() - cpu0,
           "load_average": os.getloadavg()[0],
           "curve": [[r["images_seen"], r["val_normalized_error"]] for r in records
                     if "val_normalized_error" in r]}
    row["images_per_s"] = row["images_seen"] / row["train_s"]
    done.write_text(json.dumps(row, indent=1))
    return row


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _epochs(records: list[dict]) -> list[dict]:
    """Each epoch's record with the images it trained (``images_seen_epoch``)."""
    out, before = [], 0
    for r in records:
        out.append({**r, "images_seen_epoch": r["images_seen"] - before})
        before = r["images_seen"]
    return out


def speed(runs: Path, data: Path, threads: int | None) -> list[dict]:
    """CPU seconds per training image of each speed setting, in its steady state: two runs of
    1,600 and 4,800 images on 2,048 photos, whose difference leaves start-up and validation out.
    CPU time, unlike wall time, barely moves when other work shares the machine."""
    settings = {"v1 recipe": V1 + ["--batch-size", "64", "--low-res-first", "off"],
                "default": [], "default, fp32": ["--precision", "fp32"],
                "default without low resolution first": ["--low-res-first", "off"]}
    rows = []
    for name, args in settings.items():
        cpu = []
        for budget in (1600, 4800):
            out = runs / "speed" / f"{''.join(c if c.isalnum() else '_' for c in name)}_{budget}"
            cmd = [sys.executable, "-m", "featinv", "train", "-f", "hog", "--data",
                   str(data / "train"), "--limit", "2048", "--budget", str(budget), "--out",
                   str(out), "--overwrite", "--save-minutes", "1000", *args]
            if threads:
                cmd += ["--threads", str(threads)]
            before = _children_cpu()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=runs)
            cpu.append(_children_cpu() - before)
        per_image = (cpu[1] - cpu[0]) / 3200
        rows.append({"setting": name, "args": args, "cpu_ms_per_image": 1000 * per_image,
                     "threads": threads, "load_average": os.getloadavg()[0]})
        print(f"{name:40s} {1000 * per_image:6.2f} CPU ms/image", flush=True)
    return rows


def table(rows: list[dict], speeds: list[dict]) -> str:
    """The markdown table of docs/recipe.md."""
    lines = ["| arm | lever | budget | seed | val normalized error | Δ vs base (same budget) |",
             "|---|---|---:|---:|---:|---:|"]
    base = {r["budget"]: r["val_normalized_error"] for r in rows
            if r["name"] == "base" and r["seed"] == 0}
    for r in sorted(rows, key=lambda r: (r["group"] != "defaults", r["group"] != "baseline",
                                         r["group"], r["budget"], r["name"], r["seed"])):
        delta = (f"{r['val_normalized_error'] - base[r['budget']]:+.4f}"
                 if r["budget"] in base and r["name"] != "base" else "")
        lines.append(f"| {r['name']} | {r['group']} | {r['budget']:,} | {r['seed']} | "
                     f"{r['val_normalized_error']:.4f} | {delta} |")
    if speeds:
        v1 = next((s["cpu_ms_per_image"] for s in speeds if s["setting"] == "v1 recipe"), None)
        lines += ["", "| setting | CPU ms per training image | × the v1 recipe |",
                  "|---|---:|---:|"]
        lines += [f"| {s['setting']} | {s['cpu_ms_per_image']:.2f} | "
                  + (f"{s['cpu_ms_per_image'] / v1:.2f}" if v1 else "") + " |" for s in speeds]
    return "\n".join(lines)


def write_report(rows: list[dict], speeds: list[dict], json_path: Path, md_path: Path) -> None:
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    speeds = speeds or previous.get("speed", [])
    json_path.write_text(json.dumps({"machine": cpu_info(), "arms": rows, "speed": speeds},
                                    indent=1) + "\n")
    if md_path.exists():
        text = md_path.read_text()
        start, end = "<!-- recipe table -->", "<!-- end recipe table -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            md_path.write_text(head + start + "\n" + table(rows, speeds) + "\n" + end
                               + rest.split(end, 1)[1])
    print(table(rows, speeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "recipe")
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--arms", help="comma-separated arm names (default: all)")
    parser.add_argument("--defaults", action="store_true",
                        help="featinv's default recipe at each budget (instead of the sweep)")
    parser.add_argument("--speed", action="store_true", help="measure images/s per setting")
    parser.add_argument("--report", action="store_true", help="only collect finished arms")
    parser.add_argument("--threads", type=int, help="CPU threads of each run (default: the "
                        "machine's; 1 runs better beside other work)")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "recipe.json")
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "recipe.md")
    args = parser.parse_args()
    if not (args.data / "train").is_dir():
        raise SystemExit(f"no training photos in {args.data / 'train'} (give --data)")
    args.runs.mkdir(parents=True, exist_ok=True)
    todo = default_arms() if args.defaults else arms()
    if args.defaults and not args.arms:  # the largest budget waits for the sweep's end
        todo = todo[:-1]
    if args.arms:
        wanted = {n.strip() for n in args.arms.split(",")}
        todo = [a for a in todo if a["name"] in wanted]
    speeds = speed(args.runs, args.data, args.threads) if args.speed else []
    if args.speed and not args.arms:
        todo = []  # only the speed table
    rows = []
    for a in todo:
        if (args.runs / "STOP").exists():  # touch RUNS/STOP to end the sweep between arms
            print("STOP file found: ending the sweep here", flush=True)
            break
        if args.report and not (args.runs / folder_name(a) / "recipe_result.json").exists():
            continue
        rows.append(run_arm(a, args.runs, args.data, args.threads))
    finished = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*/recipe_result.json"))]
    known = {folder_name(a) for a in arms() + default_arms()}
    write_report([r for r in finished if r["folder"] in known], speeds, args.json, args.md)


if __name__ == "__main__":
    main()
