"""The Appendix A picture (like the paper's Figures 12-13): photos, and their reconstructions
from HOG by decoders trained with different losses and by the optimisation baseline.

    python examples/appendix_a_figure.py hog RUNS --data ../shared/data/val --n 6 \
        -o docs/images/appendix_a_hog.png

``RUNS`` is the folder of ``examples/reproduce_appendix_a.sh`` for that representation (hog or
squeezenet; the optimisation baseline is shown for hog). The photos are the first ``--n``
of ``--data`` by name (not picked by hand). Every column is made with the ``featinv invert``
command at 128 px (the decoders' training scale) and shown as the centre 128 x 128 square.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from featinv.io.images import center_crop_resize, find_images

SIZE = 128
ARMS = {  # header -> featinv invert arguments (RUNS substituted)
    "pixel": ["-c", "{runs}/pixel/decoder.safetensors"],
    "+ feature": ["-c", "{runs}/pixel_feature/decoder.safetensors"],
    "+ feat. + adv.": ["-c", "{runs}/pixel_feature_adversarial/decoder.safetensors"],
    "+ feat. + adv. x10": ["-c", "{runs}/pixel_feature_adversarial_x10/decoder.safetensors"],
}
COLUMNS = {
    "hog": {"pixel (shipped)": ["-f", "hog"], **ARMS,
            "+ SqueezeNet feat.": ["-c", "{runs}/pixel_feature_squeezenet/decoder.safetensors"],
            "optimisation [20]": ["-f", "hog", "--method", "optimize", "--steps", "{steps}"]},
    "squeezenet": {"pixel (base)": ["-c", "{runs}/base/decoder.safetensors"], **ARMS},
}


def reconstruct(photos: list[Path], args: list[str], out: Path) -> list[Path]:
    """Run ``featinv invert`` on the photos; the reconstruction of each, in order."""
    subprocess.run([sys.executable, "-m", "featinv", "invert", *args, "--size", str(SIZE),
                    "-o", str(out),
                    *map(str, photos)], check=True)
    found = [sorted(out.glob(f"{p.stem}.*png")) for p in photos]  # NAME.LABEL.png
    missing = [p.name for p, paths in zip(photos, found) if len(paths) != 1]
    if missing:
        sys.exit(f"featinv invert {' '.join(args)} wrote no single picture for {missing}")
    return [paths[0] for paths in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("feature", choices=sorted(COLUMNS))
    parser.add_argument("runs")
    parser.add_argument("--data", default="../shared/data/val")
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--steps", type=int, default=800, help="of the optimisation baseline")
    parser.add_argument("-o", "--out", default="docs/images/appendix_a_hog.png")
    args = parser.parse_args()
    photos = find_images(args.data)[:args.n]
    columns = {"photo": photos}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (header, cli) in enumerate(COLUMNS[args.feature].items()):
            cli = [a.format(runs=args.runs, steps=args.steps) for a in cli]
            columns[header] = reconstruct(photos, cli, Path(tmp) / str(i))
        head, pad = 16, 2
        sheet = Image.new("RGB", (len(columns) * (SIZE + pad), head + len(photos) * (SIZE + pad)),
                          "white")
        draw = ImageDraw.Draw(sheet)
        for c, (header, paths) in enumerate(columns.items()):
            draw.text((c * (SIZE + pad) + 2, 2), header, fill="black")
            for r, path in enumerate(paths):
                square = center_crop_resize(Image.open(path).convert("RGB"), SIZE)
                sheet.paste(square, (c * (SIZE + pad), head + r * (SIZE + pad)))
    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists; remove it first (this script never overwrites).")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
