// dist: the data-parallel context of one training process. dist_init() reads the launcher's
// environment (distributed/env.h), picks this rank's device and joins the process group of shim/dist.h:
//   no launcher           the LOCAL backend (world size 1, no store, nothing travels);
//   launcher, CUDA device NCCL on GPU LOCAL_RANK (GPU 0 when the rank sees a single GPU);
//   launcher, CPU         Gloo.
// The collectives are those of shim/dist.h on dist_get_pg(); the context keeps where the run is
// (step, phase) so that a failed or timed-out collective reads
//   rank 1: all_reduce at step 12 timed out after 30 s (peer rank 0 gone?)
#ifndef CLIPC_DISTRIBUTED_DIST_H
#define CLIPC_DISTRIBUTED_DIST_H

#include <stdint.h>
#include <stdio.h>

#include "distributed/env.h"
#include "shim/dist.h"
#include "shim/tensor.h"

#define DIST_DEFAULT_TIMEOUT_S 300.0  // --dist-timeout

typedef struct dist dist;

typedef struct {
    // The --device asked for: its type picks the backend. Under a launcher a CUDA device's index
    // is replaced by this rank's GPU.
    tensor_device device;
    double timeout_s;  // every collective and the rendezvous; <= 0 means DIST_DEFAULT_TIMEOUT_S
} dist_options;

// Joins the run this process belongs to (every rank calls it). NULL with a message on failure.
dist *dist_init(const dist_options *options);
void dist_free(dist *d);  // NULL is ignored

int dist_rank(const dist *d);
int dist_world_size(const dist *d);
const dist_env *dist_get_env(const dist *d);  // launcher, local rank, master address and port
tensor_device dist_device(const dist *d);      // the device this rank computes on
dist_pg *dist_get_pg(const dist *d);           // for the collectives of shim/dist.h

// Where the run is, named by every later failure ("all_reduce at step 12", "at step 40 (eval)",
// "at start" for a phase without a step).
// A step < 0 and a NULL or empty phase name nothing.
void dist_set_step(dist *d, int64_t step);
void dist_set_phase(dist *d, const char *phase);

// Sums n host values over the ranks in place (float64: exact for counts below 2^53), waiting
// for the result: losses to log, the counts of a sharded evaluation.
int dist_all_reduce_f64(dist *d, double *values, int n);

// Wall time this rank has spent in collectives so far, all kinds (shim/dist.h's dist_pg_get_stats).
double dist_comm_seconds(const dist *d);
// Prints this rank's collectives, one line per kind made (calls, bytes, seconds), after a header
// giving their time's share of elapsed_s:
//   collectives on rank 0 of 2 (gloo): 3.210 s of 40.20 s (8.0%)
//     all_reduce          21 calls     1.23 GB     2.100 s
void dist_print_stats(const dist *d, double elapsed_s, FILE *f);

#endif
