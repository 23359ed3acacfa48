// objective: the contrastive objective of `clipc train` as train/step.h's loss callback: a loader
// batch (uint8 images normalized on the device, or float images already normalized; tokens on the
// host) through both towers, then the CLIP or SigLIP loss. bench/bench_step times the step with it.
#ifndef CLIPC_TRAIN_OBJECTIVE_H
#define CLIPC_TRAIN_OBJECTIVE_H

#include "loss/loss.h"
#include "model/clip.h"

typedef struct {
    const clip_model *model;
    loss_kind loss;
    float mean[3], std[3];  // the normalization of uint8 images (the loader's)
} train_objective;

// A step_loss_fn: objective is a train_objective, batch a loader_batch (data/loader.h).
tensor *train_objective_loss(void *objective, const void *batch);

#endif
