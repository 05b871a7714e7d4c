"""How closely featinv's OpenCV SIFT detector agrees with VLFeat's vl_sift (the paper's).

For each image, every VLFeat frame is matched to its nearest OpenCV frame (position, log scale and
angle together). A frame counts as *found* when the match is within 1 px and a quarter octave.
Reports per image set: frames per image, found fraction both ways, median position / scale / angle
errors of found frames and the median correlation of their descriptors.

    python benchmarks/sift_agreement.py [--val ../shared/data/val --limit 100] [--json out.json]

Uses the 8 VLFeat reference arrays (their stored `sift_*` outputs) and photos from the validation
folder (libvl through featinv.features.vlfeat, centre-cropped to 128 px).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from featinv.features import vlfeat
from featinv.features.sift import Keypoints, detect
from featinv.io.images import center_crop_resize, find_images, open_rgb, pil_to_tensor
from featinv.representation.spec import rgb_to_gray

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared/reference/vlfeat"


def match(reference: Keypoints, ours: Keypoints) -> dict:
    """Nearest-neighbour match of every reference frame to one of ours."""
    if len(reference) == 0 or len(ours) == 0:
        return {"found_ref": float(len(reference) == 0), "found_ours": float(len(ours) == 0),
                "dpos": [], "dlog2s": [], "dangle": [], "corr": []}
    r, o = reference.frames, ours.frames
    dpos = np.hypot(r[:, None, 0] - o[None, :, 0], r[:, None, 1] - o[None, :, 1])
    dlog2s = np.abs(np.log2(r[:, None, 2] / o[None, :, 2]))
    dangle = np.abs((r[:, None, 3] - o[None, :, 3] + math.pi) % (2 * math.pi) - math.pi)
    cost = dpos ** 2 + (2 * dlog2s) ** 2 + dangle ** 2
    best = cost.argmin(1)
    rows = np.arange(len(r))
    found = (dpos[rows, best] < 1.0) & (dlog2s[rows, best] < 0.25)
    found_ours = ((dpos < 1.0) & (dlog2s < 0.25)).any(0)
    corr = [float(np.corrcoef(reference.descriptors[i], ours.descriptors[best[i]])[0, 1])
            for i in np.nonzero(found)[0]]
    return {"found_ref": float(found.mean()), "found_ours": float(found_ours.mean()),
            "dpos": dpos[rows, best][found].tolist(), "dlog2s": dlog2s[rows, best][found].tolist(),
            "dangle": dangle[rows, best][found].tolist(), "corr": corr}


def summarise(name: str, pairs: list[tuple[Keypoints, Keypoints]]) -> dict:
    stats = [match(ref, ours) for ref, ours in pairs]
    pooled = {k: sum((s[k] for s in stats), []) for k in ("dpos", "dlog2s", "dangle", "corr")}
    return {
        "images": name, "n_images": len(pairs),
        "vlfeat_frames_per_image": float(np.mean([len(r) for r, _ in pairs])),
        "opencv_frames_per_image": float(np.mean([len(o) for _, o in pairs])),
        "vlfeat_found_in_opencv": float(np.mean([s["found_ref"] for s in stats])),
        "opencv_found_in_vlfeat": float(np.mean([s["found_ours"] for s in stats])),
        "median_position_error_px": float(np.median(pooled["dpos"])),
        "median_scale_error_octaves": float(np.median(pooled["dlog2s"])),
        "median_angle_error_deg": float(np.degrees(np.median(pooled["dangle"]))),
        "median_descriptor_correlation": float(np.median(pooled["corr"])),
    }


def reference_pairs() -> list[tuple[Keypoints, Keypoints]]:
    pairs = []
    for path in sorted(REFERENCE.glob("*.npz")):
        data = np.load(path)
        ref = Keypoints(data["sift_frames"].astype(np.float64), data["sift_descr"])
        pairs.append((ref, detect(data["image"], "opencv")))
    return pairs


def photo_pairs(folder: str, limit: int, size: int) -> list[tuple[Keypoints, Keypoints]]:
    pairs = []
    for path in find_images(folder)[:limit]:
        rgb = pil_to_tensor(center_crop_resize(open_rgb(path), size))  # (3, size, size) in [0, 1]
        gray = rgb_to_gray(rgb[None])[0, 0].numpy()
        gray = np.round(gray * 255) / 255  # what OpenCV sees, so both get the same pixels
        pairs.append((Keypoints(*vlfeat.sift(gray)), detect(gray, "opencv")))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", default=str(ROOT.parent / "shared/data/val"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()
    rows = [summarise("VLFeat reference arrays", reference_pairs())]
    if vlfeat.available() and Path(args.val).is_dir():
        rows.append(summarise(f"{args.val} ({args.size} px)",
                              photo_pairs(args.val, args.limit, args.size)))
    keys = [k for k in rows[0] if k != "images"]
    for row in rows:
        print(row["images"])
        for k in keys:
            print(f"  {k:32s} {row[k]:.3f}" if isinstance(row[k], float) else f"  {k:32s} {row[k]}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
