#!/usr/bin/env bash
# End-to-end training throughput of `clipc train` (data loading, both towers, loss, backward,
# AdamW), as samples/s averaged over the steps after a warm-up, on Fashion-MNIST shards (made here
# if missing; the loader resizes to the model's image size).
#
# Usage: bash bench/bench_train.sh [MODEL] [BATCH] [STEPS]      (defaults: clip-tiny 128 20)
#   e.g. bash bench/bench_train.sh ViT-B-32 32 6
# Env:   CLIPC_VOCAB (default ../shared/clip/bpe_simple_vocab_16e6.txt.gz), BUILD (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-clip-tiny} batch=${2:-128} steps=${3:-20}
build=${BUILD:-build}
vocab=${CLIPC_VOCAB:-../shared/clip/bpe_simple_vocab_16e6.txt.gz}
work=${BENCH_DIR:-/tmp/clipc-bench-train}
clipc=$build/cli/clipc
[ -x "$clipc" ] || { echo "build clipc first: cmake --build $build --target clipc" >&2; exit 1; }
mkdir -p "$work"
[ -f "$work/fm-train/manifest.json" ] ||
  $clipc shards --fashion-mnist /usr/share/datasets/fashion-mnist --split train --out "$work/fm-train" >/dev/null
name=bench-$model-$batch-$$
$clipc train --model "$model" --vocab "$vocab" --train-data "$work/fm-train" --batch-size "$batch" \
  --epochs 1 --max-steps "$steps" --warmup 1 --lr 1e-4 --workers 2 --save-frequency 0 \
  --logs "$work/logs" --name "$name" --log-every-n-steps 1000 >/dev/null
warm=$(( steps / 4 > 1 ? steps / 4 : 1 ))
awk -v warm="$warm" -v model="$model" -v batch="$batch" -F'[:,}]' '
  /"type":"train"/ {
    for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i ~ /"batch_time"/) t = $(i + 1); }
    if (s > warm) { total += t; n++ }
  }
  END { printf "clipc train %-10s batch %4d: %.1f samples/s end to end (%d steps after %d warm-up)\n", model, batch, n * batch / total, n, warm }
' "$work/logs/$name/metrics.jsonl"
rm -rf "$work/logs/$name"
