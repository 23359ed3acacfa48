#!/usr/bin/env bash
# The check of a GPU machine (docs/gpu.md): builds clipc there against the machine's CUDA libtorch
# and asserts, one function each, in this order:
#   gpu            a GPU is visible (on a machine without one the check stops here, at once)
#   configure      configure reports the CUDA-enabled libtorch and NCCL ON, and the build succeeds
#   tests          the whole test suite passes, but for NOT_THERE below (it runs beside the
#                  assertions that follow, and is waited for before the benchmark)
#   step_parity    float32 with TF32 off on the GPU reproduces OpenCLIP's step fixture within its
#                  tolerances (tests/test_step_parity FIXTURES cuda)
#   collectives    every collective over NCCL at world size 1 in float32, bfloat16 and uint8, and a
#                  control message made on the host (tests/test_dist_device cuda)
#   launch_resume  `clipc launch --nproc-per-node 1 -- clipc train` on the GPU (amp_bf16) writes
#                  checkpoints, `--resume latest` continues from the newest, and the loss of both
#                  runs is finite and falls
#   host_reads     every profiled step of that run read the host once (--profile-steps)
#   pure_bf16, accum_freq, distill
#                  --precision pure_bf16, --accum-freq 2 and an online teacher (the first run's
#                  checkpoint) train with a finite, falling loss
#   large          ViT-L-14 with --zero 2 and --grad-checkpointing (amp_bf16, batch 32, one rank:
#                  nothing to shard, the sharded code path all the same) trains 12 finite steps and
#                  logs its peak GPU memory a step (peak_mem_mb)
#   bench          ViT-B-32 at batch 256 in amp_bf16 (bench/bench_step): samples/s and MFU, and the
#                  peak GPU memory (nvidia-smi, sampled while it runs); then fp32 with TF32 and
#                  amp_bf16 --deterministic, as figures
#   step_cost      of bench's fp32 and amp_bf16 runs: ms/step, ops and CUDA kernels a step (libtorch's
#                  profiler); AdamW took libtorch's fused kernel and attention its fused kernels
# The exit status is 0 only when every assertion held; each failure says what failed, and the last
# line sums up ("gpu-check: 13 passed, 0 failed"). Every phase has a time limit inside a budget of
# GPU_CHECK_BUDGET seconds (default 560), so that one device call of 10 minutes holds the check.
# Run THERE, from the project root, with .gpu/ carried (docs/gpu.md says how to fill it here):
#   bash scripts/gpu-check.sh
# Output: stdout, and $OUT/gpu-check.log when OUT is set. Sourced, it only defines its functions.
set -uo pipefail

# Tests that cannot run on the GPU machine, each with its reason (names for ctest -E). None known
# yet: the parity and bit-exact tests pin --device cpu, the fixtures, the vocabulary, OpenCLIP's
# source (test_zeroshot_lists) and Fashion-MNIST are carried in .gpu/.
NOT_THERE=(
)

device=cuda
budget=${GPU_CHECK_BUDGET:-560}
build=build-gpu
shared=$PWD/.gpu/shared
fixtures=$shared/fixtures/openclip
vocab=$shared/clip/bpe_simple_vocab_16e6.txt.gz
fmnist=/usr/share/datasets/fashion-mnist
work=${GPU_CHECK_WORK:-/tmp/gpu-check}
jobs=$(nproc)
clipc=$PWD/$build/cli/clipc
passed=() failed=()

# Seconds a phase may take: its own limit, or what is left of the budget when that is less.
limit() {
  local left=$((budget - SECONDS))
  if [ "$left" -lt 5 ]; then left=5; fi
  echo $(($1 < left ? $1 : left))
}

# Runs assert_NAME, records the verdict and prints it.
check() {
  echo
  echo "== $1 ($(date +%T), ${SECONDS} s)"
  if "assert_$1"; then
    passed+=("$1")
    echo "-- $1: ok"
    return 0
  fi
  failed+=("$1")
  echo "-- $1: FAILED"
  return 1
}

