#!/usr/bin/env bash
# The whole training step of clipc (bench_step) against OpenCLIP v2.20.0's own loop (bench_loop.py:
# zero_grad, forward, ClipLoss, backward, AdamW step, clamp; fp32) on the same inputs, alternated
# A B A B in one run so that the load of a shared machine falls on both. Each run prints its median
# step; this prints every run, the median over runs of each, and the ratio.
#
# Usage: bash bench/side_by_side.sh MODEL BATCH [STEPS] [WARMUP] [ROUNDS]   (defaults: 6 2 3)
#   e.g. bash bench/side_by_side.sh clip-tiny 256;  bash bench/side_by_side.sh ViT-B-32 32 3 1 3
# Env:   METRIC        wall (default): median wall time a step; cpu: median CPU time a step (user +
#                      system, all threads; OpenCLIP's through bench/cpu_clock.py), which a loaded
#                      machine disturbs least
#        OPENCLIP_SRC  OpenCLIP v2.20.0's src/ (default /tmp/open_clip-v2.20.0/src: extract
#                      ../shared/peers/openclip/open_clip-v2.20.0-src.tar.gz into /tmp)
#        OPENCLIP_BENCH its bench scripts (default ../shared/peers/openclip/bench)
#        PYTHON (default /usr/bin/python3, Debian's python3-torch), BUILD (default build)
# Both use 2 threads and OMP_WAIT_POLICY=passive (OpenCLIP's faster setting here).
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1 batch=$2 steps=${3:-6} warmup=${4:-2} rounds=${5:-3}
metric=${METRIC:-wall}
build=${BUILD:-build}
export OPENCLIP_SRC=${OPENCLIP_SRC:-/tmp/open_clip-v2.20.0/src}
export PYTHON=${PYTHON:-/usr/bin/python3} OMP_WAIT_POLICY=passive TORCH_THREADS=2 OMP_NUM_THREADS=2
oc_bench=${OPENCLIP_BENCH:-../shared/peers/openclip/bench}
[ -x "$build/bench/bench_step" ] || { echo "build bench_step first: cmake --build $build --target bench_step" >&2; exit 1; }
[ -d "$OPENCLIP_SRC/open_clip" ] || { echo "no OpenCLIP source in $OPENCLIP_SRC (see ../shared/peers/openclip/README.md)" >&2; exit 1; }
source "$oc_bench/env.sh"  # PYTHONPATH (its stubs, OpenCLIP), OC_EXTRA_CONFIGS (clip-tiny), SCRIPTS_DIR
clock=()
[ "$metric" = cpu ] && clock=(bench/cpu_clock.py)
pattern='.*median *\([0-9.]*\) ms\/step.*'
[ "$metric" = cpu ] && pattern='.*cpu \([0-9.]*\) ms\/step.*'

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
clipc_ms=() openclip_ms=()
for ((r = 1; r <= rounds; r++)); do
  out=$("$build/bench/bench_step" --model "$model" --batch-size "$batch" --steps "$steps" --warmup "$warmup" --threads 2)
  echo "round $r clipc:    $(grep '^clipc' <<<"$out")"
  clipc_ms+=("$(sed -n "s/$pattern/\1/p" <<<"$out")")
  out=$("$PYTHON" "${clock[@]}" "$SCRIPTS_DIR/bench_loop.py" "$model" "$batch" $((steps + warmup)) "$warmup" 2>/dev/null)
  s=$(sed -n 's/.*median_step_s=\([0-9.]*\).*/\1/p' <<<"$out")
  echo "round $r OpenCLIP: median $(awk -v s="$s" 'BEGIN { printf "%.1f", s * 1000 }') ms/step ($metric)"
  openclip_ms+=("$(awk -v s="$s" 'BEGIN { print s * 1000 }')")
done
c=$(printf '%s\n' "${clipc_ms[@]}" | median)
o=$(printf '%s\n' "${openclip_ms[@]}" | median)
awk -v m="$model" -v b="$batch" -v c="$c" -v o="$o" -v n="$rounds" -v t="$metric" 'BEGIN {
  rate = t == "wall" ? sprintf(" (%.1f vs %.1f samples/s)", b * 1000 / c, b * 1000 / o) : ""
  printf "%s batch %d, median of %d alternated runs, %s time a step: clipc %.1f ms, OpenCLIP %.1f ms%s: clipc %.2fx\n",
         m, b, n, t, c, o, rate, o / c }'
