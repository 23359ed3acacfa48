// launch: the process side of `clipc launch` (pure C; no libtorch). Starts the ranks of one node
// with torchrun's environment (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK,
// LOCAL_WORLD_SIZE, GROUP_RANK; TORCHELASTIC_USE_AGENT_STORE=False, as rank 0 serves the store),
// each in its own process group and bound to die with the launcher, then supervises them:
//   - SIGINT, SIGTERM and SIGHUP sent to the launcher are forwarded to every rank;
//   - when a rank fails (non-zero exit or killed), the others get SIGTERM;
//   - ranks still running grace_s seconds after a failure or a forwarded signal get SIGKILL.
// The launcher's status is the first failure's (its exit code, or 128 + its signal), else
// 128 + the forwarded signal, else 0.
#ifndef CLIPC_DISTRIBUTED_LAUNCH_H
#define CLIPC_DISTRIBUTED_LAUNCH_H

typedef struct {
    int nproc_per_node, nnodes, node_rank;
    const char *master_addr;
    int master_port;
    double grace_s;
    char *const *command;  // the program and its arguments, NULL-terminated (looked up in PATH)
} dist_launch_options;

typedef struct {
    int status;       // what `clipc launch` exits with
    int failed_rank;  // the first rank that failed (global rank), -1 when none did
    int failed_code;  // its exit code, or 128 + the signal that killed it
    int failed_signal;  // the signal that killed it, 0 when it exited
    int signal;       // the signal forwarded to the ranks, 0 when none
} dist_launch_result;

// Runs the ranks to their end. -1 with a message when the options are wrong or a rank could not
// be started (the ranks already running are then stopped).
int dist_launch_run(const dist_launch_options *options, dist_launch_result *result);

#endif
