# Helpers of the bench/*.sh scripts; sourced, not run, from the project root.
#   median                      the median of the numbers on stdin, one a line
#   metrics_after FILE KEY WARM KEY of every "train" line of a clipc metrics.jsonl whose step is past
#                               WARM, one a line
#   openclip_env                OpenCLIP v2.20.0 ready to run, as the peers' bench scripts run it:
#                               OPENCLIP_SRC (default /tmp/open_clip-v2.20.0/src, extracted from
#                               $CLIPC_SHARED_DIR/peers/openclip/open_clip-v2.20.0-src.tar.gz when
#                               missing), their env.sh sourced from OPENCLIP_BENCH (PYTHONPATH with
#                               the stubs and OpenCLIP, OC_EXTRA_CONFIGS with clip-tiny, SCRIPTS_DIR),
#                               PYTHON (default /usr/bin/python3, Debian's python3-torch), 2 threads
#                               and OMP_WAIT_POLICY=passive (OpenCLIP's faster setting here)
#   train_bench_env STEPS       the multi-rank training benchmarks' setup (below)
# Env: CLIPC_SHARED_DIR (default ../shared), OPENCLIP_SRC, OPENCLIP_BENCH, PYTHON.

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

metrics_after() {
  awk -v warm="$3" -v key="\"$2\"" -F'[:,}]' '
    /"type":"train"/ { for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i + 1); if ($i == key) v = $(i + 1) }
                       if (s > warm) print v }' "$1"
}

openclip_env() {
  local shared=${CLIPC_SHARED_DIR:-../shared}
  local tarball=$shared/peers/openclip/open_clip-v2.20.0-src.tar.gz
  export OPENCLIP_SRC=${OPENCLIP_SRC:-/tmp/open_clip-v2.20.0/src}
  export PYTHON=${PYTHON:-/usr/bin/python3} OMP_WAIT_POLICY=passive TORCH_THREADS=2 OMP_NUM_THREADS=2
  if [ ! -d "$OPENCLIP_SRC/open_clip" ]; then
    [ "$OPENCLIP_SRC" = /tmp/open_clip-v2.20.0/src ] && [ -f "$tarball" ] ||
      { echo "no OpenCLIP source in $OPENCLIP_SRC, and no $tarball to extract (set CLIPC_SHARED_DIR)" >&2; return 1; }
    tar -xzf "$tarball" -C /tmp
  fi
  local bench=${OPENCLIP_BENCH:-$shared/peers/openclip/bench}
  [ -f "$bench/env.sh" ] || { echo "no OpenCLIP bench scripts in $bench (set OPENCLIP_BENCH)" >&2; return 1; }
  "$PYTHON" -c 'import torch' 2>/dev/null ||
    { echo "$PYTHON has no torch: CLIPC_SETUP_BENCH=1 bash scripts/setup.sh" >&2; return 1; }
  source "$bench/env.sh"
}

# train_bench_env STEPS: what the multi-rank training benchmarks (bench_dist.sh, bench_overlap.sh)
# set up alike: build, vocab, work, port and clipc (which must be built), Fashion-MNIST's training
# split as shards in $work/fm-train, $work/logs, and warm (the first steps, left out of the medians).
train_bench_env() {
  build=${BUILD:-build}
  vocab=${CLIPC_VOCAB:-../shared/clip/bpe_simple_vocab_16e6.txt.gz}
  work=${BENCH_DIR:-/tmp/clipc-bench-train}
  port=${MASTER_PORT:-$((29600 + $$ % 1000))}
  clipc=$build/cli/clipc
  [ -x "$clipc" ] || { echo "build clipc first: cmake --build $build --target clipc" >&2; exit 1; }
  mkdir -p "$work/logs"
  [ -f "$work/fm-train/manifest.json" ] ||
    $clipc shards --fashion-mnist /usr/share/datasets/fashion-mnist --split train --out "$work/fm-train" >/dev/null
  warm=$(( $1 / 4 > 1 ? $1 / 4 : 1 ))
}
