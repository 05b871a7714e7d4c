"""What the on-disk feature cache buys: ``featinv train`` throughput without it, cold and warm.

    python benchmarks/feature_cache.py --data ../shared/data/train --feature sift --limit 512

Runs three one-epoch trainings of a compact decoder on the same ``--limit`` photos (128 px,
batch 64, no validation): without a cache, with an empty cache (features computed and written)
and with the cache the second run filled (features read back, memory-mapped). Prints a table of
images/s (image loading, features and training step included) and the cache's size on disk;
``--json`` writes them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from featinv.training.loop import TrainConfig, train


def run(args, out: Path, cache: Path | None) -> dict:
    cfg = TrainConfig(feature=args.feature, data=args.data, out=str(out), epochs=1,
                      batch_size=64, limit=args.limit, workers=args.workers, device="cpu",
                      feature_cache=str(cache) if cache else None, cache_variants=1)
    t0 = time.perf_counter()
    record = train(cfg, log=lambda m: None)
    return {"images_per_second": record["images_per_second"],
            "wall_s": time.perf_counter() - t0,
            "cache_hit_rate": record.get("cache_hit_rate")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--feature", default="sift")
    parser.add_argument("--limit", type=int, default=512)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="featinv-cache-bench-"))
    try:
        rows = {"no cache": run(args, root / "a", None),
                "cold cache": run(args, root / "b", root / "cache"),
                "warm cache": run(args, root / "c", root / "cache")}
        size = sum(p.stat().st_size for p in (root / "cache").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.feature}, {args.limit} images, one epoch, compact decoder, 128 px, batch 64")
    for name, row in rows.items():
        print(f"{name:>10}: {row['images_per_second']:7.1f} images/s")
    print(f"cache size: {size / 2**20:.1f} MiB ({size / args.limit / 1024:.0f} KiB per image)")
    result = {"feature": args.feature, "images": args.limit, "rows": rows,
              "cache_bytes": size, "command": "python benchmarks/feature_cache.py "
              + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
