#!/usr/bin/env bash
# Installs the Debian packages clipc needs, when missing. Idempotent; silent when all is there.
# An optimized BLAS matters: Debian's libtorch calls whatever libblas.so.3 points to, and the
# reference BLAS makes every matrix product 10-50x slower, so OpenBLAS (OpenMP build) is installed
# and selected.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp libgloo-dev
  libhdf5-dev libwebp-dev libjpeg-dev libpng-dev zlib1g-dev libarchive-dev
  libcjson-dev libutf8proc-dev libcmocka-dev
  dataset-fashion-mnist
  libcairo2-dev fonts-dejavu-core
  libprotobuf-c-dev protobuf-c-compiler libisal-dev  # TensorBoard event files (train --report-to tensorboard)
  python3  # tests/test_zeroshot_lists.sh reads OpenCLIP's lists from its source
  openmpi-bin  # tests/test_launchers.c starts ranks with mpirun as users do
)
# Optional: OpenCLIP beside clipc (bench/side_by_side.sh, bench/side_by_side_train.sh, with Debian's
# PyTorch; Pillow writes the latter's PNGs) and the allocators bench/bench_malloc.sh compares.
if [ "${CLIPC_SETUP_BENCH:-0}" = 1 ]; then
  packages+=(python3-torch python3-torchvision python3-pandas python3-regex python3-tqdm python3-pil
             libjemalloc-dev libgoogle-perftools-dev)
fi
# Optional: what bench/crosscheck_eval.py needs to run OpenCLIP's own evaluation beside clipc's.
if [ "${CLIPC_SETUP_CROSSCHECK:-0}" = 1 ]; then
  packages+=(python3-torch python3-torchvision python3-pil python3-numpy python3-regex python3-tqdm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Select OpenBLAS for libblas.so.3 when another implementation is active.
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *)
    alt=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas | head -n1 || true)
    if [ -n "$alt" ]; then
      echo "setup: selecting $alt for libblas.so.3"
      sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
      $sudo update-alternatives --set libblas.so.3-x86_64-linux-gnu "$alt" >/dev/null
    fi
    ;;
esac
