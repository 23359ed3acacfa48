// step: one optimizer step of any objective, the same for `clipc train` and `clipc finetune`:
// zero the gradients, forward through the objective's loss callback, backward, the finiteness
// check of the loss and of every gradient, clipping, the AdamW update with the scheduled learning
// rate, and the logit-scale clamp.
//
// The check costs one reduction (the global gradient norm, needed for clipping anyway) and one
// read of two numbers (loss, norm) to the host: the step's only host synchronisation. A
// non-finite loss or gradient skips the update and leaves the weights untouched; the caller
// decides what a streak of them means.
#ifndef CLIPC_TRAIN_STEP_H
#define CLIPC_TRAIN_STEP_H

#include <stdbool.h>
#include <stdint.h>

#include "optim/adamw.h"
#include "optim/schedule.h"
#include "param/param.h"

// The objective: the batch's loss as a rank-0 tensor on the autograd graph. It runs inside the
// step's tensor scope (intermediates are freed by the step). NULL with a message on failure.
typedef tensor *(*step_loss_fn)(void *ctx, const void *batch);

typedef struct {
    param_list *const *lists;  // what the optimizer updates (packed; gradients accumulate there)
    int n_lists;
    adamw *opt;
    const schedule *sched;     // the learning rate of step k is schedule_lr(sched, k)
    double grad_clip_norm;     // > 0: clip the global gradient norm to it
    tensor *logit_scale;       // clamped to [0, ln 100] after each update; NULL: none
    bool autocast_bf16;        // the loss callback runs under bf16 autocast, loss included, as OpenCLIP's amp_bf16
} step_config;

typedef struct {
    bool finite;       // false: the loss or a gradient was not finite and the update was skipped
    double loss;       // the batch's loss
    double grad_norm;  // the global gradient norm before clipping
    double lr;         // the learning rate used
    // What each part issued (shim/tensor.h; ops only while tensor_count_ops is on):
    tensor_counters forward_backward;  // zeroing, forward, loss, backward, the norm and the host read
    tensor_counters update;            // clipping, AdamW and the clamp
} step_result;

// Runs step number `step` (0-based, for the schedule) on batch. Returns 0 (see out->finite) or -1
// with a message (a failed op, clip or update: the weights may then be partly updated).
int step_run(const step_config *c, int64_t step, step_loss_fn loss, void *ctx, const void *batch, step_result *out);

#endif
