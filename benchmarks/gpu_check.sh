#!/usr/bin/env bash
# Every GPU check and measurement featinv needs, as one device call (at most 8 minutes: each step has its own time limit).
#
# Prepare on the development machine (once):
#   python3 ../shared/tools/gpu_pack.py .gpu --part 0 --parts 2   # 7.8k photos at 136 px + val
#   echo /.gpu/ >> .git/info/exclude
# Run with the device tool: command "bash benchmarks/gpu_check.sh", carry [".gpu"], timeout_s 540.
# Results come back in $OUT: cuda_tests.txt, speed_cuda.json, train_throughput_cuda.json,
# train_compiled_cuda.json, log.txt.
#
# DEVICE=cpu LIMIT=64 EPOCHS=1 bash benchmarks/gpu_check.sh rehearses the plumbing on a CPU.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/featinv-gpu-out}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-0}
EPOCHS=${EPOCHS:-4}
DATA=${DATA:-/tmp/featinv-data}
PY=${PYTHON:-python}
mkdir -p "$OUT" "$DATA"
exec > >(tee "$OUT/log.txt") 2>&1
step() { echo "== $(date +%T) $*"; }

step install
if ! "$PY" -c "import featinv" 2>/dev/null; then
  "$PY" -m pip install -q --no-deps --no-build-isolation -e "$REPO" || exit 1
fi
"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

step photos
if [ -f "$REPO/.gpu/train_0.tar" ]; then
  tar -xf "$REPO/.gpu/train_0.tar" -C "$DATA" && tar -xf "$REPO/.gpu/val.tar" -C "$DATA"
else
  ln -sfn "$REPO/../shared/data/train" "$DATA/train"; ln -sfn "$REPO/../shared/data/val" "$DATA/val"
fi
ls "$DATA/train" | wc -l

cd /tmp  # not the repository: it would shadow the installed package
step "CUDA tests"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider "$REPO/tests/features/test_hog.py" \
  "$REPO/tests/features/test_lbp.py" "$REPO/tests/training/test_training_loop.py" -k "cuda or identical or compiles" \
  > "$OUT/cuda_tests.txt" 2>&1; tail -3 "$OUT/cuda_tests.txt"

step "features and decoders (batch 256)"
timeout 60 "$PY" "$REPO/benchmarks/speed.py" --device "$DEVICE" --features hog,lbp \
  --batch-size 256 --optimize-steps 50 --json "$OUT/speed_$DEVICE.json" | tail -8

step "end-to-end training"
timeout 200 "$PY" "$REPO/benchmarks/train_throughput.py" --device "$DEVICE" \
  --data "$DATA/train" --val "$DATA/val" --features hog --widths 0.5,0.125 --batches 256,64 \
  --limit "$LIMIT" --epochs "$EPOCHS" --workers 8 --json "$OUT/train_throughput_$DEVICE.json"
step "end-to-end training, compiled"
timeout 110 "$PY" "$REPO/benchmarks/train_throughput.py" --device "$DEVICE" \
  --data "$DATA/train" --val "$DATA/val" --features hog --widths 0.5 --batches 256 \
  --limit "$LIMIT" --epochs "$EPOCHS" --workers 8 --json "$OUT/train_compiled_$DEVICE.json" -- --compile
step done
