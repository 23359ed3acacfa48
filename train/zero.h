// zero: ZeRO sharding of the optimizer state (--zero 1) and of the gradients (--zero 2) over the
// ranks of a data-parallel run (DeepSpeed's stages 1 and 2; FSDP's SHARD_GRAD_OP for 2). Every
// rank keeps the full weights. Each list's flat trainable buffer of n elements is cut by
// dist_shard_range (S = ceil(n / R), rank r owns [r*S, (r+1)*S) clipped to n); a rank's AdamW
// (adamw_init_range) holds the moments of its shard only and updates only that shard's weights,
// which are then all-gathered so that every rank holds them all. With --zero 2 the gradients are
// reduce-scattered instead of all-reduced: each rank receives the sum over the ranks of its shard
// only. The collectives run in buckets of about `bucket` elements (a buffer padded to R*S).
// Checkpoints hold the whole state: zero_gather_state gathers the moments on rank 0.
#ifndef CLIPC_TRAIN_ZERO_H
#define CLIPC_TRAIN_ZERO_H

#include <stdint.h>

#include "distributed/dist.h"
#include "optim/adamw.h"
#include "param/param.h"

// Each list's shard on this rank: lo[i], hi[i] for lists[i] (as adamw_init_range takes them).
void zero_shard_ranges(const dist *d, param_list *const *lists, int n, int64_t *lo, int64_t *hi);

// Sums every list's trainable gradients over the ranks into this rank's shard of its gradient
// buffer (reduce_scatter); the rest of the buffer keeps this rank's own gradients.
int zero_reduce_scatter_grads(dist *d, param_list *const *lists, int n, int64_t bucket);

// The global gradient norm from the shards left by zero_reduce_scatter_grads: each rank's sum of
// squares over its shards (float32 chunk norms summed in float64, tensor_norm_f64) summed over
// the ranks with one all_reduce. A new rank-0 tensor like optim_grad_norm's, the same on every rank.
tensor *zero_grad_norm(dist *d, param_list *const *lists, int n);

// Every rank's shard of each list's trainable weights to every rank (all_gather).
int zero_all_gather_params(dist *d, param_list *const *lists, int n, int64_t bucket);

// The whole optimizer state of sharded (this rank's) on rank 0: whole is an unsharded optimizer
// over the same lists there (its step and moments overwritten), NULL on the other ranks. Every
// rank calls it; the shards of ranks 1.. travel by broadcast from their owner in buckets, so the
// other ranks need one bucket of scratch, not the whole moments.
int zero_gather_state(dist *d, const adamw *sharded, adamw *whole, int64_t bucket);

#endif
