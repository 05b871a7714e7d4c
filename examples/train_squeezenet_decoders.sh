#!/usr/bin/env bash
# The SqueezeNet layer decoders shipped in featinv/zoo (issue 25; docs/cnn.md), one after the
# other, each resumable: rerun this script after an interruption and every finished layer is
# skipped, an interrupted one continues (--resume). Deepest layers last.
#
#   RUNS=../runs/squeezenet DATA=../shared/data BUDGET=120000 bash examples/train_squeezenet_decoders.sh
#   (a rehearsal: LAYERS="fire9 pool10" BUDGET=16 LIMIT=8 SIZE=64 ZOO=/tmp/zoo RUNS=/tmp/runs ...)
#
# conv1 and fire3 have 30x30 grids at 128 px: at the default width (0.25) their decoders hold 6.7 M
# parameters, a 13 MB file; width 0.1875 (3.8 M, under the 8 MB a shipped file may take) is used
# for them. Set WIDTHS="layer=width ..." to change that.
#
# Each decoder uses featinv's default recipe (docs/recipe.md) at 128 px against the weights that
# ship with featinv (deepcompression, the default). The deep layers, whose forward pass costs more
# than reading their small features back, cache the features of two crops per photo on disk.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-../runs/squeezenet}
BUDGET=${BUDGET:-120000}
LAYERS=${LAYERS:-"conv1 fire3 fire5 fire7 fire9 conv10 pool10"}
ZOO=${ZOO:-featinv/zoo}  # where the packed decoders go
LIMIT=${LIMIT:-}  # only the first N training photos (for a rehearsal)
CACHED="fire9 conv10 pool10"
WIDTHS=${WIDTHS:-"conv1=0.1875 fire3=0.1875"}

for layer in $LAYERS; do
  out=$RUNS/$layer
  target=$ZOO/squeezenet.$layer.safetensors
  if [ -f "$out/done" ]; then continue; fi
  cache=()
  width=()
  for pair in $WIDTHS; do
    if [ "${pair%%=*}" = "$layer" ]; then width=(--width "${pair#*=}"); fi
  done
  case " $CACHED " in *" $layer "*) cache=(--feature-cache "$RUNS/cache" --cache-variants 2);; esac
  recipe="featinv train -f squeezenet.$layer --image-size ${SIZE:-128} --budget $BUDGET --data train --val val"
  if [ ${#cache[@]} -gt 0 ]; then recipe="$recipe --feature-cache cache --cache-variants 2"; fi
  if [ ${#width[@]} -gt 0 ]; then recipe="$recipe ${width[*]}"; fi
  resume=()
  if [ -f "$out/train_state.safetensors" ]; then resume=(--resume); fi
  limit=(); if [ -n "$LIMIT" ]; then limit=(--limit "$LIMIT" --val-limit "$LIMIT"); fi
  featinv train -f "squeezenet.$layer" --image-size "${SIZE:-128}" --budget "$BUDGET" \
    --data "$DATA/train" --val "$DATA/val" "${cache[@]}" "${width[@]}" "${limit[@]}" --out "$out" "${resume[@]}"
  featinv pack "$out" -o "$target" --overwrite --recipe "$recipe"
  touch "$out/done"
done
