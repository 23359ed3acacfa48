#!/usr/bin/env bash
# Sets up, configures, builds and runs every test: the full build (warnings are errors; the CUDA
# branches compiled too, without a GPU), then the pure-C parts again under AddressSanitizer +
# UndefinedBehaviorSanitizer, where each fuzz harness of tests/fuzz also runs for a few seconds
# (CTest label "fuzz", docs/reliability.md).
# Usage: bash scripts/test.sh            (from the project root)
# Env:   CLIPC_SHARED_DIR  folder with the OpenCLIP fixtures (default ../shared)
#        CLIPC_JOBS        parallel build jobs (default: number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=${CLIPC_JOBS:-$(nproc)}
shared=${CLIPC_SHARED_DIR:-$(cd .. && pwd)/shared}

# CLIPC_CUDA_COMPILE_CHECK: the CUDA-only branches of the shim are compiled too (object files only,
# against libtorch's c10/ATen CUDA headers and /usr/local/cuda's; cmake/cuda_compile_check.cmake).
# The configure step's "clipc:" lines say what this build holds, the check included.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCLIPC_WERROR=ON -DCLIPC_CUDA_COMPILE_CHECK=ON \
  -DCLIPC_SHARED_DIR="$shared" | grep '^-- clipc:'
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

# A shortened demo (30 steps instead of 234) checks the README's first command end to end.
DEMO_SAMPLES=7680 DEMO_OUT=build/demo-ci bash scripts/demo.sh

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLIPC_WERROR=ON -DCLIPC_SANITIZE=ON \
  -DCLIPC_TORCH=OFF -DCLIPC_BENCH=OFF -DCLIPC_SHARED_DIR="$shared" >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
