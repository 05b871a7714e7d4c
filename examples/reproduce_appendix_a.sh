#!/bin/bash
# Appendix A of the paper, reproduced at small scale: the shipped pixel-loss HOG decoder is
# fine-tuned for the same number of steps with (a) the pixel loss alone (control), (b) pixel +
# feature loss (HOG as its own comparator, as in Appendix A), (c) pixel + feature + adversarial
# with the default weights and (d) with a 10x stronger adversarial term; then every decoder, the
# shipped one and the optimisation baseline are evaluated on the same val photos with all metrics.
#
#   bash examples/reproduce_appendix_a.sh OUT [DATA]      (DATA: ../shared/data by default)
#
# Fine-tuning instead of training from scratch is a compute choice (one 2-core CPU); see
# docs/paper.md, "Appendix A".
set -euo pipefail
OUT=${1:?usage: reproduce_appendix_a.sh OUT [DATA]}
DATA=${2:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
WEIGHTS=$DATA/weights/squeezenet1_0_deepcompression_caffe.npz
LIMIT=${LIMIT:-16384}; EPOCHS=${EPOCHS:-2}; VAL_LIMIT=${VAL_LIMIT:-500}
mkdir -p "$OUT"
common=(-f hog --data "$DATA/train" --limit "$LIMIT" --epochs "$EPOCHS" --val "$DATA/val"
        --val-limit 100 --val-every 1 --preset residual --width 0.125 --crop-scale 0.8
        --lr 1e-4 --schedule constant --save-minutes 5
        --init-from "$(cd "$(dirname "$0")/.." && pwd)/featinv/zoo/hog.safetensors")
arms=("pixel" "pixel,feature" "pixel,feature,adversarial" "pixel,feature,adversarial=0.05")
names=(pixel pixel_feature pixel_feature_adversarial pixel_feature_adversarial_x10)
for i in "${!arms[@]}"; do
  run=$OUT/${names[$i]}
  if [ -f "$run/decoder.safetensors" ] && [ ! -f "$run/train_state.safetensors" ]; then
    continue   # finished earlier
  fi
  resume=(); [ -f "$run/train_state.safetensors" ] && resume=(--resume)
  featinv train "${common[@]}" --loss "${arms[$i]}" --out "$run" "${resume[@]}" \
    2>&1 | tee -a "$run.train.log"
done
evaluate() {  # NAME ARGS...: all metrics on the same val photos, once
  local name=$1; shift
  [ -s "$OUT/$name.eval.json" ] && return 0
  featinv evaluate "$@" --data "$DATA/val" --limit "$VAL_LIMIT" \
    --perceptual-weights "$WEIGHTS" --json > "$OUT/$name.eval.json.part"
  mv "$OUT/$name.eval.json.part" "$OUT/$name.eval.json"
}
evaluate shipped -f hog
for name in "${names[@]}"; do evaluate "$name" -c "$OUT/$name/decoder.safetensors"; done
evaluate optimize -f hog --method optimize --limit "${OPT_LIMIT:-100}"