summary() {
  echo
  echo "gpu-check: ${#passed[@]} passed, ${#failed[@]} failed${failed[*]:+ (${failed[*]})} in ${SECONDS} s"
  [ ${#failed[@]} -eq 0 ]
}

# The losses of run NAME (its metrics.jsonl, every step): no step was non-finite, and the mean of
# the last 5 steps is below the first step's loss and, for the contrastive loss alone (not with
# "distilled": the teacher's term stays above it), below ln(global batch), the loss of a model that
# cannot tell the samples of a batch apart: the model learned.
loss_falls() {
  local metrics=$work/logs/$1/metrics.jsonl plain=1
  [ "${2:-}" = distilled ] && plain=0
  if grep '"type":"nonfinite"' "$metrics"; then echo "non-finite steps (above)"; return 1; fi
  awk -F'[:,]' -v plain=$plain 'BEGIN { n = 0 } /"type":"train"/ {
      for (i = 1; i < NF; i++) { if ($i == "\"loss\"") l[n] = $(i + 1); if ($i == "\"samples\"") s = $(i + 1) }
      if (n == 0) first_samples = s
      n++ }
    END {
      if (n < 10) { printf "  only %d steps logged\n", n; exit 1 }
      for (i = n - 5; i < n; i++) last += l[i] / 5
      chance = log(first_samples)
      printf "  loss %.4f at step 1, %.4f over the last 5 of %d steps (chance: ln %d = %.4f)\n", l[0], last, n, first_samples, chance
      exit !(last < l[0] && (last < chance || !plain)) }' "$metrics"
}

# clipc train on the GPU for clip-tiny over Fashion-MNIST's test split (under `clipc launch
# --nproc-per-node 1` when the first argument is "launch"); the run's own options follow.
train() {
  local launcher=()
  if [ "$1" = launch ]; then launcher=("$clipc" launch --nproc-per-node 1 --) && shift; fi
  timeout "$(limit 90)" "${launcher[@]}" "$clipc" train --device "$device" --model clip-tiny --train-data "$work/fm" \
    --vocab "$vocab" --batch-size 256 --warmup 10 --lr 1e-3 --logs "$work/logs" --log-every-n-steps 10 \
    --save-frequency 0 "$@"
}

assert_gpu() {
  if ! command -v nvidia-smi > /dev/null; then
    echo "no nvidia-smi: this machine has no NVIDIA driver, so no GPU to check"
    return 1
  fi
  local gpus
  gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)
  if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU 0'; then
    echo "nvidia-smi lists no GPU: $gpus"
    return 1
  fi
  echo "$gpus"
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
}

assert_configure() {
  if [ ! -f .gpu/unpack.sh ]; then
    echo ".gpu/unpack.sh is missing: carry .gpu (docs/gpu.md, step 1)"
    return 1
  fi
  source .gpu/unpack.sh
  # pkg-config, when the machine has none, from the carried pkgconf.
  command -v pkg-config > /dev/null || export PATH=/opt/deps/usr/bin:$PATH
  # The tests read Fashion-MNIST where Debian installs it.
  [ -e "$fmnist" ] || { mkdir -p "$(dirname "$fmnist")" && ln -s "$PWD/.gpu/fashion-mnist" "$fmnist"; }
  rm -rf "$work" && mkdir -p "$work"
  # WERROR off: a newer libtorch may deprecate a call; the warnings are counted below.
  timeout "$(limit 90)" cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCLIPC_WERROR=OFF \
    -DCLIPC_SHARED_DIR="$shared" > "$work/configure.log" 2>&1
  local rc=$?
  grep -E '^-- clipc:|CMake Error' "$work/configure.log"
  if [ $rc -ne 0 ]; then echo "configure failed ($rc):"; tail -n 20 "$work/configure.log"; return 1; fi
  if ! grep -qE 'CUDA-enabled libtorch \.* ON' "$work/configure.log"; then echo "configure: the CUDA-enabled libtorch is not ON"; return 1; fi
  if ! grep -qE 'NCCL backend \(multi-GPU\) \.* ON' "$work/configure.log"; then echo "configure: the NCCL backend is not ON"; return 1; fi
  timeout "$(limit 200)" cmake --build "$build" -j "$jobs" > "$work/build.log" 2>&1
  rc=$?
  echo "$(grep -c 'warning:' "$work/build.log") compiler warnings:"
  grep 'warning:' "$work/build.log" | sort -u | head -n 20
  if [ $rc -ne 0 ]; then echo "build failed ($rc):"; grep -E 'error|Error' "$work/build.log" | head -n 30; return 1; fi
}

