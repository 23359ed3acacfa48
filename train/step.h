// step: one optimizer step of any objective, the same for `clipc train` and `clipc finetune`:
// zero the gradients, compute the objective's loss over the step's whole (global) batch and its
// gradients, check the loss and every gradient for finiteness, clip, apply AdamW with the
// scheduled learning rate, and clamp the logit scale.
//
// The loss is computed exactly over the global batch however the batch is split: into K
// micro-batches on one rank (--accum-freq) and, through distributed/, across R ranks
// (../docs/training-math.md, "the exact global batch"). The objective is therefore split at the
// per-sample features: the step runs the towers on each micro-batch (without the graph when K > 1),
// gathers the features, backpropagates the loss share of its own rows to them, and then
// backpropagates through the towers micro-batch by micro-batch (recomputed with the graph when
// K > 1, so memory is that of one micro-batch).
//
// The finiteness check costs one reduction (the global gradient norm, needed for clipping anyway)
// and one read of two numbers (loss, norm) to the host: the step's only host synchronisation. A
// non-finite loss or gradient skips the update and leaves the weights untouched; the caller
// decides what a streak of them means.
#ifndef CLIPC_TRAIN_STEP_H
#define CLIPC_TRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "distributed/dist.h"
#include "optim/adamw.h"
#include "optim/grad_scaler.h"
#include "optim/schedule.h"
#include "param/param.h"

#define STEP_MAX_FEATURES 10  // distill: 2 + 2 x 4 teachers (train/distill.h)
#define STEP_BUCKET_ELEMENTS (1 << 23)  // gradients per tensor of the all_reduce (32 MB in fp32)

// The objective of a step, split at the per-sample features.
typedef struct {
    int n_features;  // tensors per sample, at most STEP_MAX_FEATURES
    int n_trained;   // the first n_trained carry gradients; the rest are constants (a teacher's)
    // The features of samples [begin, end) of batch: n_features tensors (end - begin, D_i) into
    // out, made in the caller's tensor scope, on the autograd graph when grad mode is on. 0 or -1.
    int (*features)(void *ctx, const void *batch, int64_t begin, int64_t end, tensor **out);
    // The share of the loss owned by rows [row_begin, row_end) of all (N, D_i), the features of
    // the whole global batch, scaled so that the shares of a partition of 0..N sum to the loss
    // (loss/loss.h's *_rows functions). A rank-0 tensor on the graph, or NULL with a message.
    tensor *(*loss_rows)(void *ctx, tensor *const *all, int64_t row_begin, int64_t row_end);
    // Optional (NULL: none): told when the step starts (on) and ends (off) recomputing micro-batches
    // with the graph (K > 1) after their first pass, so that per-sample state the forward updates
    // (BatchNorm running statistics) is updated in one pass only.
    void (*recomputing)(void *ctx, bool on);
    void *ctx;
} step_objective;

typedef struct {
    param_list *const *lists;  // what the optimizer updates (packed; gradients accumulate there)
    int n_lists;
    adamw *opt;
    const schedule *sched;     // the learning rate of step k is schedule_lr(sched, k)
    double grad_clip_norm;     // > 0: clip the global gradient norm to it
    tensor *logit_scale;       // clamped to [0, ln 100] after each update; NULL: none
    bool autocast_bf16;        // features and loss under bf16 autocast, as OpenCLIP's amp_bf16
    int accum_freq;            // K micro-batches per batch (1: none; no upper limit)
    dist *dist;                // the ranks sharing the global batch; NULL: this process alone
    int64_t bucket_elements;   // gradients per all_reduce bucket; 0: STEP_BUCKET_ELEMENTS (any
                               // number of buckets: the flat buffers of ViT-bigG need ~300)
    bool overlap_reduce;       // several ranks: each bucket starts its sum as soon as the backward has
                               // made its gradients (distributed/reducer.h); false: all after the
                               // backward, in one call (--no-overlap-reduce)
    int zero;                  // ZeRO stage (train/zero.h): 1 opt is sharded (adamw_init_range over
                               // zero_shard_ranges) and the updated shards are all-gathered; 2 also
                               // reduce-scatters the gradients. 0 or one rank: none
    // float16 mixed precision (--precision amp): features and loss under float16 autocast (CUDA;
    // the CPU computes float32), the loss's backward seeded with the scaler's scale, gradients
    // unscaled before clipping; a finite loss with non-finite gradients is an overflow: the update
    // is skipped (result overflow) and the scaler updated. NULL: no scaling.
    bool autocast_f16;
    grad_scaler *scaler;
} step_config;

typedef struct {
    bool finite;       // false: the loss or a gradient was not finite and the update was skipped
    double loss;       // the loss of the global batch
    double grad_norm;  // the global gradient norm before clipping
    double lr;         // the learning rate used
    bool overflow;     // with a scaler: the scaled gradients overflowed (not a bad step; update skipped)
    double grad_scale; // with a scaler: the scale of this step's backward (grad_norm is unscaled)
    // What each part issued (shim/tensor.h; ops only while tensor_count_ops is on):
    tensor_counters forward_backward;  // zeroing, forward, loss, backward, the norm and the host read
    tensor_counters update;            // clipping, AdamW and the clamp
    // Several ranks: the seconds of the step's sums of the gradients and the loss
    // (docs/distributed.md): comm_s from the first start to the last completion, comm_exposed_s
    // the part after the backward ended (the rest was hidden behind it). Without the overlap both
    // are the wall time of the one call (Gloo; on NCCL its enqueueing). 0 on one rank.
    double comm_s, comm_exposed_s;
} step_result;

// Runs step number `step` (0-based, for the schedule) on batch, this rank's n samples (a multiple
// of accum_freq; the same n on every rank). With several ranks, every rank calls it together:
// features are gathered (all_gather), each rank backpropagates the loss share of its own rows,
// the feature gradients are summed back to their ranks (reduce_scatter), and the gradients and
// the loss are summed over the ranks (all_reduce, the flat gradient buffers in buckets, each
// started during the backward with overlap_reduce), so every rank applies the same update: that of
// the one global batch. With c->zero (train/zero.h) each rank updates its shard and the weights are
// all-gathered after the update; with c->zero 2 the gradients are reduce-scattered (with
// overlap_reduce: each bucket reduced to its owner) and the global norm summed from the shards'
// (one more all_reduce). A collective that fails in the all-gather leaves the ranks' weights
// different: stop the run without a checkpoint, as for any failure inside the update.
//
// Returns 0 (see out->finite) or -1 with a message. The failure contract, for the caller:
// - Everything that can fail for a reason outside the update itself is checked before the first
//   write to the weights: the objective, the forward and backward passes, every collective, the
//   read of (loss, norm), and then the group's health (dist_synchronize: a collective that NCCL's
//   watchdog aborted after it had returned). A -1 from any of these leaves the weights, the
//   optimizer's moments and its step count untouched; only the gradient buffers hold garbage. The
//   caller may save a checkpoint of the state before the step only if the ranks are still in step
//   with each other, which after a failed collective they are not: stop the run (exit non-zero),
//   and resume from the last checkpoint written.
// - What remains: a failure inside the update (clipping, AdamW, the logit-scale clamp), which can
//   only be the device failing (out of memory, a lost GPU). The weights may then be partly
//   updated: write no checkpoint and stop.
int step_run(const step_config *c, int64_t step, const step_objective *obj, const void *batch, int64_t n,
             step_result *out);

#endif
