#!/usr/bin/env bash
# Data parallelism on this machine's CPU: `clipc train` on 1 rank with batch 2B against 2 ranks
# (Gloo, `clipc launch`) with batch B each, the same global batch, on Fashion-MNIST shards (made
# here if missing). The runs alternate, 1 rank then 2 ranks, ROUNDS times (A B A B ...), so that a
# change in the machine's load hits both alike. Prints end-to-end samples/s (the median step of
# each configuration, after the warm-up steps of each run), their ratio, and the time per step
# rank 0 spent in collectives (metrics.jsonl's comm_time: waiting for the slower rank included),
# with the bytes they moved.
#
# Usage: bash bench/bench_dist.sh [MODEL] [B] [STEPS] [ROUNDS]   (defaults: clip-tiny 64 12 2)
#   e.g. bash bench/bench_dist.sh ViT-B-32 16 4 1
# Env:   CLIPC_VOCAB (default ../shared/clip/bpe_simple_vocab_16e6.txt.gz), BUILD (default build),
#        BENCH_DIR (default /tmp/clipc-bench-train), MASTER_PORT (default 29600 + pid mod 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh  # median, metrics_after, train_bench_env
model=${1:-clip-tiny} batch=${2:-64} steps=${3:-12} rounds=${4:-2}
train_bench_env "$steps"
tag=bench-dist-$model-$batch-$$

# run NAME RANKS BATCH: one training run; its stdout goes to $work/logs/NAME.out.
run() {
  local name=$1 ranks=$2 b=$3 launch=()
  [ "$ranks" -gt 1 ] && launch=("$clipc" launch --nproc-per-node "$ranks" --master-port "$port" --)
  "${launch[@]}" "$clipc" train --model "$model" --vocab "$vocab" --train-data "$work/fm-train" --batch-size "$b" \
    --epochs 1 --max-steps "$steps" --warmup 1 --lr 1e-4 --workers 1 --save-frequency 0 \
    --logs "$work/logs" --name "$name" --log-every-n-steps 1000 > "$work/logs/$name.out"
}

# field NAME KEY: KEY of every train line of run NAME after the warm-up, one a line.
field() { metrics_after "$work/logs/$1/metrics.jsonl" "$2" "$warm"; }

mkdir -p "$work/logs"
echo "$model: 1 rank x batch $((2 * batch)) against 2 ranks x batch $batch, $steps steps a run ($warm warm-up), $rounds rounds, $(nproc) cores"
for r in $(seq 1 "$rounds"); do
  for ranks in 1 2; do
    name=$tag-$ranks-$r
    run "$name" "$ranks" $((2 * batch / ranks))
    t=$(field "$name" batch_time | median)
    line=$(printf "  round %d, %d rank(s): %8.2f samples/s (median step %.3f s" "$r" "$ranks" \
      "$(echo "$t" | awk -v n=$((2 * batch)) '{ print n / $1 }')" "$t")
    [ "$ranks" -gt 1 ] && line+=$(printf ", collectives %.3f s" "$(field "$name" comm_time | median)")
    echo "$line)"
  done
done

# all RANKS KEY: KEY over every run of RANKS ranks.
all() { for r in $(seq 1 "$rounds"); do field "$tag-$1-$r" "$2"; done; }
t1=$(all 1 batch_time | median) t2=$(all 2 batch_time | median) c2=$(all 2 comm_time | median)
awk -v n=$((2 * batch)) -v t1="$t1" -v t2="$t2" -v c2="$c2" 'BEGIN {
  printf "1 rank : %8.2f samples/s (median step %.3f s)\n", n / t1, t1
  printf "2 ranks: %8.2f samples/s (median step %.3f s), %.2fx the 1-rank figure\n", n / t2, t2, t1 / t2
  printf "collectives on rank 0: %.3f s per step, %.1f%% of the step\n", c2, 100 * c2 / t2 }'
echo "rank 0's collectives over the last 2-rank run ($steps steps; the broadcast is the start's):"
awk '/^collectives on rank/ { on = 1; next } on && /^  [a-z_]+ +[0-9]+ calls/ { print; next } { on = 0 }' \
  "$work/logs/$tag-2-$rounds.out"
for r in $(seq 1 "$rounds"); do rm -rf "$work/logs/$tag-1-$r"* "$work/logs/$tag-2-$r"*; done
