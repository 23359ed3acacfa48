#!/usr/bin/env bash
# OpenCLIP's large configs on this machine's CPU: for each model, build it as clipc does, count its
# parameters against OpenCLIP v2.20.0's count (the numbers below, from OpenCLIP's own CLIP class:
# docs/model.md says how they were obtained), and run one training step (bench/bench_step.c:
# random images, bench_loop.py's captions, AdamW) at batch BATCH with --grad-checkpointing, when
# the machine's available memory allows it: a step needs about 20 bytes a parameter (fp32 weights,
# gradients, AdamW's two moments, and the initial weights while they are packed into one buffer)
# plus 2 GB. A model too large for a step is only built and counted (about 8 bytes a parameter plus
# 1 GB: scaling_model --check), and one too large for that too only counted by formula.
# Prints one line a model: parameters (built / OpenCLIP), the step's time and its peak memory.
#
# Usage: bash scripts/large-models.sh [BATCH] [MODEL ...]   (defaults: 2, the six models below)
# Env:   BUILD (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
batch=${1:-2}
shift || true
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(ViT-B-16 ViT-L-14 ViT-L-14-336 ViT-H-14 ViT-g-14 ViT-bigG-14)
for tool in "$build/bench/bench_step" "$build/bench/scaling_model"; do
  [ -x "$tool" ] || { echo "build the benchmarks first: cmake --build $build (CLIPC_BENCH=ON)" >&2; exit 1; }
done

openclip_params() {
  case $1 in
    ViT-B-32) echo 151277313 ;; ViT-B-16) echo 149620737 ;; ViT-L-14) echo 427616513 ;;
    ViT-L-14-336) echo 427944193 ;; ViT-H-14) echo 986109441 ;; ViT-g-14) echo 1366678273 ;;
    ViT-bigG-14) echo 2539567105 ;; *) echo "?" ;;
  esac
}

available() { awk '/^MemAvailable:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo; }

for model in "${models[@]}"; do
  # The formula's count (scaling_model's table: "MODEL (N M)") decides what fits.
  formula=$("$build/bench/scaling_model" "$model" --configs configs/models --ranks 1 --bandwidths 1 |
            sed -n "s/^| $model (\([0-9.]*\) M).*/\1/p" | head -1)
  params=$(awk -v m="$formula" 'BEGIN { printf "%.0f", m * 1e6 }')
  avail=$(available)
  reference=$(openclip_params "$model")
  if [ "$avail" -gt $(( params * 20 + 2000000000 )) ]; then
    out=$("$build/bench/bench_step" --model "$model" --configs configs/models --batch-size "$batch" --steps 1 \
          --warmup 0 --grad-checkpointing 2>&1) || { echo "$model: $out" >&2; exit 1; }
    built=$(sed -n 's/^parameters: \([0-9]*\).*/\1/p' <<<"$out")
    ms=$(sed -n 's/.*median *\([0-9.]*\) ms\/step.*/\1/p' <<<"$out")
    peak=$(sed -n 's/^peak memory of the timed steps: \([0-9]*\) MiB.*/\1/p' <<<"$out")
    echo "$model: $built parameters (OpenCLIP $reference), one step at batch $batch with --grad-checkpointing:" \
         "$(awk -v t="$ms" 'BEGIN { printf "%.1f", t / 1e3 }') s, peak resident $peak MiB" \
         "($(( avail >> 30 )) GiB were available)"
  elif [ "$avail" -gt $(( params * 8 + 1000000000 )) ]; then
    out=$("$build/bench/scaling_model" "$model" --configs configs/models --ranks 1 --bandwidths 1 --check 2>&1) ||
      { echo "$model: $out" >&2; exit 1; }
    built=$(sed -n "s/^$model: \([0-9]*\) parameters built.*/\1/p" <<<"$out")
    echo "$model: $built parameters (OpenCLIP $reference), built only: a step needs ~$(( params * 20 >> 30 )) GiB," \
         "$(( avail >> 30 )) GiB available"
  else
    echo "$model: ~$formula M parameters by formula (OpenCLIP $reference), not built: building needs" \
         "~$(( params * 8 >> 30 )) GiB, $(( avail >> 30 )) GiB available"
  fi
done
