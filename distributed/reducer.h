// reducer: the gradient reduction of a data-parallel step overlapped with its backward, as
// PyTorch's DDP Reducer does it. The flat gradient buffers of the trainable parameters
// (param/param.h) are cut into buckets from their end (the backward produces the last parameters'
// gradients first): pieces of at most bucket_elements, also cut at the ZeRO shard boundaries
// (dist_shard_range: train/zero.h) so that each bucket has one owning rank. A gradient hook on
// every trainable parameter (shim/grad_hook.h) counts, while counting is on, the parameters whose gradient is
// complete; a bucket whose parameters all are starts its sum over the ranks at once
// (dist_start_sum), and buckets start strictly in order (bucket b only after b - 1), so that every
// rank starts the same collectives in the same order whatever order its backward runs in.
// reducer_finish() starts the buckets still waiting (those holding a parameter that took no part
// in this backward), then the caller's extra tensors (the loss), and waits for them all.
//
// A parameter counts as complete at its first gradient while counting is on, so the caller turns
// counting on only around the backward passes that give each parameter its LAST gradient of the
// step: for a step of K micro-batches, the loss's backward (the logit scale) and the last
// micro-batch's backward through the towers, not the K - 1 before it (train/step.c). A parameter
// given a second gradient while counting fails the step (its bucket may already be on its way).
//
// One reducer serves one step: reducer_new() adds the hooks to the tensors the lists hold now (after
// packing), reducer_free() removes them.
#ifndef CLIPC_DISTRIBUTED_REDUCER_H
#define CLIPC_DISTRIBUTED_REDUCER_H

#include <stdbool.h>
#include <stdint.h>

#include "distributed/dist.h"
#include "param/param.h"

typedef struct reducer reducer;

typedef struct {
    int64_t bucket_elements;  // the largest bucket (> 0)
    // false: every bucket is summed on every rank (all_reduce; ZeRO-1 and plain data parallelism).
    // true: each bucket only on the rank owning its elements (reduce to that root; ZeRO-2).
    bool to_owners;
} reducer_options;

typedef struct {
    int list;            // index into the lists given to reducer_new
    int64_t begin, end;  // elements [begin, end) of that list's gradient buffer
    int owner;           // the rank whose shard holds them
} reducer_bucket;


// Hooks every trainable parameter of the n lists (packed). NULL with a message on failure.
reducer *reducer_new(dist *d, param_list *const *lists, int n_lists, const reducer_options *o);
void reducer_free(reducer *r);  // removes the hooks; NULL is ignored

// Whether gradients arriving now are each parameter's last of the step (see above).
void reducer_count(reducer *r, bool on);

// Starts every bucket not started yet (in order), then sums the n_extra tensors (all_reduce), and
// waits for all (dist_wait_sums). Returns 0, or -1 with the first failure's line: a failed or
// timed-out sum, a parameter with a second gradient.
int reducer_finish(reducer *r, tensor *const *extra, int n_extra);

// Seconds of the finished step's sums (dist_sum_times): comm_s from the first start to the last
// completion, exposed_s the part after reducer_finish was called (not hidden by the backward).
int reducer_times(reducer *r, double *comm_s, double *exposed_s);

int reducer_bucket_count(const reducer *r);
reducer_bucket reducer_get_bucket(const reducer *r, int b);  // b in launch order
int reducer_started(const reducer *r);                         // buckets started so far

#endif
