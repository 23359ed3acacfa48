// clipc launch [options] -- COMMAND ARGS...: starts the ranks of one node (distributed/launch.h) and
// exits with the first failure's status.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"
#include "distributed/env.h"
#include "distributed/launch.h"
#include "cli/commands.h"

static const char *usage =
    "clipc launch --nproc-per-node N [--nnodes M --node-rank K --master-addr A --master-port P] -- COMMAND ARGS...";

int cmd_launch(int argc, char **argv) {
    int split = 0;
    while (split < argc && strcmp(argv[split], "--") != 0) split++;
    long nproc = 1, nnodes = 1, node_rank = 0, port = DIST_ENV_DEFAULT_PORT;
    char *addr = "127.0.0.1";
    double grace = 10.0;
    arg_spec specs[] = {
        {"nproc-per-node", ARG_INT, &nproc, "ranks on this node, one per GPU (default 1)", false},
        {"nnodes", ARG_INT, &nnodes, "nodes of the run, each running one clipc launch (default 1)", false},
        {"node-rank", ARG_INT, &node_rank, "this node's index in 0..nnodes-1 (default 0)", false},
        {"master-addr", ARG_STR, &addr, "host of node 0, where rank 0 serves the store (default 127.0.0.1)", false},
        {"master-port", ARG_INT, &port, "a free TCP port on that host (default 29500)", false},
        {"grace", ARG_FLOAT, &grace, "seconds ranks get to stop after a failure or a signal before SIGKILL (default 10)", false},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    char *stray[1];
    int n_stray = 0;
    int rc = args_parse_command("launch", usage, specs, n_specs, split, argv, stray, 1, &n_stray);
    if (rc >= 0) return rc;
    if (n_stray > 0 || split >= argc - 1) {
        fprintf(stderr, "clipc launch: no command (put it after --)\nusage: %s\n", usage);
        return 2;
    }
    if (nnodes > 1 && !specs[3].seen) {
        fprintf(stderr, "clipc launch: --nnodes %ld needs --master-addr (the host of node 0)\n", nnodes);
        return 2;
    }
    if (nproc > INT_MAX || nnodes > INT_MAX || node_rank > INT_MAX || port > INT_MAX) {
        fprintf(stderr, "clipc launch: a number is out of range\n");
        return 2;
    }
    int n_command = argc - split - 1;
    char **command = xcalloc((size_t)n_command + 1, sizeof *command);
    memcpy(command, argv + split + 1, (size_t)n_command * sizeof *command);
    dist_launch_options o = {(int)nproc, (int)nnodes, (int)node_rank, addr, (int)port, grace, command};
    dist_launch_result r;
    rc = dist_launch_run(&o, &r);
    free(command);
    if (rc) {
        fprintf(stderr, "clipc launch: %s\n", err_msg());
        return r.status ? r.status : 1;
    }
    if (r.failed_signal)
        fprintf(stderr, "clipc launch: rank %d was killed by signal %d; the other ranks were stopped\n",
                r.failed_rank, r.failed_signal);
    else if (r.failed_rank >= 0)
        fprintf(stderr, "clipc launch: rank %d exited with status %d; the other ranks were stopped\n",
                r.failed_rank, r.failed_code);
    else if (r.signal)
        fprintf(stderr, "clipc launch: stopped by signal %d (forwarded to every rank)\n", r.signal);
    return r.status;
}
