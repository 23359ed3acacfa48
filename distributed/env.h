// env: where this process sits in a multi-process run, read from the environment of the launcher
// that started it (pure C; no libtorch).
//
// Looked for in this order, the first launcher found wins:
//   torchrun / clipc launch  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; under torchrun's
//                            agent (TORCHELASTIC_USE_AGENT_STORE=True) also TORCHELASTIC_RESTART_COUNT
//   Open MPI (mpirun)        OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK; MASTER_ADDR; MASTER_PORT
//   Slurm (srun tasks)       SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR, else the first
//                            host of SLURM_JOB_NODELIST; MASTER_PORT
// Slurm counts only inside a job step (SLURM_STEP_ID set, i.e. under srun): a batch script itself
// also carries SLURM_PROCID=0 and SLURM_NTASKS but is one process. Without MASTER_PORT, Open MPI
// and Slurm runs use DIST_ENV_DEFAULT_PORT (plus SLURM_JOB_ID mod 1000 under Slurm, so that jobs
// sharing a node differ). Without any launcher the process is rank 0 of a world of 1.
//
// Who serves the store: rank 0, on MASTER_PORT, except under torchrun's agent with its default
// static rendezvous: the agent already serves a store there for the whole run (and restarts the
// workers against it), says so with TORCHELASTIC_USE_AGENT_STORE=True, and every rank is a client
// that keeps its keys under "/worker/attempt_N" (N = TORCHELASTIC_RESTART_COUNT), as PyTorch's
// own ranks do, so that an attempt never meets the keys of an earlier one or of the agent.
#ifndef CLIPC_DISTRIBUTED_ENV_H
#define CLIPC_DISTRIBUTED_ENV_H

#include <stddef.h>

#define DIST_ENV_DEFAULT_PORT 29500

typedef enum {
    DIST_LAUNCHER_NONE,
    DIST_LAUNCHER_TORCHRUN,
    DIST_LAUNCHER_OPENMPI,
    DIST_LAUNCHER_SLURM,
} dist_launcher;

typedef struct {
    dist_launcher launcher;
    int rank, world_size;
    int local_rank;          // the rank among those of this node: the GPU it uses
    char master_addr[256];   // rank 0's host, which serves the store ("" without a launcher)
    int master_port;         // 0 without a launcher
    // "/worker/attempt_N" when torchrun's agent serves the store (every rank a client, its keys
    // under this prefix); "" when rank 0 serves it.
    char agent_store_prefix[48];
} dist_env;

const char *dist_launcher_name(dist_launcher launcher);  // "none", "torchrun", "openmpi", "slurm"

// Fills env from envp ("NAME=value" strings, NULL-terminated; NULL reads the process's own).
// A launcher's variable that is missing or malformed, or a rank outside the world, fails with a
// message naming the variable.
int dist_env_read(dist_env *env, char *const *envp);

// The first host of a Slurm node list in its compressed form: "node[01-04,07],gpu5" gives "node01",
// "rack[1-2]-n[3-4]" gives "rack1-n3". Fails on an empty or malformed list or a host over cap - 1 bytes.
int dist_nodelist_first(const char *nodelist, char *host, size_t cap);

#endif
