#!/usr/bin/env bash
# Kill test across ranks (tests/test_kill.sh kills one process): a micro training run on 2 CPU ranks
# under `clipc launch` has one rank, chosen at random, killed with SIGKILL at seeded random moments
# (during steps, or while rank 0 writes a checkpoint), and is resumed each time with --resume latest:
#   A. always on 2 ranks: the final weights and optimizer state are bit-identical to the
#      uninterrupted 2-rank run's;
#   B. alternately on 1 rank of the same global batch (itself killed at a random moment, but for
#      the last, which runs to the end) and on 2 ranks: the final weights are within the noise
#      floor of the uninterrupted run's (1e-5 relative, as tests/test_dist_train.c).
# After each kill, `clipc launch` must have stopped the other rank (and said which rank died), no
# resume may find its newest checkpoint damaged (nothing skipped), and no checkpoint may be newer
# than the last step logged; at the end no half-written checkpoint is left behind.
# Usage: test_kill_dist.sh CLIPC FASHION_MNIST_DIR WORK_DIR [SEED] [RANK_KILLS (at least 2; B gets half)]
set -euo pipefail
clipc=$(realpath "$1") fmnist=$2 work=$3
RANDOM=${4:-1}
kills=${5:-5}
rm -rf "$work"
mkdir -p "$work"
source "$(dirname "$0")/micro_run.sh"
micro_setup
cd "$work"

port=$((20000 + $$ % 9000))
# 12 epochs of 4 steps of a global batch of 32; a checkpoint every step, the last 2 kept.
args=("${micro_args[@]}" --threads 1 --workers 1 --epochs 12 --logs "$work/logs" --save-steps 1
  --save-frequency 0 --keep-checkpoints 2 --dist-timeout 20)
# cmd=(the command of a run on $1 ranks); run directly, so that $! is clipc's own pid.
command_for() {
  if [ "$1" = 2 ]; then
    cmd=("$clipc" launch --nproc-per-node 2 --master-port $((port++)) --grace 5 -- "$clipc" "${args[@]}" --batch-size 16)
  else cmd=("$clipc" "${args[@]}" --batch-size 32); fi
}

command_for 2
"${cmd[@]}" --name straight > straight.log 2>&1 || { cat straight.log; exit 1; }
final=$(cd logs/straight/checkpoints && ls -d step_* | sort -t_ -k2 -n | tail -n 1)

count() {
  local n
  n=$(grep -c "$1" "$2" 2> /dev/null) || true
  echo "${n:-0}"
}
alive() {
  local state
  { read -r _ _ state _ < "/proc/$1/stat"; } 2> /dev/null && [ "$state" != Z ]
}
ranks_of() { pgrep -P "$1" || true; }  # the rank processes of a `clipc launch`

# Waits for a moment to kill run $run (pid $pid): 0, or 1 when the run ended first.
#   step: a step after the ones logged when it started, then a random few ms;
#   write: rank 0 ($writer) writing a checkpoint (its hidden folder), then a random spin (or, when 2 steps
#          passed without the poll seeing one, at once).
wait_for_step() {
  while [ "$(count '"type":"train"' "logs/$run/metrics.jsonl")" -le "$logged" ]; do alive "$pid" || return 1; sleep 0.005; done
  sleep "0.0$((RANDOM % 10))"
}
wait_for_write() {
  local spins=$((RANDOM % 50))
  until compgen -G "logs/$run/checkpoints/.tmp-*-$writer" > /dev/null; do  # not a killed run's
    alive "$pid" || return 1
    # A write of the micro model takes a few ms: after 2 steps without seeing one, kill now.
    [ "$(count '"type":"train"' "logs/$run/metrics.jsonl")" -le $((logged + 2)) ] || return 0
    sleep 0.001
  done
  for ((i = 0; i < spins; i++)); do :; done
}

# What a kill left must be consistent: no checkpoint newer than the last step logged.
check_left() {
  local newest last
  newest=$(cd "logs/$run/checkpoints" && ls -d step_* 2> /dev/null | sed 's/step_//' | sort -n | tail -n 1)
  last=$(grep '"type":"train"' "logs/$run/metrics.jsonl" | sed 's/.*"step":\([0-9]*\).*/\1/' | sort -n | tail -n 1)
  if [ -n "$newest" ] && [ "$newest" -gt "${last:-0}" ]; then
    echo "checkpoint step_$newest is newer than the last step logged ($last)"
    exit 1
  fi
}
no_skips() {
  if grep -q "skipping" "$1"; then echo "a resume skipped a damaged checkpoint:"; cat "$1"; exit 1; fi
}

