#!/usr/bin/env bash
# Sets up, configures, builds and runs every test: the full build (warnings are errors), then the
# pure-C parts again under AddressSanitizer + UndefinedBehaviorSanitizer, where each fuzz harness
# of tests/fuzz also runs for a few seconds (CTest label "fuzz", docs/reliability.md).
# Usage: bash scripts/test.sh            (from the project root)
# Env:   CLIPC_SHARED_DIR  folder with the OpenCLIP fixtures (default ../shared)
#        CLIPC_JOBS        parallel build jobs (default: number of cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

jobs=${CLIPC_JOBS:-$(nproc)}
shared=${CLIPC_SHARED_DIR:-$(cd .. && pwd)/shared}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCLIPC_WERROR=ON -DCLIPC_SHARED_DIR="$shared" >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

# A shortened demo (30 steps instead of 234) checks the README's first command end to end.
DEMO_SAMPLES=7680 DEMO_OUT=build/demo-ci bash scripts/demo.sh

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLIPC_WERROR=ON -DCLIPC_SANITIZE=ON \
  -DCLIPC_TORCH=OFF -DCLIPC_BENCH=OFF -DCLIPC_SHARED_DIR="$shared" >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"
