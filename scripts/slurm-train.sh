#!/usr/bin/env bash
# Slurm batch example: clipc training on several nodes of GPUs. Edit the #SBATCH lines and the
# training command, then `sbatch scripts/slurm-train.sh` from the project root.
#
# MODE=launch (default): one task per node runs `clipc launch`, which starts the node's ranks
#   with torchrun's variables, forwards signals and stops them all when one fails.
# MODE=srun: srun starts one task per GPU itself; each rank finds its place from SLURM_PROCID,
#   SLURM_NTASKS, SLURM_LOCALID and the first host of SLURM_JOB_NODELIST (docs/distributed.md).
#SBATCH --job-name=clipc
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
set -euo pipefail

clipc=${CLIPC:-build/cli/clipc}
gpus=${GPUS_PER_NODE:-8}
master=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=$((29500 + SLURM_JOB_ID % 1000))  # what the ranks use under MODE=srun too
train=("$clipc" train --model ViT-B-32 --train-data data/cc --batch-size 256 --epochs 32
       --name "slurm-$SLURM_JOB_ID")

case "${MODE:-launch}" in
  launch)
    # SLURM_NODEID differs per task, so it is read inside each task's shell.
    # shellcheck disable=SC2016
    srun --kill-on-bad-exit=1 bash -c 'exec "$0" launch --nnodes "$SLURM_NNODES" --node-rank "$SLURM_NODEID" \
        --nproc-per-node "$1" --master-addr "$2" --master-port "$3" -- "${@:4}"' \
      "$clipc" "$gpus" "$master" "$port" "${train[@]}"
    ;;
  srun)
    # The task counts are given explicitly: srun would otherwise take SLURM_NTASKS (one per node,
    # from the #SBATCH lines) from the batch environment and start one rank per node.
    srun --nodes="$SLURM_NNODES" --ntasks=$((SLURM_NNODES * gpus)) --ntasks-per-node="$gpus" \
      --cpus-per-task=$((SLURM_CPUS_PER_TASK / gpus)) --kill-on-bad-exit=1 "${train[@]}"
    ;;
  *)
    echo "slurm-train.sh: MODE must be launch or srun" >&2
    exit 2
    ;;
esac
