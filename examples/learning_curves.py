"""Validation error against training images seen, for shipped decoders and training runs.

    python examples/learning_curves.py v1=featinv/zoo/hog.safetensors v2=../runs/v2/hog \\
        -o docs/images/hog_v1_v2_curves.png --json docs/hog_curves.json

Each argument is ``LABEL=SOURCE``: a decoder file (its packed history) or a run folder (its
``metrics.jsonl``); ``LABEL=SOURCE@IMAGES`` for a run that continued another (``--init-from``)
after IMAGES images, so that its curve starts where the other ended. Prints, for each curve, the last validation error and the slope over the last
``--tail`` images seen (error change per 100,000 images), which says whether training more would
still pay.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def history(source: str) -> list[tuple[float, float]]:
    """``(images seen, val normalized error)`` of each validation of ``source``."""
    path = Path(source)
    if path.is_dir():
        rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()
                if line.strip()]
        batch = None
    else:
        from featinv.io import checkpoint

        meta = checkpoint.read_meta(path)
        rows, batch = meta["packed"]["history"], meta["training"]["batch_size"]
    from featinv.inversion.zoo import images_seen

    return [(images_seen(r, batch), r["val_normalized_error"])
            for r in rows if "val_normalized_error" in r]


def slope(points: list[tuple[float, float]], tail: float) -> float | None:
    """Least-squares change of the error per 100,000 images over the last ``tail`` images."""
    last = points[-1][0]
    xs, ys = zip(*[(x, y) for x, y in points if x >= last - tail]) if points else ((), ())
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.array(xs) / 1e5, np.array(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("curves", nargs="+", help="LABEL=SOURCE (decoder file or run folder)")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--json", help="also write the points and slopes here")
    ap.add_argument("--tail", type=float, default=100_000,
                    help="images over which the final slope is fitted")
    ap.add_argument("--title", default="")
    ap.add_argument("--drop-above", type=float,
                    help="leave out validations above this error (those of runs that validated "
                         "during --low-res-first, before featinv waited for it)")
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    summary = {}
    for item in args.curves:
        label, _, source = item.partition("=")
        source, _, offset = source.partition("@")
        points = [(x + float(offset or 0), y) for x, y in history(source)
                  if args.drop_above is None or y <= args.drop_above]
        if not points:
            raise SystemExit(f"{source}: no validation in its history")
        ax.plot([x / 1000 for x, _ in points], [y for _, y in points], marker=".", label=label)
        summary[label] = {"source": Path(source).name, "points": points,
                          "last_images_seen": points[-1][0], "last_error": points[-1][1],
                          "best_error": min(y for _, y in points),
                          "slope_per_100k_images": slope(points, args.tail)}
        s = summary[label]["slope_per_100k_images"]
        print(f"{label}: {points[-1][1]:.4f} after {points[-1][0]:,.0f} images; slope over the "
              f"last {args.tail:,.0f}: {'n/a' if s is None else f'{s:+.4f}'} per 100k images")
    ax.set(xlabel="training images seen (thousands)", ylabel="val normalized error",
           title=args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
