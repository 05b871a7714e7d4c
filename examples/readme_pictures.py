"""The README's picture and the native-size pictures of docs/results.md, from the shipped decoders.

    python examples/readme_pictures.py --out docs/images [--val320 ../shared/data/val320]

Writes ``readme_astronaut.png`` (``featinv invert -f hog,sift,lbp skimage:astronaut
--side-by-side``: photo | HOG | SIFT | LBP at the photo's own 512 px, downscaled to 1400 px wide),
``astronaut_native_vs_128.png`` (top: the same; bottom: ``--size 128``, enlarged to the same width)
and, with ``--val320``, ``val320_native_vs_128.png`` (one val320 photo, the same two rows).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

FEATURES = "hog,sift,lbp"
VAL320_PHOTO = "n01530575_brambling.jpg"


def side_by_side(source: str, out: Path, *extra: str) -> Image.Image:
    """``featinv invert --side-by-side`` of ``source``, as the README's first command runs it."""
    subprocess.run([sys.executable, "-m", "featinv", "invert", "-f", FEATURES, source,
                    "--side-by-side", "-o", str(out), "--overwrite", *extra], check=True)
    return Image.open(out).convert("RGB")


def fit_width(image: Image.Image, width: int) -> Image.Image:
    return image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)


def two_rows(source: str, tmp: Path, width: int) -> Image.Image:
    """Top: at the photo's own size; bottom: at 128 px, enlarged to the same width."""
    native = side_by_side(source, tmp / "native.png")
    small = side_by_side(source, tmp / "small.png", "--size", "128")
    small = small.resize((native.width, round(small.height * native.width / small.width)),
                         Image.NEAREST)  # nearest: the 128 px pixels stay visible
    both = Image.new("RGB", (native.width, native.height + small.height), "white")
    both.paste(native, (0, 0))
    both.paste(small, (0, native.height))
    return fit_width(both, width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--val320", help="folder of val320 (for val320_native_vs_128.png)")
    args = ap.parse_args()
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        readme = side_by_side("skimage:astronaut", tmp / "astronaut.png")
        fit_width(readme, 1400).save(out / "readme_astronaut.png", optimize=True)
        two_rows("skimage:astronaut", tmp, 1200).save(out / "astronaut_native_vs_128.png",
                                                      optimize=True)
        if args.val320:
            two_rows(str(Path(args.val320) / VAL320_PHOTO), tmp, 1400).save(
                out / "val320_native_vs_128.png", optimize=True)
    print(f"wrote the pictures in {out}")


if __name__ == "__main__":
    main()