# Starts the test suite in the background (the GPU assertions run meanwhile); assert_tests waits.
start_tests() {
  local exclude
  exclude=$(IFS='|'; echo "${NOT_THERE[*]}")
  echo "tests not run here: ${exclude:-none}"
  # niced: the GPU runs beside it keep the CPU they need to feed the GPU.
  timeout "$(limit 240)" nice -n 10 ctest --test-dir "$build" -j "$jobs" --timeout 200 --output-on-failure \
    ${exclude:+-E "^($exclude)\$"} > "$work/tests.log" 2>&1 &
  tests_pid=$!
}

assert_tests() {
  wait "$tests_pid"
  local rc=$?
  grep -E 'tests passed|tests failed|Total Test time|\*\*\*|Failed|Timeout' "$work/tests.log" | tail -n 30
  if [ $rc -ne 0 ]; then
    echo "the test suite failed ($rc); the output of the failed tests:"
    grep -B2 -A25 -E '\*\*\*Failed|\*\*\*Timeout|Exception' "$work/tests.log" | head -n 120
    return 1
  fi
}

assert_step_parity() {
  timeout "$(limit 90)" "$build/tests/test_step_parity" "$fixtures" "$device" > "$work/step_parity.log" 2>&1
  local rc=$?
  grep -E '^device|step3\.|after\.\*|adam\.\*|PASSED|FAILED|ERROR' "$work/step_parity.log"
  [ $rc -eq 0 ]
}

assert_collectives() {
  timeout "$(limit 60)" "$build/tests/test_dist_device" "$device" > "$work/collectives.log" 2>&1
  local rc=$?
  grep -E '^collectives|^  [a-z_]+ +[0-9]+ calls|PASSED|FAILED|ERROR' "$work/collectives.log"
  if ! grep -q '^collectives on rank 0 of 1 (nccl)' "$work/collectives.log"; then echo "the collectives did not run over NCCL"; return 1; fi
  [ $rc -eq 0 ]
}

assert_launch_resume() {
  timeout "$(limit 60)" "$clipc" shards --fashion-mnist "$fmnist" --split test --out "$work/fm" > "$work/shards.log" 2>&1 ||
    { echo "clipc shards failed:"; tail -n 5 "$work/shards.log"; return 1; }
  train launch --precision amp_bf16 --name launch --max-steps 30 --save-steps 15 --profile-steps 5 \
    > "$work/launch.log" 2>&1 || { echo "the first run failed:"; tail -n 15 "$work/launch.log"; return 1; }
  grep -E '^(clipc|done)' "$work/launch.log" | head -n 5
  if [ ! -f "$work/logs/launch/checkpoints/step_30/model.safetensors" ]; then echo "no checkpoint step_30 written"; return 1; fi
  train launch --precision amp_bf16 --name launch --max-steps 45 --save-steps 15 --resume latest \
    > "$work/resume.log" 2>&1 || { echo "the resumed run failed:"; tail -n 15 "$work/resume.log"; return 1; }
  grep -E '^(resumed|done)' "$work/resume.log"
  if ! grep -q '^resumed from .*step_30 at step 30' "$work/resume.log"; then echo "--resume latest did not continue from step_30"; return 1; fi
  loss_falls launch
}

