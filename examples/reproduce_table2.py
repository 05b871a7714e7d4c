"""The paper's Table 2 here: shipped decoders against the optimisation baseline [20] on val photos.

    python examples/reproduce_table2.py --val ../shared/data/val --out docs

writes ``table2.json`` (normalized error, PSNR, SSIM and seconds per image of each method, on
the same photos, same batch size and same machine) and ``images/table2_hog.png`` (input | HOG
decoder | HOG optimisation | SIFT decoder | LBP decoder). The baseline takes about a second per
image on a 2-core CPU, so ``--limit`` (default 100) bounds the photos used.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from featinv.analysis.evaluate import load_square_images, run_timed
from featinv.io.images import make_grid, save_png
from featinv.inversion.methods import decoder_method, optimize_method
from featinv.analysis.metrics import normalized_error, psnr, ssim
from featinv.inversion.optimize import OptimizeConfig

PAPER = {"HOG (Hoggles [25])": 0.61, "HOG (optimisation [20])": 0.63, "HOG (ours)": 0.24,
         "SIFT (ours)": 0.28, "LBP (ours)": 0.38}


def scores(x: torch.Tensor, y: torch.Tensor, seconds: float) -> dict:
    return {"normalized_error": normalized_error(x, y), "psnr": float(psnr(x, y).mean()),
            "ssim": float(ssim(x, y).mean()), "seconds_per_image": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", default="../shared/data/val")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=OptimizeConfig.steps)
    parser.add_argument("--shown", type=int, default=4, help="photos in the figure")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="the decoders' precision (the baseline always runs in fp32)")
    args = parser.parse_args()
    torch.manual_seed(0)

    x = load_square_images(args.val, 128, args.limit)[0]
    methods = {"hog decoder": decoder_method("hog", precision=args.precision),
               "hog optimize": optimize_method("hog", cfg=OptimizeConfig(steps=args.steps)),
               "sift decoder": decoder_method("sift", precision=args.precision),
               "lbp decoder": decoder_method("lbp", precision=args.precision)}
    rows, recons = {}, {}
    for name, method in methods.items():
        recons[name], seconds = run_timed(method, x, args.batch_size)
        rows[name] = scores(x, recons[name], seconds)
        print(f"{name:14s} error {rows[name]['normalized_error']:.3f}  PSNR "
              f"{rows[name]['psnr']:.2f}  SSIM {rows[name]['ssim']:.3f}  "
              f"{rows[name]['seconds_per_image'] * 1000:.1f} ms/image", flush=True)
    hog, opt = rows["hog decoder"], rows["hog optimize"]
    summary = {"error_ratio_decoder_to_optimize": hog["normalized_error"] / opt["normalized_error"],
               "speedup_decoder_over_optimize": opt["seconds_per_image"] / hog["seconds_per_image"]}
    print(json.dumps(summary, indent=2))
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    result = {"n_images": len(x), "image_size": 128, "batch_size": args.batch_size,
              "device": "cpu", "torch_threads": torch.get_num_threads(),
              "decoder_precision": args.precision,
              "optimize": OptimizeConfig(steps=args.steps).to_json(), "methods": rows,
              **summary, "paper_table2": PAPER}
    (out / "table2.json").write_text(json.dumps(result, indent=2) + "\n")
    n = min(args.shown, len(x))
    columns = [x[:n]] + [recons[name][:n] for name in methods]
    save_png(make_grid([torch.stack([col[i] for col in columns]) for i in range(n)]),
             out / "images" / "table2_hog.png")
    print(out / "table2.json")


if __name__ == "__main__":
    main()
