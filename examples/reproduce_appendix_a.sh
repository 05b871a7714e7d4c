#!/bin/bash
# Appendix A of the paper, reproduced at small scale. A pixel-loss decoder (HOG: the shipped one;
# SqueezeNet fire9: trained here first) is fine-tuned for the same number of steps with
#   (a) the pixel loss alone (the control),
#   (b) pixel + feature loss (the representation as its own comparator, as in Appendix A),
#   (c) pixel + feature + adversarial with the default weights,
#   (d) the same with a 10x stronger adversarial term;
#   (e) HOG only: pixel + feature loss in SqueezeNet fire5's space (a deeper comparator, as in
#       DeePSiM), for fewer steps (a SqueezeNet pass costs more than HOG);
# then every decoder (and, for HOG, the optimisation baseline) is evaluated on the same val
# photos with every metric of `featinv evaluate`.
#
#   bash examples/reproduce_appendix_a.sh hog OUT [DATA]          (DATA: ../shared/data)
#   bash examples/reproduce_appendix_a.sh squeezenet OUT [DATA]
#
# Interrupted? Run the same command again: finished runs are skipped, a cut run resumes.
# Fine-tuning instead of training from scratch is a compute choice (one 2-core CPU); see
# docs/paper.md, "Appendix A".
set -euo pipefail
WHICH=${1:?usage: reproduce_appendix_a.sh hog|squeezenet OUT [DATA]}
OUT=${2:?usage: reproduce_appendix_a.sh hog|squeezenet OUT [DATA]}
DATA=${3:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data}
WEIGHTS=$DATA/weights/squeezenet1_0_deepcompression_caffe.npz
VAL_LIMIT=${VAL_LIMIT:-500}
mkdir -p "$OUT"

train() {  # NAME ARGS...: one training run, skipped once finished, resumed when cut
  local run=$OUT/$1; shift
  [ -f "$run.done" ] && return 0
  local resume=(); [ -f "$run/train_state.safetensors" ] && resume=(--resume)
  featinv train "$@" --data "$DATA/train" --val "$DATA/val" --val-limit 100 --val-every 1 \
    --save-minutes 5 --out "$run" "${resume[@]}" 2>&1 | tee -a "$run.train.log"
  touch "$run.done"
}
evaluate() {  # NAME ARGS...: all metrics on the first VAL_LIMIT val photos, once
  local name=$1; shift
  [ -s "$OUT/$name.eval.json" ] && return 0
  featinv evaluate "$@" --data "$DATA/val" --limit "$VAL_LIMIT" \
    --perceptual-weights "$WEIGHTS" --json > "$OUT/$name.eval.json.part"
  mv "$OUT/$name.eval.json.part" "$OUT/$name.eval.json"
}

case $WHICH in
  hog)
    # the shipped HOG decoder's network (v2: x0.1875; the study in docs/paper.md tuned v1, x0.125)
    rep=(-f hog --preset residual --width 0.1875 --crop-scale 0.8)
    size=(--limit "${LIMIT:-16384}" --epochs "${EPOCHS:-2}")
    tune=(--lr 1e-4 --schedule constant
          --init-from "$(cd "$(dirname "$0")/.." && pwd)/featinv/zoo/hog.safetensors")
    base_eval=(-f hog) ;;
  squeezenet)
    rep=(-f squeezenet.fire9 --weights "$WEIGHTS" --image-size 128 --preset residual --width 0.125
         --crop-scale 0.8)
    train base "${rep[@]}" --limit "${BASE_LIMIT:-8192}" --epochs "${BASE_EPOCHS:-2}" \
      --schedule cosine --lr 1e-3
    size=(--limit "${LIMIT:-8192}" --epochs "${EPOCHS:-1}")
    tune=(--lr 1e-4 --schedule constant --init-from "$OUT/base/decoder.safetensors")
    base_eval=(-c "$OUT/base/decoder.safetensors") ;;
  *) echo "unknown representation '$WHICH': hog or squeezenet" >&2; exit 2 ;;
esac

arms=("pixel" "pixel,feature" "pixel,feature,adversarial" "pixel,feature,adversarial=0.05")
names=(pixel pixel_feature pixel_feature_adversarial pixel_feature_adversarial_x10)
for i in "${!arms[@]}"; do
  train "${names[$i]}" "${rep[@]}" "${size[@]}" "${tune[@]}" --loss "${arms[$i]}"
done
if [ "$WHICH" = hog ]; then  # (e) a deeper comparator, as in DeePSiM: SqueezeNet's fire5
  # (its own --limit and --epochs: featinv refuses an option given twice)
  train pixel_feature_squeezenet "${rep[@]}" "${tune[@]}" --limit "${SQ_LIMIT:-8192}" \
    --epochs 1 --loss pixel,feature=0.1 --comparator squeezenet.fire5 \
    --comparator-weights "$WEIGHTS"
  names+=(pixel_feature_squeezenet)
fi
evaluate base "${base_eval[@]}"
for name in "${names[@]}"; do evaluate "$name" -c "$OUT/$name/decoder.safetensors"; done
if [ "$WHICH" = hog ]; then
  VAL_LIMIT=${OPT_LIMIT:-100} evaluate optimize -f hog --method optimize --steps "${OPT_STEPS:-800}"
fi
