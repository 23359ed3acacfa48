#!/usr/bin/env bash
# How the allocator changes training on the CPU: glibc's defaults (GLIBC_TUNABLES naming a no-op
# malloc tunable, which clipc then leaves alone), clipc's start-up mallopt settings
# (common/sysinfo.h: sysinfo_tune_malloc), jemalloc with its defaults and without returning pages
# (MALLOC_CONF decay -1), and tcmalloc (both preloaded), alternated A B C D E per round on a
# shared machine.
#   step:  bench_step (the whole step, no loader): median wall and CPU time a step, peak RSS and
#          page faults a step;
#   train: bench/bench_train.sh (clipc train end to end: loader threads, step, logging):
#          samples/s after the warm-up and the peak RSS of the run.
# Prints each run, then the medians over rounds.
#
# Usage: bash bench/bench_malloc.sh step|train MODEL BATCH [STEPS] [ROUNDS]   (defaults: 8 3)
# Needs libjemalloc-dev and libgoogle-perftools-dev (CLIPC_SETUP_BENCH=1 bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh  # median
what=$1 model=$2 batch=$3 steps=${4:-8} rounds=${5:-3}
build=${BUILD:-build}
lib=/usr/lib/x86_64-linux-gnu
variants=("glibc defaults" "glibc + mallopt (clipc)" "jemalloc" "jemalloc, no decay" "tcmalloc")
envs=("GLIBC_TUNABLES=glibc.malloc.check=0" "" "LD_PRELOAD=$lib/libjemalloc.so.2"
      "LD_PRELOAD=$lib/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1"
      "LD_PRELOAD=$lib/libtcmalloc.so.4")
# One run of variant $1: "wall_ms cpu_ms rss_mib faults" (step) or "samples_per_s rss_mib" (train).
run() {
  if [ "$what" = step ]; then
    env ${envs[$1]} "$build/bench/bench_step" --model "$model" --batch-size "$batch" --steps "$steps" \
      --warmup 2 --threads 2 | grep '^clipc' |
      sed -n 's/.*median *\([0-9.]*\) ms\/step.*cpu \([0-9.]*\) ms\/step, peak RSS \([0-9]*\) MiB, \([0-9]*\) page.*/\1 \2 \3 \4/p'
  else
    local out
    out=$( { env ${envs[$1]} /usr/bin/time -f "rss %M" bash bench/bench_train.sh "$model" "$batch" "$steps"; } 2>&1)
    echo "$(sed -n 's/.*: \([0-9.]*\) samples\/s end to end.*/\1/p' <<<"$out") $(sed -n 's/^rss \([0-9]*\)/\1/p' <<<"$out" | awk '{ printf "%d", $1 / 1024 }')"
  fi
}
declare -A results
for ((r = 1; r <= rounds; r++)); do
  for v in 0 1 2 3 4; do
    line=$(run $v)
    echo "round $r ${variants[$v]}: $line"
    results[$v]+="$line"$'\n'
  done
done
for v in 0 1 2 3 4; do
  col() { awk -v c="$1" 'NF { print $c }' <<<"${results[$v]}" | median; }
  if [ "$what" = step ]; then
    printf "%s batch %d, %-25s step: wall %8.1f ms, cpu %8.1f ms, peak RSS %d MiB, %d page faults a step\n" \
      "$model" "$batch" "${variants[$v]}" "$(col 1)" "$(col 2)" "$(col 3)" "$(col 4)"
  else
    printf "%s batch %d, %-25s clipc train: %8.1f samples/s, peak RSS %d MiB\n" \
      "$model" "$batch" "${variants[$v]}" "$(col 1)" "$(col 2)"
  fi
done
