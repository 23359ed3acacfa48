#!/usr/bin/env bash
# cmake/find_nccl.cmake finds NCCL where users have it, in its order, and says where: fake installs
# (empty files with the right names) of pip's layout (<site-packages>/nvidia/nccl with libnccl.so.2
# and no unversioned symlink, nvidia/cuda_runtime with libcudart.so.12) beside a pip PyTorch and
# on python3's path only, a CUDA_HOME and a NCCL_ROOT, configured with tests/find_nccl/.
# Usage: test_find_nccl.sh WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$1
rm -rf "$work"
mkdir -p "$work"
passed=0 failed=0

# A fake pip site-packages at $1: torch/ beside nvidia/nccl and nvidia/cuda_runtime.
fake_wheels() {
  mkdir -p "$1/torch" "$1/nvidia/nccl/include" "$1/nvidia/nccl/lib" "$1/nvidia/cuda_runtime/include" \
    "$1/nvidia/cuda_runtime/lib"
  touch "$1/nvidia/nccl/include/nccl.h" "$1/nvidia/nccl/lib/libnccl.so.2" \
    "$1/nvidia/cuda_runtime/include/cuda_runtime_api.h" "$1/nvidia/cuda_runtime/lib/libcudart.so.12"
}
# A fake toolkit at $1 (include/, lib64/ with the unversioned names).
fake_toolkit() {
  mkdir -p "$1/include" "$1/lib64"
  touch "$1/include/nccl.h" "$1/include/cuda_runtime_api.h" "$1/lib64/libnccl.so" "$1/lib64/libcudart.so"
}
fake_wheels "$work/site"
fake_wheels "$work/venv"
fake_toolkit "$work/cuda"
fake_toolkit "$work/nccl"

# Configures tests/find_nccl with the environment and -D options given; the output in $out.
configure() {
  local dir=$work/build-$((passed + failed))
  out=$(env -u CUDA_HOME -u CUDA_PATH -u NCCL_ROOT -u NCCL_HOME -u PYTHONPATH "$@" -S "$here/find_nccl" -B "$dir" 2>&1)
}
expect() {
  local what=$1 text=$2
  if grep -qF -- "$text" <<< "$out"; then echo "ok: $what"; passed=$((passed + 1))
  else echo "FAILED: $what: no '$text' in:"; echo "$out"; failed=$((failed + 1)); fi
}

configure cmake -DTORCH_INSTALL_PREFIX="$work/site/torch"
expect "beside pip's PyTorch" "found in: pip's PyTorch (the nvidia-nccl wheel beside it) ($work/site/nvidia/nccl)"
expect "libnccl.so.2 without its symlink" "library: $work/site/nvidia/nccl/lib/libnccl.so.2"
expect "the wheel's CUDA runtime" "cudart: $work/site/nvidia/cuda_runtime/lib/libcudart.so.12"

configure PYTHONPATH="$work/venv" cmake
expect "python3's site-packages" "found in: the nvidia-nccl wheel in python3's site-packages ($work/venv/nvidia/nccl)"

configure PYTHONPATH="$work/venv" CUDA_HOME="$work/cuda" cmake
expect "CUDA_HOME before python3's wheel" "library: $work/cuda/lib64/libnccl.so"
expect "CUDA_HOME named" "found in: CUDA_HOME ($work/cuda)"

configure NCCL_ROOT="$work/nccl" CUDA_HOME="$work/cuda" cmake -DTORCH_INSTALL_PREFIX="$work/site/torch"
expect "NCCL_ROOT first" "found in: NCCL_ROOT ($work/nccl)"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] || exit 1
rm -rf "$work"
