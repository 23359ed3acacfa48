#!/usr/bin/env bash
# Builds clipc against a GPU machine's PyTorch libtorch (CUDA), runs the tests, and times training
# steps on the GPU (fp32 and bf16 autocast). Run THERE from the project root, with .gpu/ carried
# (see docs/gpu.md for how to fill it here first). Prints everything; stops at nothing, so one run
# shows all that works and all that does not.
set -uo pipefail
source .gpu/unpack.sh
shared=$PWD/.gpu/shared
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCLIPC_WERROR=ON -DCLIPC_SHARED_DIR="$shared"
cmake --build build-gpu -j "$(nproc)"
ctest --test-dir build-gpu --output-on-failure -j 8
build-gpu/cli/clipc info
for model in clip-tiny ViT-B-32; do
  build-gpu/bench/bench_step --device cuda --model "$model" --batch-size 256 --steps 10 --warmup 3 | tail -n1
  build-gpu/bench/bench_step --device cuda --bf16 --model "$model" --batch-size 256 --steps 10 --warmup 3 | tail -n1
done
python3 bench/bench_step.py --model ViT-B-32 --batch-size 256 --steps 10 --device cuda 2>&1 | tail -n1 || true
