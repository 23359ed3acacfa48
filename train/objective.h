// objective: the contrastive objective of `clipc train` in the split form of train/step.h: the
// per-sample image and text features of a range of a loader batch (uint8 images normalized on the
// device, or float images already normalized; tokens on the host) and the CLIP or SigLIP loss share
// of a range of rows of the global batch's features; with distillation (train/distill.h) the
// teacher's features join the student's and its terms join the loss. bench/bench_step times the
// step with it.
#ifndef CLIPC_TRAIN_OBJECTIVE_H
#define CLIPC_TRAIN_OBJECTIVE_H

#include "loss/loss.h"
#include "model/clip.h"
#include "train/distill.h"
#include "train/step.h"

typedef struct {
    const clip_model *model;
    loss_kind loss;
    float mean[3], std[3];  // the normalization of uint8 images (the loader's)
    distill *distill;       // the teacher's targets and terms; NULL: none
    // Patch dropout (model cfg.vision.patch_dropout > 0, training steps only): the patches that
    // sample i of rank r's n-sample batch of step `step` keeps come from (seed, step, r * n + i)
    // alone, so every recomputation of a micro-batch (--accum-freq, block recompute) drops the
    // same ones, and a resumed run the same as an uninterrupted one.
    uint64_t seed;
    int64_t step;
    int rank;
} train_objective;

// The step objective over loader batches (loader/loader.h); o must outlive it.
step_objective train_objective_step(train_objective *o);

// The whole loss of a loader batch (validation), in the caller's scope.
tensor *train_objective_loss(train_objective *o, const void *batch);

#endif
