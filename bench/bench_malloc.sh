#!/usr/bin/env bash
# How the allocator changes the whole training step (bench_step): glibc's defaults, clipc's
# start-up mallopt settings (common/sysinfo.h: sysinfo_tune_malloc), jemalloc with its defaults and
# without returning pages (MALLOC_CONF decay -1), and tcmalloc (each preloaded over glibc's
# defaults), alternated A B C D E per round on a shared machine. Prints each
# run's median step (wall and CPU time), peak RSS and page faults a step, then the medians over
# rounds.
#
# Usage: bash bench/bench_malloc.sh MODEL BATCH [STEPS] [WARMUP] [ROUNDS]   (defaults: 6 2 3)
# Needs libjemalloc-dev and libgoogle-perftools-dev (CLIPC_SETUP_BENCH=1 bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 batch=$2 steps=${3:-6} warmup=${4:-2} rounds=${5:-3}
bench=${BUILD:-build}/bench/bench_step
lib=/usr/lib/x86_64-linux-gnu
variants=("glibc defaults" "glibc + mallopt (clipc)" "jemalloc" "jemalloc, no decay" "tcmalloc")
run() {
  local args=(--model "$model" --batch-size "$batch" --steps "$steps" --warmup "$warmup" --threads 2)
  case $1 in
    0) "$bench" "${args[@]}" --no-malloc-tuning ;;
    1) "$bench" "${args[@]}" ;;
    2) LD_PRELOAD=$lib/libjemalloc.so.2 "$bench" "${args[@]}" --no-malloc-tuning ;;
    3) MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 LD_PRELOAD=$lib/libjemalloc.so.2 "$bench" "${args[@]}" --no-malloc-tuning ;;
    4) LD_PRELOAD=$lib/libtcmalloc.so.4 "$bench" "${args[@]}" --no-malloc-tuning ;;
  esac | grep '^clipc'
}
declare -A ms cpu rss faults
for ((r = 1; r <= rounds; r++)); do
  for v in 0 1 2 3 4; do
    line=$(run $v)
    echo "round $r ${variants[$v]}: $line"
    ms[$v]+="$(sed -n 's/.*median *\([0-9.]*\) ms\/step.*/\1/p' <<<"$line") "
    cpu[$v]+="$(sed -n 's/.*cpu \([0-9.]*\) ms\/step.*/\1/p' <<<"$line") "
    rss[$v]+="$(sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' <<<"$line") "
    faults[$v]+="$(sed -n 's/.* \([0-9]*\) page faults.*/\1/p' <<<"$line") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
base=$(median <<<"${ms[0]}") base_cpu=$(median <<<"${cpu[0]}")
for v in 0 1 2 3 4; do
  awk -v n="${variants[$v]}" -v m="$(median <<<"${ms[$v]}")" -v c="$(median <<<"${cpu[$v]}")" -v p="$(median <<<"${rss[$v]}")" \
    -v f="$(median <<<"${faults[$v]}")" -v b="$base" -v bc="$base_cpu" -v model="$model" -v batch="$batch" \
    'BEGIN { printf "%s batch %d, %-25s wall %8.1f ms/step (%.2fx), cpu %8.1f ms/step (%.2fx), peak RSS %d MiB, %d page faults/step\n",
             model, batch, n, m, b / m, c, bc / c, p, f }'
done
