#!/usr/bin/env bash
# The prepared check for a GPU machine (docs/gpu.md), meant to finish within 8 minutes: builds
# clipc against the machine's CUDA libtorch, runs the test suite, then times the whole training
# step (bench_step) of ViT-B-32 at batch 256 on the GPU in amp_bf16, in fp32 with TF32, and in
# amp_bf16 with --deterministic (its cost), printing samples/s, TFLOP/s as OpenCLIP counts them
# (3 x 14.78 GFLOP a sample), the fraction of the GPU's dense bf16 peak, and the counters of a step.
# Run THERE from the project root, with .gpu/ carried (see docs/gpu.md for how to fill it here).
# Every phase has a time limit and a failure stops nothing, so one run shows all that works and
# all that does not. Output: stdout, and everything under $OUT when that is set.
set -uo pipefail
source .gpu/unpack.sh
shared=$PWD/.gpu/shared
jobs=$(nproc)
log=${OUT:-/tmp}/gpu-check.log
phase() { echo; echo "== $1 ($(date +%T))"; }
{
phase "GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
# The tests read Fashion-MNIST's test split where Debian installs it.
fmnist=/usr/share/datasets/fashion-mnist
[ -e "$fmnist" ] || { mkdir -p "$(dirname "$fmnist")" && ln -s "$PWD/.gpu/fashion-mnist" "$fmnist"; }

phase "configure and build (WERROR off: a new libtorch's deprecation warnings are listed, not fatal)"
timeout 60 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCLIPC_WERROR=OFF -DCLIPC_SHARED_DIR="$shared" \
  | grep -iE "torch|cuda" || true
timeout 170 cmake --build build-gpu -j "$jobs" 2>&1 | grep -E "warning|error|Error" | sort -u | head -40

phase "tests"
timeout 110 ctest --test-dir build-gpu --output-on-failure -j "$jobs" 2>&1 | tail -n 40

phase "clipc info"
build-gpu/cli/clipc info

phase "clipc train on the GPU: clip-tiny, amp_bf16, 20 steps, counters of the first 4"
work=$(mktemp -d)
timeout 20 build-gpu/cli/clipc shards --fashion-mnist "$fmnist" --split test --out "$work/fm" | tail -n 1
timeout 45 build-gpu/cli/clipc train --device cuda --precision amp_bf16 --model clip-tiny --train-data "$work/fm" \
  --vocab "$shared/clip/bpe_simple_vocab_16e6.txt.gz" --batch-size 256 --epochs 1 --max-steps 20 --warmup 2 \
  --save-frequency 0 --logs "$work/logs" --name gpu --log-every-n-steps 10 --profile-steps 4 2>&1 | grep -E "^(Train|profile|done|clipc train:)"

# bench_step's result line and counters, then samples/s against 850 (OpenCLIP on an A100) and the
# TFLOP/s against the GPU's dense bf16 peak.
bench() {
  local out
  out=$(timeout 50 build-gpu/bench/bench_step --device cuda --model ViT-B-32 --batch-size 256 --steps 12 --warmup 4 "$@" 2>&1)
  echo "$out" | tail -n 3
  awk -v gpu="$gpu" '/^clipc/ {
      for (i = 1; i <= NF; i++) { if ($(i + 1) == "samples/s") s = $i; if ($(i + 1) ~ /^TFLOP\/s/) t = $i }
      peak = gpu ~ /H100|H200|H800/ ? 989 : gpu ~ /A100|A800/ ? 312 : gpu ~ /L40|4090/ ? 181 : 0
      printf "  -> %.0f samples/s = %.2fx OpenCLIP'"'"'s 850 on an A100; %.1f TFLOP/s", s, s / 850, t
      if (peak) printf " = %.1f%% of %s'"'"'s %d TFLOP/s dense bf16", 100 * t / peak, gpu, peak
      printf "\n" }' <<<"$out"
}
phase "bench_step ViT-B-32 batch 256, amp_bf16"
bench --precision amp_bf16
phase "bench_step ViT-B-32 batch 256, fp32 with TF32"
bench --precision fp32
phase "bench_step ViT-B-32 batch 256, amp_bf16 --deterministic"
bench --precision amp_bf16 --deterministic
phase "done"
} 2>&1 | tee "$log"
