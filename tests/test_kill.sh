#!/usr/bin/env bash
# Kill test: a small training run is killed with SIGKILL at seeded random moments (during steps,
# while a checkpoint is being written, during the end-of-epoch evaluation) and resumed each time
# with --resume latest. Every resume must find its newest checkpoint usable (nothing skipped), the
# final weights and optimizer state must be bit-identical to an uninterrupted run's, and every
# checkpoint left behind must load. Prints how many kills the run survived, by phase.
# Usage: test_kill.sh CLIPC FASHION_MNIST_DIR WORK_DIR [SEED] [KILLS]
set -euo pipefail
clipc=$1 fmnist=$2 work=$3
RANDOM=${4:-1}
kills=${5:-9}
rm -rf "$work"
mkdir -p "$work"
source "$(dirname "$0")/micro_run.sh"
micro_setup

# 6 epochs of 4 steps; checkpoints every 5 steps (2 kept) and epoch_latest; validation each epoch.
args=("${micro_args[@]}" --val-data "$work/data/val.json" --epochs 6 --logs "$work/logs"
  --save-steps 5 --save-frequency 0 --save-most-recent --keep-checkpoints 2)
train() { "$clipc" "${args[@]}" "$@"; }

train --name straight > "$work/straight.log" 2>&1 || { cat "$work/straight.log"; exit 1; }

ckpt=$work/logs/killed/checkpoints
count() {
  local n
  n=$(grep -c "$1" "$2" 2> /dev/null) || true
  echo "${n:-0}"
}
writing() { compgen -G "$ckpt/.tmp-*-$pid" > /dev/null; }  # this run's hidden folders
inode() { stat -c %i "$ckpt/epoch_latest" 2>/dev/null || echo none; }

alive() {
  local state
  read -r _ _ state _ < "/proc/$pid/stat" 2> /dev/null && [ "$state" != Z ]
}

# Waits for the moment of a phase in the run $pid logging to $log. Returns 1 if the run ended.
wait_for_step() {
  local n=$(count "Train Epoch" "$log")
  while [ "$(count "Train Epoch" "$log")" -le "$n" ]; do alive || return 1; sleep 0.005; done
  sleep "0.0$((RANDOM % 10))"
}
wait_for_write() {
  local spins=$((RANDOM % 50))
  until writing; do alive || return 1; sleep 0.001; done
  for ((i = 0; i < spins; i++)); do :; done
}
wait_for_eval() {
  local before=$(inode)
  while [ "$(inode)" = "$before" ]; do alive || return 1; sleep 0.002; done
  vals=$(count '"type":"val"' "$work/logs/killed/metrics.jsonl")
  sleep "0.00$((RANDOM % 10))"
}

# What the run was doing when killed, from what it left: a hidden folder is a checkpoint being
# written; an epoch_latest newer than the last validation line is an evaluation in progress.
phase_of_kill() {
  if writing; then echo write
  elif [ "$1" = eval ] && [ "$(count '"type":"val"' "$work/logs/killed/metrics.jsonl")" = "$vals" ]; then echo eval
  else echo step
  fi
}

declare -A survived=([step]=0 [write]=0 [eval]=0)
phases=(step write eval)
attempt=0 done=0
while [ $((survived[step] + survived[write] + survived[eval])) -lt "$kills" ] && [ $attempt -lt $((kills + 6)) ]; do
  want=${phases[$((attempt % 3))]}
  log=$work/run-$attempt.log
  "$clipc" "${args[@]}" --name killed --resume latest > "$log" 2>&1 &  # $! is clipc itself
  pid=$!
  if "wait_for_$want"; then
    kill -9 "$pid"
    wait "$pid" 2> /dev/null || true
    got=$(phase_of_kill "$want")
    survived[$got]=$((survived[$got] + 1))
    echo "kill $attempt: aimed at $want, landed during $got"
  else
    wait "$pid" || { cat "$log"; exit 1; }
    done=1
    break
  fi
  if grep -qs "skipping" "$log"; then echo "a resume skipped a damaged checkpoint:"; cat "$log"; exit 1; fi
  attempt=$((attempt + 1))
done
if [ $done = 0 ]; then
  log=$work/run-final.log
  train --name killed --resume latest > "$log" 2>&1 || { cat "$log"; exit 1; }
  if grep -q "skipping" "$log"; then cat "$log"; exit 1; fi
fi

for f in model.safetensors state.safetensors; do
  cmp "$work/logs/straight/checkpoints/epoch_latest/$f" "$ckpt/epoch_latest/$f"
done
echo "final weights and optimizer state bit-identical to the uninterrupted run"
if compgen -G "$ckpt/.*-*" > /dev/null; then echo "leftovers of killed writes remain:" "$ckpt"/.*-*; exit 1; fi

# Every checkpoint left behind loads: weights, optimizer state and loader position.
for dir in "$ckpt"/*; do
  train --name killed --resume "$dir" --max-steps 1 > "$work/load.log" 2>&1 || { cat "$work/load.log"; exit 1; }
  grep -q "resumed from $dir" "$work/load.log"
done
echo "checkpoints left behind, all loading: $(cd "$ckpt" && echo *)"

total=$((survived[step] + survived[write] + survived[eval]))
echo "kills survived: $total (during steps: ${survived[step]}, checkpoint writes: ${survived[write]}, evaluation: ${survived[eval]})"
for p in step write eval; do
  [ "${survived[$p]}" -gt 0 ] || { echo "no kill landed during $p"; exit 1; }
done
[ "$total" -ge "$kills" ] || { echo "only $total of $kills kills happened before the run ended"; exit 1; }
rm -rf "$work"
