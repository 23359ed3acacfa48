#!/usr/bin/env bash
# End-to-end training, clipc against OpenCLIP v2.20.0, on one CSV of web-like captions: N
# Fashion-MNIST images as PNGs with captions of 3-25 words, 5% long enough to fill the context
# (bench/web_csv.py states the rule; made once, kept in BENCH_DIR). Alternated A B A B:
#   A: `clipc shards --csv` (lossless WebP, the PNGs' pixels), then `clipc train` on those shards;
#   B: OpenCLIP's `training.main` on the CSV itself (the peers' oc_train.py: PIL reads the PNGs).
# Both: clip-tiny (MODEL), one epoch of N/BATCH steps, fp32, AdamW lr LR with WARMUP warm-up
# steps then cosine, weight decay 0.2, no gradient clipping, WORKERS data workers (clipc: loader
# threads; OpenCLIP: DataLoader processes), 2 compute threads, OMP_WAIT_POLICY=passive, seed 0, a
# log line and a checkpoint as OpenCLIP writes them (every step; the epoch's end).
#
# Timed: each step from the end of the one before (the wait for the batch included): clipc's
# metrics.jsonl batch_time, OpenCLIP's out.log "Batch (t)" (the peers' parse_oc_log.py). The
# first DROP steps of every run are dropped (loader start, warm caches); each run's median step
# is printed, and the median over rounds of each side, samples/s and the ratio. Not timed in the
# steps: start-up, the shard conversion (the whole `clipc shards` command, timed on its own and
# reported: OpenCLIP has no such step, it decodes the PNGs every epoch), the checkpoint. Each
# training run's wall time, process start to exit, is printed too.
#
# Usage: bash bench/side_by_side_train.sh [N] [BATCH] [ROUNDS] [DROP]   (defaults: 3072 128 3 4)
#   e.g. bash bench/side_by_side_train.sh 3072 128 3 4;  bash bench/side_by_side_train.sh 96 32 1 1
# Env:   MODEL (clip-tiny), LR (1e-3), WARMUP (10), WORKERS (1), SEED (0: the captions)
#        CLIPC_VOCAB (default $CLIPC_SHARED_DIR/clip/bpe_simple_vocab_16e6.txt.gz, OpenCLIP's merges)
#        BENCH_DIR (default /tmp/clipc-side-by-side-train: images, CSVs, shards, logs)
#        OPENCLIP_SRC, OPENCLIP_BENCH, CLIPC_SHARED_DIR, PYTHON: bench/lib.sh's openclip_env
#        BUILD (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
n=${1:-3072} batch=${2:-128} rounds=${3:-3} drop=${4:-4}
model=${MODEL:-clip-tiny} lr=${LR:-1e-3} warmup=${WARMUP:-10} workers=${WORKERS:-1} seed=${SEED:-0}
build=${BUILD:-build}
vocab=${CLIPC_VOCAB:-${CLIPC_SHARED_DIR:-../shared}/clip/bpe_simple_vocab_16e6.txt.gz}
work=${BENCH_DIR:-/tmp/clipc-side-by-side-train}
clipc=$build/cli/clipc
[ -x "$clipc" ] || { echo "build clipc first: cmake --build $build --target clipc" >&2; exit 1; }
[ -f "$vocab" ] || { echo "no merges file $vocab (set CLIPC_VOCAB)" >&2; exit 1; }
steps=$((n / batch))
[ "$steps" -gt "$drop" ] || { echo "N=$n at batch $batch gives $steps steps: not more than DROP=$drop" >&2; exit 1; }
openclip_env
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }  # seconds since $1 (a now)
fail() { echo "$1 failed: $2" >&2; tail -5 "$2" >&2; exit 1; }
mkdir -p "$work/logs"
csv=$("$PYTHON" bench/web_csv.py /usr/share/datasets/fashion-mnist "$work" "$n" "$seed")

