#!/usr/bin/env bash
# The whole training step of clipc (bench_step) against OpenCLIP v2.20.0's own step
# (bench/openclip_step.py: bench_loop.py's zero_grad, forward, ClipLoss, backward, AdamW step,
# clamp; fp32) on the same captions, alternated A B A B in one run so that the load of a shared
# machine falls on both. bench_step makes the batch's captions with the chosen length distribution
# and writes their ids (--dump-tokens); OpenCLIP's side reads that file, so both run the same ids
# (its cost does not depend on them: it always runs the full 77-token context). Each run prints its
# median step; this prints every run, the median over runs of each, and the ratio, naming the
# caption distribution with its mean and longest caption (and stops where the captions OpenCLIP's
# side read differ from them).
#
# Usage: bash bench/side_by_side.sh MODEL BATCH [STEPS] [WARMUP] [ROUNDS] [CAPTIONS]
#        (defaults: 6 2 3 short)
#   e.g. bash bench/side_by_side.sh clip-tiny 256;  bash bench/side_by_side.sh ViT-B-32 32 3 1 3
#        CAPTIONS=web bash bench/side_by_side.sh clip-tiny 128
# CAPTIONS (the 6th argument or the env variable): bench_step's --captions
#        short  SOT, 11 ids, EOT at position 12 (bench_loop.py's, the default)
#        full   every caption fills the 77-token context
#        web    per batch ceil(5%) fill the context, the others 4-30 ids (3-25 words); bench_step.c
# Env:   METRIC        wall (default): median wall time a step; cpu: median CPU time a step (user +
#                      system, all threads; OpenCLIP's through bench/cpu_clock.py), which a loaded
#                      machine disturbs least
#        SEED          bench_step's --seed (web captions; default 7)
#        OPENCLIP_SRC, OPENCLIP_BENCH, CLIPC_SHARED_DIR, PYTHON: bench/lib.sh's openclip_env
#        BUILD (default build)
# Both use 2 threads and OMP_WAIT_POLICY=passive.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
model=$1 batch=$2 steps=${3:-6} warmup=${4:-2} rounds=${5:-3} captions=${6:-${CAPTIONS:-short}}
metric=${METRIC:-wall}
build=${BUILD:-build}
[ -x "$build/bench/bench_step" ] || { echo "build bench_step first: cmake --build $build --target bench_step" >&2; exit 1; }
openclip_env
clock=()
[ "$metric" = cpu ] && clock=(bench/cpu_clock.py)
pattern='.*median *\([0-9.]*\) ms\/step.*'
[ "$metric" = cpu ] && pattern='.*cpu \([0-9.]*\) ms\/step.*'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tokens=$tmp/tokens.bin

clipc_ms=() openclip_ms=()
for ((r = 1; r <= rounds; r++)); do
  out=$("$build/bench/bench_step" --model "$model" --batch-size "$batch" --steps "$steps" --warmup "$warmup" --threads 2 \
        --captions "$captions" --seed "${SEED:-7}" --dump-tokens "$tokens")
  [ "$r" = 1 ] && { stats=$(sed -n 's/^captions [a-z]*: \(mean [0-9.]* tokens, longest [0-9]*\).*/\1/p' <<<"$out")
                    grep '^captions' <<<"$out"; }
  echo "round $r clipc:    $(grep '^clipc' <<<"$out")"
  clipc_ms+=("$(sed -n "s/$pattern/\1/p" <<<"$out")")
  out=$("$PYTHON" "${clock[@]}" bench/openclip_step.py "$model" "$tokens" $((steps + warmup)) "$warmup" 2>"$tmp/err") ||
    { echo "bench/openclip_step.py failed:" >&2; tail -5 "$tmp/err" >&2; exit 1; }
  read_stats=$(sed -n 's/^captions from .*: \(mean [0-9.]* tokens, longest [0-9]*\).*/\1/p' <<<"$out")
  [ "$read_stats" = "$stats" ] ||
    { echo "OpenCLIP's side read captions of $read_stats, bench_step made $stats" >&2; exit 1; }
  [ "$r" = 1 ] && echo "OpenCLIP's $(grep '^captions from' <<<"$out" | sed "s|$tokens|bench_step's dump|")"
  s=$(sed -n 's/.*median_step_s=\([0-9.]*\).*/\1/p' <<<"$out")
  echo "round $r OpenCLIP: median $(awk -v s="$s" 'BEGIN { printf "%.1f", s * 1000 }') ms/step ($metric)"
  openclip_ms+=("$(awk -v s="$s" 'BEGIN { print s * 1000 }')")
done
c=$(printf '%s\n' "${clipc_ms[@]}" | median)
o=$(printf '%s\n' "${openclip_ms[@]}" | median)
awk -v m="$model" -v b="$batch" -v c="$c" -v o="$o" -v n="$rounds" -v t="$metric" -v cap="$captions ($stats)" 'BEGIN {
  rate = t == "wall" ? sprintf(" (%.1f vs %.1f samples/s)", b * 1000 / c, b * 1000 / o) : ""
  printf "%s batch %d, captions %s, median of %d alternated runs, %s time a step: clipc %.1f ms, OpenCLIP %.1f ms%s: clipc %.2fx\n",
         m, b, cap, n, t, c, o, rate, o / c }'
