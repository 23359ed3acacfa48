// dist: the data-parallel context of one training process and the ONE home of its collectives
// (train/, eval/ and the rest reach shim/dist.h only through here; tests/test_layers.sh holds it).
// dist_init() reads the launcher's environment (distributed/env.h), picks this rank's device and
// joins the process group of shim/dist.h:
//   no launcher           the LOCAL backend (world size 1, no store, nothing travels);
//   launcher, CUDA device NCCL on GPU LOCAL_RANK (a rank beyond the visible GPUs is an error,
//                         except that a process shown one GPU through CUDA_VISIBLE_DEVICES uses it);
//   launcher, CPU         Gloo; in strict device mode (CLIPC_DIST_STRICT=1, shim/tensor.h) rank r
//                         computes on cpu:(LOCAL_RANK + 1), a device of its own, as on a GPU.
// The context keeps where the run is (step, phase) and each collective passes its C call site,
// so that a failed or timed-out collective reads
//   rank 1: all_reduce at step 12 timed out after 30 s (peer rank 0 gone?)
// and the consistency check (--dist-debug, CLIPC_DIST_DEBUG=1; shim/dist.h) names both call sites.
//
// Tensors given to the collectives are on dist_device(d) and contiguous. Control messages (text,
// integers, flags, host values) go through the helpers below, which place them on that device:
// never hand a tensor made from host memory to a collective.
#ifndef CLIPC_DISTRIBUTED_DIST_H
#define CLIPC_DISTRIBUTED_DIST_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "distributed/env.h"
#include "shim/tensor.h"

#define DIST_DEFAULT_TIMEOUT_S 600.0     // --dist-timeout: PyTorch's NCCL default (10 minutes)
#define DIST_LEAD_WAIT_S (24.0 * 3600.0)  // dist_wait_lead: how long the others wait for rank 0

typedef struct dist dist;
struct dist_pg;

typedef struct {
    // The --device asked for: its type picks the backend. Under a launcher a CUDA device's index
    // is replaced by this rank's GPU.
    tensor_device device;
    double timeout_s;  // every collective and the rendezvous; <= 0 means DIST_DEFAULT_TIMEOUT_S
    bool debug;        // the consistency check before every collective (also CLIPC_DIST_DEBUG=1)
    // While joining waits (for the store, for the other ranks), one line every 30 s saying for
    // what (shim/dist.h's notice); NULL: silent until the timeout's message.
    void (*notice)(const char *line);
} dist_options;

// Joins the run this process belongs to (every rank calls it). NULL with a message on failure.
// CLIPC_DIST_FAIL_AT (a test hook, shim/dist.h) makes one collective fail as an aborted NCCL one.
dist *dist_init(const dist_options *options);
void dist_free(dist *d);  // NULL is ignored

int dist_rank(const dist *d);
int dist_world_size(const dist *d);
const dist_env *dist_get_env(const dist *d);  // launcher, local rank, master address and port
tensor_device dist_device(const dist *d);      // the device this rank computes on
const char *dist_backend_label(const dist *d); // "local", "gloo", "nccl"
struct dist_pg *dist_get_pg(const dist *d);    // the shim's group, for tests (shim/dist.h)
// The backends compiled into this build: "local, gloo" or "local, gloo, nccl" (clipc info).
const char *dist_backends_built(void);

// The shard of a flat buffer of n elements that rank owns among world ranks (ZeRO, train/zero.h):
// with S = ceil(n / world), rank r owns [min(r*S, n), min((r+1)*S, n)) (the last ranks may own
// fewer elements, or none). The one definition every sharded collective and optimizer uses.
void dist_shard_range(int64_t n, int rank, int world, int64_t *lo, int64_t *hi);

// Where the run is, named by every later failure ("all_reduce at step 12", "at step 40 (eval)",
// "at start" for a phase without a step).
// A step < 0 and a NULL or empty phase name nothing.
void dist_set_step(dist *d, int64_t step);
void dist_set_phase(dist *d, const char *phase);

// ---- collectives (shim/dist.h's, with the caller's C call site) ------------------------------
// Each returns 0 or -1 with one line naming this rank, the collective and where the run is.
#define DIST_STRINGIFY(x) #x
#define DIST_LINE_TEXT(x) DIST_STRINGIFY(x)
#define DIST_SITE __FILE__ ":" DIST_LINE_TEXT(__LINE__)