# The profiled steps of the first run: one host read each (loss and gradient norm together),
# but for a step that printed its progress line, which also reads the logit scale it prints.
assert_host_reads() {
  grep -E '^(profile step|Train Epoch: [0-9]+ Step: [1-5] )' "$work/launch.log"
  awk '/^Train Epoch/ { printed[$5] = 1 }
    /^profile step/ { n++; step = $3 + 0
      for (i = 1; i < NF; i++) if ($(i + 1) == "host") reads = $i
      want = step in printed ? 2 : 1
      if (reads != want) { printf "  step %d read the host %d times, expected %d\n", step, reads, want; bad = 1 } }
    END { if (n == 0) print "  no profile lines (--profile-steps) in the first run"; exit bad || n == 0 }' "$work/launch.log"
}

assert_pure_bf16() {
  train --precision pure_bf16 --name pure_bf16 --max-steps 40 > "$work/pure_bf16.log" 2>&1 ||
    { tail -n 15 "$work/pure_bf16.log"; return 1; }
  loss_falls pure_bf16
}

assert_accum_freq() {
  train --precision amp_bf16 --name accum --max-steps 40 --batch-size 128 --accum-freq 2 > "$work/accum.log" 2>&1 ||
    { tail -n 15 "$work/accum.log"; return 1; }
  loss_falls accum
}

# Online distillation: the teacher is the first run's checkpoint (clip-tiny), on the student's GPU.
assert_distill() {
  local teacher=$work/logs/launch/checkpoints/step_30/model.safetensors
  if [ ! -f "$teacher" ]; then echo "no teacher: launch_resume wrote no checkpoint"; return 1; fi
  train --precision amp_bf16 --name distill --max-steps 40 --distill-model clip-tiny --distill-pretrained "$teacher" \
    > "$work/distill.log" 2>&1 || { tail -n 15 "$work/distill.log"; return 1; }
  loss_falls distill distilled
}

# ViT-L-14 (428M parameters) with the scale options: every step finite, the peak memory printed.
assert_large() {
  train launch --precision amp_bf16 --name large --model ViT-L-14 --max-steps 12 --batch-size 32 --zero 2 \
    --grad-checkpointing > "$work/large.log" 2>&1 || { tail -n 15 "$work/large.log"; return 1; }
  local metrics=$work/logs/large/metrics.jsonl
  if grep '"type":"nonfinite"' "$metrics"; then echo "non-finite steps (above)"; return 1; fi
  awk -F'[:,}]' '/"type":"train"/ { n++; for (i = 1; i < NF; i++) if ($i == "\"peak_mem_mb\"" && $(i + 1) > m) m = $(i + 1) }
    END { printf "  ViT-L-14 --zero 2 --grad-checkpointing: %d steps, peak %.0f MiB a step\n", n, m; exit !(n == 12 && m > 0) }' "$metrics"
}

# bench_step for ViT-B-32 at batch 256 on the GPU (its options follow NAME): the counters of one
# step, samples/s against OpenCLIP's 850 on an A100, and TFLOP/s as OpenCLIP counts them (3 x
# 14.78 GFLOP a sample) with their fraction of the GPU's dense bf16 peak (MFU).
bench() {
  local name=$1
  shift
  timeout "$(limit 60)" "$build/bench/bench_step" --device "$device" --model ViT-B-32 --batch-size 256 --steps 12 \
    --warmup 4 "$@" > "$work/bench_$name.log" 2>&1 || { tail -n 5 "$work/bench_$name.log"; return 1; }
  grep -E '^(adamw path|counters|kernels)' "$work/bench_$name.log"
  awk -v gpu="${gpu:-}" -v name="$name" '/^clipc/ {
      for (i = 1; i < NF; i++) { if ($(i + 1) == "samples/s") s = $i; if ($(i + 1) ~ /^TFLOP\/s/) t = $i }
      peak = gpu ~ /H100|H200|H800/ ? 989 : gpu ~ /A100|A800/ ? 312 : gpu ~ /L40|4090/ ? 181 : 0
      printf "  ViT-B-32 batch 256 %s: %.0f samples/s (%.2fx OpenCLIP'"'"'s 850 on an A100), %.1f TFLOP/s", name, s, s / 850, t
      if (peak) printf ", MFU %.1f%% of %s'"'"'s %d TFLOP/s dense bf16", 100 * t / peak, gpu, peak
      printf "\n"; found = s > 0 }
    END { exit !found }' "$work/bench_$name.log" || { echo "no samples/s in bench_step's output"; return 1; }
}

