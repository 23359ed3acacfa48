#!/usr/bin/env bash
# The launchers users use, each starting 2 CPU ranks (Gloo) of a micro training run that must end
# with exactly the weights of `clipc launch --nproc-per-node 2` (same world size, same reductions:
# the files are compared byte for byte):
#  - torchrun: Debian's torchrun fails on Python 3.11 before it starts any worker, so
#    tests/torchrun_agent.cpp reproduces what its agent (PyTorch 1.13, static rendezvous) sets up:
#    a c10d store it serves on MASTER_PORT before the ranks start, TORCHELASTIC_USE_AGENT_STORE=True
#    and the rest of the agent's environment. Once straight; once with rank 1 killed during the
#    first attempt, the agent restarting both ranks against the same store (keys of attempt 0
#    still in it) and the run going on with --resume latest.
#  - Open MPI: mpirun -np 2 -x MASTER_ADDR -x MASTER_PORT (skipped, saying so, when mpirun is
#    missing; scripts/setup.sh installs openmpi-bin).
#  - Slurm: srun's environment emulated (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_ID,
#    SLURM_JOB_ID, SLURM_JOB_NODELIST, ...), without MASTER_ADDR or MASTER_PORT: the first host of
#    the node list and the port derived from the job id.
# And nothing waits silently: a rank whose store never answers, and a rank whose peer never comes,
# give up within --dist-timeout naming the address, or the missing rank.
# Every run has a short --dist-timeout and a `timeout`, so that a regression fails, never hangs.
# Usage: test_launchers.sh CLIPC TORCHRUN_AGENT FASHION_MNIST_DIR WORK_DIR
set -euo pipefail
clipc=$(realpath "$1") agent=$(realpath "$2") fmnist=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
source "$(dirname "$0")/micro_run.sh"
micro_setup
cd "$work"

port=$((20000 + $$ % 9000))
args=("$clipc" "${micro_args[@]}" --batch-size 16 --threads 1 --workers 1 --epochs 2 --logs "$work/logs"
  --dist-timeout 20)
passed=0 failed=0 skipped=0
pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1"; failed=$((failed + 1)); }

# Runs "$@" (a launcher and its command) with a time limit, its output in NAME.log; 1 if it failed
# (then its end is shown, without the option listing).
run() {
  local name=$1
  shift
  timeout -k 5 150 "$@" > "$work/$name.log" 2>&1 || { echo "--- $name.log"; grep -v '^  ' "$work/$name.log" | tail -n 30; return 1; }
}
weights() { echo "$work/logs/$1/checkpoints/epoch_2/model.safetensors"; }
# Whether run $1 ended with the reference's weights.
same_as_launch() { cmp -s "$(weights "$1")" "$(weights launch)"; }
check() {
  local name=$1 what=$2
  if same_as_launch "$name"; then pass "$what ends with clipc launch's weights"
  else fail "$what does not end with clipc launch's weights"; fi
}

run launch "$clipc" launch --nproc-per-node 2 --master-port $((port++)) -- "${args[@]}" --name launch ||
  { echo "the reference run failed"; exit 1; }

# torchrun, straight.
if run torchrun "$agent" --nproc-per-node 2 --master-port $((port++)) -- "${args[@]}" --name torchrun; then
  check torchrun "torchrun (agent store)"
else fail "2 ranks under torchrun's agent"; fi

# torchrun restarting the ranks: in attempt 0 both train 2 steps (a checkpoint) and rank 1 then
# fails; the agent starts both again (attempt 1) against the same store, the keys of attempt 0
# still in it, and the run goes on with --resume latest.
# shellcheck disable=SC2016
attempt='if [ "$TORCHELASTIC_RESTART_COUNT" = 0 ]; then "$@" --max-steps 2 || exit; exit "$RANK"; fi; exec "$@"'
if run restarted "$agent" --nproc-per-node 2 --master-port $((port++)) --max-restarts 1 -- \
  sh -c "$attempt" sh "${args[@]}" --name restarted --save-steps 2 --resume latest; then
  if grep -q "attempt 0: a worker failed with status 1" "$work/restarted.log"; then
    check restarted "torchrun restarting the ranks (attempt 1, same store)"
  else fail "the torchrun restart run did not fail in attempt 0"; fi
else fail "torchrun restarting the ranks"; fi

# Open MPI.
if command -v mpirun > /dev/null; then
  mpi=(mpirun -np 2 --oversubscribe --mca btl "self,tcp" --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
  [ "$(id -u)" != 0 ] || mpi+=(--allow-run-as-root)
  if run mpirun "${mpi[@]}" -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT=$((port++)) "${args[@]}" --name mpirun; then
    check mpirun "mpirun -np 2"
  else fail "2 ranks under mpirun"; fi
else
  echo "SKIPPED: mpirun is not installed (scripts/setup.sh installs openmpi-bin)"
  skipped=$((skipped + 1))
fi

# Slurm: each task as srun starts it, without MASTER_ADDR or MASTER_PORT (the job id gives the port).
slurm_port=$((29500 + $$ % 1000))
srun_env=(env -u MASTER_ADDR -u MASTER_PORT SLURM_JOB_ID=$((4000000 + slurm_port - 29500)) SLURM_JOB_NODELIST=localhost
  SLURM_JOB_NUM_NODES=1 SLURM_NNODES=1 SLURM_NODEID=0 SLURM_STEP_ID=0 SLURM_STEP_NUM_TASKS=2 SLURM_NTASKS=2
  SLURM_NPROCS=2 SLURM_TASKS_PER_NODE=2 "SLURM_GTIDS=0,1" SLURMD_NODENAME=localhost)
timeout -k 5 150 "${srun_env[@]}" SLURM_PROCID=1 SLURM_LOCALID=1 "${args[@]}" --name slurm > slurm-1.log 2>&1 &
if run slurm "${srun_env[@]}" SLURM_PROCID=0 SLURM_LOCALID=0 "${args[@]}" --name slurm && wait $! && same_as_launch slurm
then pass "srun's environment (port $slurm_port from SLURM_JOB_ID) ends with clipc launch's weights"
else fail "2 ranks with srun's environment"; tail -n 20 slurm-1.log; fi

# A client whose store never answers names the address it tried, within the timeout.
store_gone=$((port++))
RANK=1 LOCAL_RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$store_gone TORCHELASTIC_USE_AGENT_STORE=True \
  TORCHELASTIC_RESTART_COUNT=0 timeout 60 "${args[@]}" --name nostore --dist-timeout 2 > nostore.log 2>&1 || true
if grep -q "rank 1: joining the gloo group of 2 ranks at 127.0.0.1:$store_gone: no store answered within 2 s" nostore.log
then pass "a rank without a store names the address it tried"
else fail "a rank without a store: $(tail -n 3 nostore.log)"; fi

# Rank 1 never starts clipc: rank 0 names it when the rendezvous gives up.
# shellcheck disable=SC2016
if ! timeout 60 "$agent" --nproc-per-node 2 --master-port $((port++)) -- \
  sh -c 'if [ "$RANK" = 1 ]; then exec sleep 50; fi; exec "$@"' sh "${args[@]}" --name alone --dist-timeout 2 \
  > alone.log 2>&1 && grep -q "rank 0: joining the gloo group of 2 ranks at 127.0.0.1:[0-9]*: rank 1 did not join within 2 s" alone.log
then pass "a rendezvous that gives up names the rank that never came"
else fail "a peer that never comes: $(tail -n 3 alone.log)"; fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ] || exit 1
rm -rf "$work"
