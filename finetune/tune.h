// tune: end-to-end fine-tuning of a few-shot classifier (finetune/fewshot.h's zs_classifier:
// image tower and head, text tower frozen) with cross-entropy on labelled batches, AdamW and a
// cosine schedule, through the training step of train/step.h (finiteness guard, clipping,
// bf16 autocast), as `clipc finetune` runs it (finetune/finetune.h).
#ifndef CLIPC_FINETUNE_TUNE_H
#define CLIPC_FINETUNE_TUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "loader/loader.h"
#include "finetune/fewshot.h"

typedef struct {
    int epochs;
    double lr, wd, beta1, beta2, eps;
    int64_t warmup;         // steps of linear warmup before the cosine decay
    double grad_clip_norm;  // > 0: clip the global gradient norm
    bool bf16;              // bf16 autocast (CUDA)
    // Called after every step (may be NULL).
    void (*on_step)(void *ctx, int64_t step, int64_t total, int64_t epoch, double loss, double lr);
    void *ctx;
} tune_options;

// Trains the classifier on the loader's batches (a train-mode loader over the shots) for
// o->epochs epochs. A non-finite loss or gradient stops with an error. Returns 0 or -1.
int tune_run(zs_classifier *c, loader *train, const tune_options *o);

#endif
