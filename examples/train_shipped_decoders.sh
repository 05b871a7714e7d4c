#!/usr/bin/env bash
# The recipes of the decoders shipped in featinv/zoo (see docs/results.md#recipes).
# Each decoder is one `featinv train` command, then `featinv pack` (float16 + history + recipe).
# The runs go one after the other, each with all cores and the machine's defaults (threads,
# precision, channels-last, training images decoded once into memory). The shipped files were
# trained with the earlier recipe, stored in each file and listed in docs/results.md: the three
# side by side with OMP_NUM_THREADS=1, `--workers 1 --save-every 100`.
set -euo pipefail
DATA=${DATA:-../shared/data}
common="--data $DATA/train --val $DATA/val --preset residual --schedule cosine --crop-scale 0.8"
declare -A own=([hog]="--width 0.125 --epochs 15" [lbp]="--width 0.25 --epochs 15"
                [sift]="--width 0.125 --epochs 8")

for name in hog lbp sift; do
  featinv train -f $name ${own[$name]} $common --out runs/zoo/$name
  featinv pack runs/zoo/$name -o featinv/zoo/$name.safetensors --overwrite \
    --recipe "featinv train -f $name ${own[$name]} $common --out runs/zoo/$name"
done
