"""ImageNet accuracy of SqueezeNet 1.0 with the Caffe-convention weights shipped with featinv
(``deepcompression``, the same file as ../shared/data/weights), as featinv computes it
(``squeezenet.pool10``), on the 500 photos of ../shared/data/val.

    python benchmarks/squeezenet_accuracy.py [--size 227] [--json out.json]

val/ holds one photo per class for the even indices of the sorted ImageNet classes, so photo i
(sorted by name) is class 2 i. Each photo is centre-cropped and resized to --size px.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import featinv
from featinv.io.images import center_crop_resize, open_rgb, pil_to_tensor

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="deepcompression",
                        help="deepcompression (shipped), imagenet, or a .npz/.safetensors file")
    parser.add_argument("--val", default=str(SHARED / "data/val"))
    parser.add_argument("--size", type=int, default=227)
    parser.add_argument("--json")
    args = parser.parse_args()
    ext = featinv.get_feature("squeezenet.pool10", weights=args.weights)
    photos = sorted(Path(args.val).glob("*.jpg"))
    top1 = top5 = 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(photos), 50):
            batch = torch.stack([pil_to_tensor(center_crop_resize(open_rgb(p), args.size))
                                 for p in photos[i:i + 50]])
            truth = (torch.arange(i, i + len(batch)) * 2).view(-1, 1)
            best = ext(batch).topk(5, dim=1).indices
            top1 += int((best[:, :1] == truth).sum())
            top5 += int((best == truth).any(1).sum())
    result = {"images": len(photos), "size": args.size, "top1": top1 / len(photos),
              "top5": top5 / len(photos), "convention": ext.module.preprocess.convention.name,
              "seconds": time.perf_counter() - start}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