# What the tokenizer makes of the captions: mean and longest (SOT and EOT included), share at 77.
stats=$(cut -f2 "$csv" | tail -n +2 | "$clipc" tokenize --vocab "$vocab" | awk '
  { n++; sum += NF; if (NF > max) max = NF; if (NF == 77) full++ }
  END { printf "mean %.1f tokens, longest %d, %.1f%% fill the context", sum / n, max, 100 * full / n }')
echo "captions of $csv after tokenization: $stats"
echo "$model, batch $batch, $steps steps a run (first $drop dropped), lr $lr, warm-up $warmup, $workers worker(s), $rounds rounds"

# clipc ROUND: shards (timed apart) then training; prints the round's figures.
clipc_round() {
  local name=clipc-$1 t0 shards run med data timed
  rm -rf "$work/shards" "$work/logs/$name"
  t0=$(now)
  "$clipc" shards --csv "$csv" --csv-img-key filepath --csv-caption-key title --lossless \
    --out "$work/shards" 2>"$work/logs/$name.shards" || fail "clipc shards" "$work/logs/$name.shards"
  shards=$(since "$t0") t0=$(now)
  "$clipc" train --model "$model" --vocab "$vocab" --train-data "$work/shards" --batch-size "$batch" --epochs 1 \
    --lr "$lr" --warmup "$warmup" --wd 0.2 --precision fp32 --workers "$workers" --threads 2 --seed 0 \
    --log-every-n-steps 1 --save-frequency 1 --logs "$work/logs" --name "$name" > "$work/logs/$name.out" 2>&1 ||
    fail "clipc train" "$work/logs/$name.out"
  run=$(since "$t0")
  med=$(metrics_after "$work/logs/$name/metrics.jsonl" batch_time "$drop" | median)
  data=$(metrics_after "$work/logs/$name/metrics.jsonl" data_time "$drop" | median)
  timed=$(metrics_after "$work/logs/$name/metrics.jsonl" batch_time "$drop" | wc -l)
  clipc_s+=("$med") shards_s+=("$shards")
  awk -v r="$1" -v m="$med" -v d="$data" -v b="$batch" -v w="$run" -v s="$shards" -v n="$n" -v k="$timed" 'BEGIN {
    printf "round %d clipc:    median step %.3f s of %d (data wait %.3f s), %.1f samples/s; run %.1f s; shards %.1f s (%.0f images/s)\n",
           r, m, k, d, b / m, w, s, n / s }'
}

# OpenCLIP ROUND: training.main on the CSV; prints the round's figures.
openclip_round() {
  local name=openclip-$1 t0 run result
  rm -rf "$work/logs/$name"
  t0=$(now)
  "$PYTHON" "$SCRIPTS_DIR/oc_train.py" --train-data "$csv" --dataset-type csv --csv-separator $'\t' \
    --csv-img-key filepath --csv-caption-key title --model "$model" --batch-size "$batch" --epochs 1 \
    --lr "$lr" --warmup "$warmup" --wd 0.2 --precision fp32 --workers "$workers" --seed 0 \
    --log-every-n-steps 1 --save-frequency 1 --logs "$work/logs" --name "$name" > "$work/logs/$name.out" 2>&1 ||
    fail "OpenCLIP's training.main" "$work/logs/$name.out"
  run=$(since "$t0")
  result=$("$PYTHON" "$SCRIPTS_DIR/parse_oc_log.py" "$work/logs/$name/out.log" "$drop" | grep '^RESULT median_step_s')
  openclip_s+=("$(sed 's/.*median_step_s=\([0-9.]*\).*/\1/' <<<"$result")")
  awk -v r="$1" -v m="${openclip_s[-1]}" -v d="$(sed 's/.*median_data_s=\([0-9.]*\).*/\1/' <<<"$result")" \
      -v b="$batch" -v w="$run" -v k="$(sed 's/.* n=\([0-9]*\).*/\1/' <<<"$result")" 'BEGIN {
    printf "round %d OpenCLIP: median step %.3f s of %d (data wait %.3f s), %.1f samples/s; run %.1f s\n", r, m, k, d, b / m, w }'
}

clipc_s=() openclip_s=() shards_s=()
for ((r = 1; r <= rounds; r++)); do
  clipc_round "$r"
  openclip_round "$r"
done
c=$(printf '%s\n' "${clipc_s[@]}" | median)
o=$(printf '%s\n' "${openclip_s[@]}" | median)
s=$(printf '%s\n' "${shards_s[@]}" | median)
awk -v m="$model" -v b="$batch" -v c="$c" -v o="$o" -v k="$rounds" -v s="$s" -v n="$n" -v cap="$stats" 'BEGIN {
  printf "%s batch %d, web-like captions (%s), end to end, median of %d alternated runs: step clipc %.3f s, OpenCLIP %.3f s (%.1f vs %.1f samples/s): clipc %.2fx; clipc shards %.1f s for %d images (not in the steps)\n",
         m, b, cap, k, c, o, b / c, b / o, o / c, s, n }'
