// dist (shim): collectives over tensors between the processes of one run, on three backends:
//   DIST_BACKEND_LOCAL  one process, nothing to communicate (world size 1 without a launcher);
//   DIST_BACKEND_GLOO   CPU tensors, through libtorch's c10d ProcessGroupGloo;
//   DIST_BACKEND_NCCL   CUDA tensors, through NCCL's C API, on libtorch's current CUDA stream.
// Gloo and NCCL meet through a TCP store (libtorch's c10d TCPStore) served by rank 0, or by a
// launcher that already serves one (torchrun's agent: agent_store_prefix); NCCL's unique id
// travels through it. Joining never waits silently: a rank that cannot reach the store, or ranks
// that do not all arrive, end it within the timeout with one line naming the address or the ranks.
//
// Every collective has the group's timeout. A collective that fails or times out makes the
// function return -1 with ONE line naming this rank, the collective, where the caller said it was
// (dist_pg_set_where) and, when the store can tell, the peers that never reached the collective:
//   rank 1: all_reduce at step 12 timed out after 30 s (peer rank 0 gone?)
// The group is then broken: every later call fails with that same line.
//
// Gloo runs each collective to completion before returning (but the asynchronous sums below).
// NCCL enqueues it on libtorch's current stream of the group's GPU (so it is ordered after the work
// queued there, and the work queued later is ordered after it) and returns; a watchdog thread
// aborts the communicator when an enqueued collective has not completed within the timeout or
// NCCL reports an error, and the next call (or dist_pg_synchronize) returns that failure. Several
// tensors given to one call go out as one NCCL group.
//
// Every rank counts the collectives it made (dist_pg_get_stats): calls, bytes and wall time per
// kind, at the cost of reading a clock twice per call.
//
// Tensors must be contiguous, on the backend's device (Gloo: CPU; NCCL: the group's GPU), and
// are not recorded by autograd. Every rank calls the same collectives in the same order, each from
// one thread at a time. In strict device mode (shim/tensor.h, CLIPC_DIST_STRICT=1) the Gloo group
// refuses what NCCL refuses: a tensor not tagged with its rank's device (options.device), or of a
// dtype NCCL lacks (bool).
//
// The consistency check (options.debug, as PyTorch's TORCH_DISTRIBUTED_DEBUG=DETAIL): before each
// collective the ranks all_gather a fixed-size record of it (sequence number, kind, dtypes,
// shapes, where and the C call site of dist_pg_set_site); when one differs, every rank fails at
// once with one line naming both:
//   rank 0: collectives differ across ranks (--dist-debug): rank 0 collective 7 all_reduce of 2
//   tensors: Float [10], Float [1] at step 2 (train/step.c:61); rank 1 collective 7 all_gather ...
// instead of a hang or a wrong result. Costs one small all_gather per collective.
//
// Fault injection (options.fail_at, a test hook): the collective numbered N ("7"), or the first
// whose "OP at WHERE" reads the value ("all_reduce at step 2"), returns success and then fails
// as one aborted by NCCL's watchdog: the next call or dist_pg_synchronize returns the failure.
#ifndef CLIPC_SHIM_DIST_H
#define CLIPC_SHIM_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "shim/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dist_pg dist_pg;

typedef enum {
    DIST_BACKEND_LOCAL,
    DIST_BACKEND_GLOO,
    DIST_BACKEND_NCCL,
} dist_backend;

typedef struct {
    dist_backend backend;
    int rank, world_size;     // LOCAL: 0 and 1
    const char *master_addr;  // the host of rank 0, which serves the TCP store (not for LOCAL)
    int master_port;
    int device;               // NCCL: the CUDA ordinal; Gloo in strict device mode: N of the rank's cpu:N
    double timeout_s;         // the rendezvous and every collective
    bool debug;               // the consistency check before every collective (below)
    const char *fail_at;      // a test hook (CLIPC_DIST_FAIL_AT; below); NULL: none
    // NULL or "": rank 0 serves the store on master_port. Else a launcher already serves it there
    // (torchrun's agent): every rank connects as a client and keeps its keys under this prefix.
    const char *agent_store_prefix;
    // Called every DIST_NOTICE_EVERY_S seconds (at most half the timeout, at least 1 s) while
    // joining waits (for the store to answer, for ranks to join) with one line saying for what, so
    // that no rank waits silently; NULL: none.
    void (*notice)(const char *line);
} dist_pg_options;

#define DIST_NOTICE_EVERY_S 30.0

typedef enum {
    DIST_OP_ALL_REDUCE,
    DIST_OP_ALL_GATHER,
    DIST_OP_REDUCE_SCATTER,
    DIST_OP_BROADCAST,
    DIST_OP_BARRIER,
    DIST_OP_REDUCE,  // an asynchronous sum to one rank (dist_pg_start_sum with a root)
    DIST_OP_COUNT,
} dist_op;

// What this rank's collectives of one kind did since dist_pg_new, counting those that succeeded.
// bytes is each call's payload as NCCL's tests count it: the tensors of all_reduce and broadcast,
// the gathered (R*B, ...) tensor of all_gather and the (R*B, ...) input of reduce_scatter; the
// bytes on the wire follow from it (docs/scaling.md). seconds is the wall time inside the calls:
// on Gloo the whole collective, waiting for slower peers included; on NCCL only the enqueueing
// (the transfer runs later on the CUDA stream). An asynchronous sum (below) counts its start, and
// dist_pg_wait_sums's wait counts under the kind of the last sum started.
typedef struct {
    int64_t calls, bytes;
    double seconds;
} dist_op_stats;