# Starts one attempt of run $run on $1 ranks, kills it at a random moment: 0 when killed, 1 when
# the run had ended (successfully) before the moment came.
attempt=0
kill_attempt() {
  local ranks=$1 log=$work/$run-$attempt.log want victim status
  logged=$(count '"type":"train"' "logs/$run/metrics.jsonl")
  want=$([ $((RANDOM % 3)) = 0 ] && echo write || echo step)
  command_for "$ranks"
  "${cmd[@]}" --name "$run" --resume latest > "$log" 2>&1 &
  pid=$! writer=$!
  attempt=$((attempt + 1))
  if [ "$ranks" = 2 ]; then  # the ranks, once both run clipc train; rank 0 writes the checkpoints
    until [ "$writer" != "$pid" ]; do
      alive "$pid" || { cat "$log"; exit 1; }
      sleep 0.01
      mapfile -t pids < <(ranks_of "$pid")
      [ "${#pids[@]}" = 2 ] || continue
      for p in "${pids[@]}"; do  # RANK=0 once the rank's exec has given it its environment
        if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx RANK=0; then writer=$p; fi
      done
    done
  fi
  if ! "wait_for_$want"; then
    wait "$pid" || { cat "$log"; exit 1; }
    no_skips "$log"
    return 1
  fi
  if [ "$ranks" = 1 ]; then
    kill -9 "$pid"
    wait "$pid" 2> /dev/null || true
    one_rank_kills=$((one_rank_kills + 1))
    echo "kill $attempt: the 1-rank resume, aimed at $want"
  else
    victim=$((RANDOM % 2))
    kill -9 "${pids[$victim]}"
    status=0
    wait "$pid" || status=$?
    [ "$status" = 137 ] || { echo "clipc launch exited $status after a rank was killed"; cat "$log"; exit 1; }
    grep -q "clipc launch: rank [01] was killed by signal 9; the other ranks were stopped" "$log" ||
      { echo "clipc launch did not name the killed rank:"; cat "$log"; exit 1; }
    if alive "${pids[$((1 - victim))]}"; then echo "the other rank still runs after clipc launch ended"; exit 1; fi
    two_rank_kills=$((two_rank_kills + 1))
    echo "kill $attempt: a rank of 2 (pid ${pids[$victim]}), aimed at $want"
  fi
  no_skips "$log"
  check_left
  return 0
}

# Runs $run to its end on $1 ranks.
finish() {
  local log=$work/$run-final.log
  command_for "$1"
  "${cmd[@]}" --name "$run" --resume latest > "$log" 2>&1 || { cat "$log"; exit 1; }
  no_skips "$log"
  if compgen -G "logs/$run/checkpoints/.*-*" > /dev/null; then
    echo "leftovers of killed writes remain:" "logs/$run/checkpoints"/.*-*
    exit 1
  fi
}

# ||a - b|| / ||b|| over the float32 tensors of two safetensors files (other dtypes must be equal).
rel_diff() {
  python3 - "$1" "$2" << 'PY'
import array, json, math, struct, sys
def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    return {k: (v["dtype"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items() if k != "__metadata__"}
a, b = read(sys.argv[1]), read(sys.argv[2])
assert a.keys() == b.keys(), "different tensors"
diff2 = norm2 = 0.0
for k, (dtype, bytes_b) in b.items():
    if dtype != "F32":
        assert a[k] == (dtype, bytes_b), k
        continue
    x, y = array.array("f", a[k][1]), array.array("f", bytes_b)
    diff2 += sum((p - q) ** 2 for p, q in zip(x, y))
    norm2 += sum(q * q for q in y)
print(f"{math.sqrt(diff2 / norm2):.3g}")
PY
}

two_rank_kills=0 one_rank_kills=0
# A: resumed on 2 ranks every time.
run=fixed
for ((k = 0; k < kills - kills / 2; k++)); do kill_attempt 2 || break; done
finish 2
for f in model.safetensors state.safetensors; do
  cmp "logs/straight/checkpoints/$final/$f" "logs/fixed/checkpoints/$final/$f"
done
echo "A: resumed on 2 ranks each time: final weights and optimizer state bit-identical to the uninterrupted run"
a_kills=$two_rank_kills

# B: a rank killed, resumed on 1 rank (killed too), then on 2 ranks again, ..., and the last
# resume, on 1 rank, runs to the end.
run=moved
for ((k = 0; k < kills / 2; k++)); do
  kill_attempt 2 || break
  [ $((k + 1)) = $((kills / 2)) ] || kill_attempt 1 || break
done
finish 1
d=$(rel_diff "logs/moved/checkpoints/$final/model.safetensors" "logs/straight/checkpoints/$final/model.safetensors")
echo "B: resumed on 1 and 2 ranks in turn: final weights within $d (relative) of the uninterrupted run"
python3 -c "import sys; sys.exit(0 if float('$d') <= 1e-5 else 1)" || { echo "beyond the noise floor (1e-5)"; exit 1; }

echo "rank kills: $two_rank_kills (A: $a_kills, B: $((two_rank_kills - a_kills))), and $one_rank_kills of 1-rank resumes"
[ "$two_rank_kills" -ge "$kills" ] || { echo "only $two_rank_kills of $kills kills happened before the runs ended"; exit 1; }
echo "1 passed, 0 failed"
rm -rf "$work"