// Sums each of n tensors over the ranks, in place (they may differ in shape and dtype).
int dist_all_reduce_at(dist *d, tensor *const *tensors, int n, const char *site);
#define dist_all_reduce(d, tensors, n) dist_all_reduce_at(d, tensors, n, DIST_SITE)
// in (B, ...) from every rank into out (R*B, ...): rank r's rows at [r*B, (r+1)*B).
int dist_all_gather_at(dist *d, tensor *out, const tensor *in, const char *site);
#define dist_all_gather(d, out, in) dist_all_gather_at(d, out, in, DIST_SITE)
// out (B, ...) = the sum over ranks of in[rank*B : (rank+1)*B] (in: (R*B, ...)).
int dist_reduce_scatter_at(dist *d, tensor *out, const tensor *in, const char *site);
#define dist_reduce_scatter(d, out, in) dist_reduce_scatter_at(d, out, in, DIST_SITE)
// Overwrites each of n tensors with root's, in place.
int dist_broadcast_at(dist *d, tensor *const *tensors, int n, int root, const char *site);
#define dist_broadcast(d, tensors, n, root) dist_broadcast_at(d, tensors, n, root, DIST_SITE)
int dist_barrier_at(dist *d, const char *site);
#define dist_barrier(d) dist_barrier_at(d, DIST_SITE)
// The group's health: waits for every collective this rank enqueued and returns the failure of
// any, including one NCCL's watchdog aborted after the call returned. Call it before acting on a
// collective's result in a way that cannot be undone (an optimizer update, a checkpoint).
int dist_synchronize(dist *d);

// ---- asynchronous sums (shim/dist.h): gradient buckets reduced while the backward runs ---------
// Starts summing each of n tensors over the ranks in place and returns while it runs: root
// DIST_ALL_RANKS: on every rank (all_reduce); root r: on rank r only (reduce; the others' tensors
// are then unspecified). Leave the tensors alone until dist_wait_sums. Callable from a gradient
// hook on autograd's thread while the calling thread waits in the backward (distributed/reducer.h).
#define DIST_ALL_RANKS (-1)  // as shim/dist.h's
int dist_start_sum_at(dist *d, tensor *const *tensors, int n, int root, const char *site);
#define dist_start_sum(d, tensors, n, root) dist_start_sum_at(d, tensors, n, root, DIST_SITE)
// Waits for every sum started since the last wait (on NCCL: the device's current stream waits),
// failing with the first failed or timed-out one's line (rank, collective, step, missing peers).
// dist_synchronize still follows before an update, as after any collective.
int dist_wait_sums(dist *d);
// The last waited group's times (shim/dist.h's dist_pg_sum_times): comm_s from its first start to
// its last completion, exposed_s the part of it after dist_wait_sums was called. On NCCL read from
// CUDA events: call it after the step's host synchronisation.
int dist_sum_times(dist *d, double *comm_s, double *exposed_s);

// ---- control messages: host values, placed on the group's device and back ---------------------
// Overwrites text (cap bytes, NUL-terminated on return) with root's.
int dist_broadcast_text_at(dist *d, char *text, size_t cap, int root, const char *site);
#define dist_broadcast_text(d, text, cap, root) dist_broadcast_text_at(d, text, cap, root, DIST_SITE)
// Overwrites n integers with root's.
int dist_broadcast_i64_at(dist *d, int64_t *values, int n, int root, const char *site);
#define dist_broadcast_i64(d, values, n, root) dist_broadcast_i64_at(d, values, n, root, DIST_SITE)
// Sums n host values over the ranks in place (float64: exact for counts below 2^53), waiting
// for the result: losses to log, the counts of a sharded evaluation.
int dist_all_reduce_f64_at(dist *d, double *values, int n, const char *site);
#define dist_all_reduce_f64(d, values, n) dist_all_reduce_f64_at(d, values, n, DIST_SITE)
// *flag becomes true when it is true on every rank, false otherwise (the same on every rank).
int dist_all_agree_at(dist *d, bool *flag, const char *site);
#define dist_all_agree(d, flag) dist_all_agree_at(d, flag, DIST_SITE)

// Work that rank 0 does alone while the others wait (writing a checkpoint): rank 0 passes *status
// (0 or -1) when done; the others wait for it up to DIST_LEAD_WAIT_S, not the collective timeout,
// so a slow save never trips --dist-timeout, and return with rank 0's status in *status. Returns
// -1 when rank 0 never answers (it died: its store went with it).
int dist_wait_lead(dist *d, int *status);

// Wall time this rank has spent in collectives so far, all kinds (shim/dist.h's dist_pg_get_stats).
double dist_comm_seconds(const dist *d);
// Prints this rank's collectives, one line per kind made (calls, bytes, seconds), after a header
// giving their time's share of elapsed_s:
//   collectives on rank 0 of 2 (gloo): 3.210 s of 40.20 s (8.0%)
//     all_reduce          21 calls     1.23 GB     2.100 s
void dist_print_stats(const dist *d, double elapsed_s, FILE *f);

#endif