typedef struct {
    dist_op_stats op[DIST_OP_COUNT];  // indexed by dist_op
} dist_pg_stats;

const char *dist_backend_name(dist_backend backend);  // "local", "gloo", "nccl"
const char *dist_op_name(dist_op op);                 // "all_reduce", "all_gather", ...
bool dist_backend_built(dist_backend backend);        // compiled into this build

// Joins the group: every rank calls it with the same world size, address and port. Fails (NULL)
// when the backend is not built, NCCL sees no GPU or a CPU-only libtorch, or not every rank
// joins within the timeout.
dist_pg *dist_pg_new(const dist_pg_options *options);
void dist_pg_free(dist_pg *pg);  // NULL is ignored

// Where the caller is ("step 12", "step 40 (eval)"): every later error message names it after "at".
void dist_pg_set_where(dist_pg *pg, const char *where);
// The C call site of the next collectives ("train/step.c:61"), named by the consistency check.
void dist_pg_set_site(dist_pg *pg, const char *site);

// Sums each tensor over the ranks, in place. The n tensors may differ in shape and dtype.
int dist_pg_all_reduce(dist_pg *pg, tensor *const *tensors, int n);
// Gathers in (B, ...) from every rank into out (R*B, ...): rank r's rows at [r*B, (r+1)*B).
int dist_pg_all_gather(dist_pg *pg, tensor *out, const tensor *in);
// Sums in (R*B, ...) over the ranks and keeps this rank's rows: out (B, ...) = sum over ranks
// of in[rank*B : (rank+1)*B].
int dist_pg_reduce_scatter(dist_pg *pg, tensor *out, const tensor *in);
// Overwrites each tensor with root's, in place.
int dist_pg_broadcast(dist_pg *pg, tensor *const *tensors, int n, int root);
// Returns when every rank has reached it (and, on NCCL, every earlier collective has completed).
int dist_pg_barrier(dist_pg *pg);
// Waits until every collective this rank enqueued has completed (NCCL; at once on Gloo and
// LOCAL). Fails with the failure of any of them.
int dist_pg_synchronize(dist_pg *pg);

// ---- asynchronous sums: gradient buckets reduced while the backward runs ---------------------------
// dist_pg_start_sum starts summing each of n tensors over the ranks, in place, and returns while it
// runs: on Gloo in c10d's worker threads (ProcessGroupGloo's asynchronous Work), on NCCL on a side
// CUDA stream of the group's GPU that first waits for what libtorch's current stream had queued
// (an event), so that the current stream goes on computing. root DIST_ALL_RANKS: every rank gets the
// sum (all_reduce); root r: rank r's tensors get it and the others' are left unspecified (reduce,
// counted as DIST_OP_REDUCE). The tensors must not be read or written until dist_pg_wait_sums.
// Each start is a collective like the others: numbered, checked (--dist-debug), failing into the
// group's one failure line, fault-injectable; every rank starts the same sums in the same order.
// It may be called from an autograd thread (a gradient hook) while the caller's thread waits in
// the backward: one thread at a time, as for every collective.
//
// dist_pg_wait_sums waits for every sum started since the last wait, each within the group's
// timeout from the wait's start: on Gloo the host waits; on NCCL libtorch's current stream is made
// to wait for the side stream (events; the host does not), and a failure shows in the watchdog's
// line at the next call or dist_pg_synchronize, as for any NCCL collective. Fails with the line of
// the first sum that failed or timed out:
//   rank 1: all_reduce at step 12 failed: Connection closed by peer [127.0.0.1]:5432 (peer rank 0 gone?)
// dist_pg_sum_times then gives the last waited group of sums' times (zero when it had none):
//   comm_s     from the first sum's start to the last one's completion;
//   exposed_s  from the call of dist_pg_wait_sums to the last completion (0 when all completed before):
//              the part of comm_s that the caller did not hide behind its own work.
// On Gloo completion is the moment c10d's Work completed (its future's callback), on the host's
// clock; on NCCL it is read from CUDA events on the GPU's timeline (the start, the side stream's
// last event, the current stream's event at the wait), which waits for those events: call it after
// the step's host synchronisation.
#define DIST_ALL_RANKS (-1)
int dist_pg_start_sum(dist_pg *pg, tensor *const *tensors, int n, int root);
int dist_pg_wait_sums(dist_pg *pg);
int dist_pg_sum_times(dist_pg *pg, double *comm_s, double *exposed_s);

// The collectives counted so far on this rank.
dist_pg_stats dist_pg_get_stats(const dist_pg *pg);

// Passes *value from root to every rank through the TCP store, the others waiting up to timeout_s
// (not the group's timeout): for the end of work root does alone, like writing a checkpoint. Every
// rank calls it in the same order. Fails when root never answers (rank 0 gone takes the store).
int dist_pg_wait_root(dist_pg *pg, int root, int64_t *value, double timeout_s);

#ifdef __cplusplus
}
#endif

#endif