# amp_bf16 with the peak GPU memory nvidia-smi saw in use meanwhile (sampled every 100 ms); then, as
# figures, fp32 with TF32 and amp_bf16 with --deterministic (its cost).
assert_bench() {
  nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits -lms 100 > "$work/memory.log" 2>&1 &
  local sampler=$! ok=0
  bench amp_bf16 --precision amp_bf16 || ok=1
  kill "$sampler" 2> /dev/null
  wait "$sampler" 2> /dev/null
  awk -F', *' '$1 ~ /^[0-9]+$/ { if ($1 > m) m = $1; total = $2 }
    END { printf "  peak GPU memory in use: %d MiB of %d MiB\n", m, total; exit !(m > 0) }' "$work/memory.log" ||
    { echo "nvidia-smi gave no memory samples:"; head -n 3 "$work/memory.log"; ok=1; }
  bench fp32_tf32 --precision fp32 || ok=1
  bench amp_bf16_deterministic --precision amp_bf16 --deterministic || ok=1
  return $ok
}

# One line of bench NAME's run (its log): ms/step, ops and CUDA kernels a step, the AdamW path;
# fails unless the step ran, AdamW was libtorch's fused kernel and, where the profiler saw the
# GPU, some of the kernels were fused attention (flash, memory-efficient or cuDNN: not the math
# path).
step_cost() {
  local log=$work/bench_$1.log
  if [ ! -s "$log" ]; then echo "  $1: no bench_step output (the bench assertion did not run it)"; return 1; fi
  awk -v name="$1" '
    /^clipc/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms/step") ms = $i }
    /^counters of one step/ { ops = $5 }
    /^kernels of one step/ { kernels = $5; attention = substr($8, 2) + 0 }
    /^kernels: n\/a/ { kernels = "n/a" }
    /^adamw path: / { path = substr($0, 13) }
    END {
      counted = kernels != "" && kernels != "n/a"
      printf "  ViT-B-32 batch 256 %s: %s ms/step, %s ops and %s CUDA kernels a step", name, ms, ops, kernels
      if (counted) printf " (%d of fused attention)", attention
      printf "; AdamW: %s\n", path
      if (path != "fused") print "  AdamW did not take libtorch'"'"'s fused kernel (optim/adamw.h: adamw_path_for)"
      if (kernels == "") print "  bench_step printed no kernel line"
      if (counted && attention == 0) print "  no fused attention kernel ran: attention took the math path"
      exit !(ms > 0 && path == "fused" && kernels != "" && (!counted || attention > 0)) }' "$log"
}

# The cost of a step on the GPU as bench measured it, fp32 (TF32) and amp_bf16: no run of its own.
assert_step_cost() {
  local ok=0
  step_cost fp32_tf32 || ok=1
  step_cost amp_bf16 || ok=1
  return $ok
}

main() {
  check gpu || { echo "gpu-check: no GPU, nothing else can be checked"; summary; return 1; }
  check configure || { echo "gpu-check: no build, nothing else can be checked"; summary; return 1; }
  start_tests
  check step_parity
  check collectives
  check launch_resume
  check host_reads
  check pure_bf16
  check accum_freq
  check distill
  check large
  check tests
  check bench
  check step_cost
  summary
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  if [ -n "${OUT:-}" ]; then
    main "$@" 2>&1 | tee "$OUT/gpu-check.log"
  else
    main "$@"
  fi
fi
