#!/usr/bin/env bash
# The gradient sums overlapped with the backward against the sums after it: `clipc train` on 2
# ranks (Gloo, `clipc launch`, as bench/bench_dist.sh runs them) on Fashion-MNIST shards (made here
# if missing), overlapped (the default) then --no-overlap-reduce, alternated ROUNDS times (on off on
# off ...) so that a change in the machine's load hits both alike. Prints, per run and over all
# runs of each (medians of the steps after the warm-up), the step time (batch_time) and rank 0's
# metrics.jsonl figures of the step's sums (docs/distributed.md): comm_s (first start to last
# completion), comm_exposed_s (the step waiting for them after the backward), comm_hidden_frac.
#
# Usage: bash bench/bench_overlap.sh [MODEL] [B] [STEPS] [ROUNDS]   (defaults: clip-tiny 64 12 2)
# Env:   CLIPC_VOCAB (default ../shared/clip/bpe_simple_vocab_16e6.txt.gz), BUILD (default build),
#        BENCH_DIR (default /tmp/clipc-bench-train), MASTER_PORT (default 29600 + pid mod 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh  # median, metrics_after, train_bench_env
model=${1:-clip-tiny} batch=${2:-64} steps=${3:-12} rounds=${4:-2}
train_bench_env "$steps"
tag=bench-overlap-$model-$batch-$$

# run NAME EXTRA...: one 2-rank training run; its stdout goes to $work/logs/NAME.out.
run() {
  local name=$1
  shift
  "$clipc" launch --nproc-per-node 2 --master-port "$port" -- "$clipc" train --model "$model" --vocab "$vocab" \
    --train-data "$work/fm-train" --batch-size "$batch" --epochs 1 --max-steps "$steps" --warmup 1 --lr 1e-4 \
    --workers 1 --save-frequency 0 --logs "$work/logs" --name "$name" --log-every-n-steps 1000 "$@" > "$work/logs/$name.out"
}

field() { metrics_after "$work/logs/$1/metrics.jsonl" "$2" "$warm"; }
keys=(batch_time comm_s comm_exposed_s comm_hidden_frac)
summary() {  # LABEL FIELD-SOURCE...: the medians of the keys over the runs named
  local label=$1
  shift
  local line
  line=$(printf "%-22s" "$label")
  for k in "${keys[@]}"; do line+=$(printf "  %s %.3f" "$k" "$(for n in "$@"; do field "$n" "$k"; done | median)"); done
  echo "$line"
}

echo "$model: 2 ranks x batch $batch, overlapped against --no-overlap-reduce, $steps steps a run ($warm warm-up), $rounds rounds, $(nproc) cores"
on=() off=()
for r in $(seq 1 "$rounds"); do
  run "$tag-on-$r" && on+=("$tag-on-$r") && summary "  round $r, overlapped" "$tag-on-$r"
  run "$tag-off-$r" --no-overlap-reduce && off+=("$tag-off-$r") && summary "  round $r, after" "$tag-off-$r"
done
summary "overlapped (median)" "${on[@]}"
summary "after (median)" "${off[@]}"
for n in "${on[@]}" "${off[@]}"; do rm -rf "$work/logs/$n" "$work/logs/$n.out"; done
