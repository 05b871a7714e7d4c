#!/usr/bin/env bash
# The recipes of the decoders shipped in featinv/zoo (see docs/results.md#recipes).
# Each decoder is one `featinv train` command, then `featinv pack` (float16 + history + recipe).
# On the 2-core CPU of the development machine the three ran side by side, one thread each.
set -euo pipefail
DATA=${DATA:-../shared/data}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common="--data $DATA/train --val $DATA/val --preset residual --schedule cosine --crop-scale 0.8 --workers 1 --save-every 100"
declare -A own=([hog]="--width 0.125 --epochs 15" [lbp]="--width 0.25 --epochs 15"
                [sift]="--width 0.125 --epochs 8")

for name in hog lbp sift; do
  featinv train -f $name ${own[$name]} $common --out runs/zoo/$name &
done
wait
for name in hog lbp sift; do
  featinv pack runs/zoo/$name -o featinv/zoo/$name.safetensors \
    --recipe "featinv train -f $name ${own[$name]} $common --out runs/zoo/$name"
done
