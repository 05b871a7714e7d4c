"""How long the quick commands take, from start to exit: ``featinv --help``, ``list-features``,
``describe hog`` and ``zoo``.

    python benchmarks/cli_latency.py --repeats 5 --json cli_latency.json

Each run is a fresh process (the ``featinv`` script beside this Python, else ``python -m
featinv``) timed by wall clock. ``warm``: with the listing cache filled (one untimed run first,
in a cache folder of the benchmark's own); ``cold`` (``--cold``): every run with an empty cache
folder, as on the first run after installing or upgrading. Prints the median, minimum and
maximum of ``--repeats`` runs per command; ``--json`` also writes every run's time.
``--source DIR`` times the featinv of another checkout (e.g. ``git worktree add /tmp/old
COMMIT``) with this Python and its packages, to compare versions on one machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("--help", "list-features", "describe hog", "zoo")
TARGET_S = 1.0


# runs featinv from a source folder, ahead of an editable install's import hook
LAUNCHER = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if not "
            "getattr(f, '__module__', '').startswith('__editable__')]; sys.path.insert(0, {!r}); "
            "sys.argv[0] = 'featinv'; from featinv.cli.main import main; main()")


def featinv_command(source: str | None = None) -> list[str]:
    if source:
        return [sys.executable, "-c", LAUNCHER.format(str(Path(source).resolve()))]
    script = Path(sys.executable).parent / "featinv"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "featinv"]


def time_run(args: list[str], cache: Path, source: str | None = None) -> float:
    """Seconds for one run of ``featinv ARGS`` in a new process; a failing run is an error."""
    env = {**os.environ, "FEATINV_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    out = subprocess.run(featinv_command(source) + args, capture_output=True, text=True,
                         env=env)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"featinv {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
    return seconds


def measure(command: str, repeats: int, cold: bool, folder: Path,
            source: str | None = None) -> dict:
    args = command.split()
    runs = []
    if not cold:
        time_run(args, folder / "warm", source)  # fills the cache (and the disk cache)
    for i in range(repeats):
        cache = folder / f"cold{i}" if cold else folder / "warm"
        runs.append(time_run(args, cache, source))
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
    return {"command": f"featinv {command}", "mode": "cold" if cold else "warm",
            "median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs),
            "runs_s": runs}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS),
                        help="Commands to time, each one argument (e.g. 'describe hog').")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="Also time runs with an empty cache.")
    parser.add_argument("--source", help="Time the featinv package in this folder instead.")
    parser.add_argument("--json", help="Write the results to this file.")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="featinv-latency-") as tmp:
        for command in args.commands:
            rows.append(measure(command, args.repeats, False, Path(tmp), args.source))
            if args.cold:
                rows.append(measure(command, args.repeats, True, Path(tmp), args.source))
    result = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "logical_cpus": os.cpu_count(),
                          "load_average": list(os.getloadavg())},
              "settings": {"repeats": args.repeats, "source": args.source,
                           "runner": featinv_command()[0]},
              "target_s": TARGET_S, "rows": rows}
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  mode  median s  min s  max s  target")
    for r in rows:
        ok = "ok" if r["median_s"] <= TARGET_S else "over"
        print(f"{r['command']:<{width}}  {r['mode']:<4}  {r['median_s']:8.2f}  {r['min_s']:5.2f}  "
              f"{r['max_s']:5.2f}  {ok}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
