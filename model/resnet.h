// resnet: OpenCLIP's ModifiedResNet image tower (open_clip/modified_resnet.py, v2.20.0), built when
// vision_cfg.layers is a list of 4 stage depths (RN50, RN101, RN50x4, RN50x16, RN50x64).
//
// stem: 3x3 conv stride 2 (W/2) -> BN -> ReLU -> 3x3 conv (W/2) -> BN -> ReLU -> 3x3 conv (W)
//       -> BN -> ReLU -> 2x2 average pool
// layer1..4: Bottleneck blocks of planes W, 2W, 4W, 8W (output 4 * planes); the first block of
// layers 2-4 has stride 2, done as anti-aliasing: a 2x2 average pool after the 3x3 conv, and
// one before the downsample branch's 1x1 conv (avgpool -> conv -> BN).
// attnpool: tokens (HW, 32W) with their mean prepended, + positional embedding, multi-head
// attention (heads = 32W / head_width) of the mean token over all, through q/k/v/c projections.
//
// BatchNorm: in training the batch's statistics (biased variance) normalize, and the running
// statistics (momentum 0.1, unbiased variance) and num_batches_tracked are updated when the
// tower's update_stats is set; in evaluation (or with frozen statistics) the running statistics
// normalize. running_mean and running_var are buffers, not parameters: they live in the model's
// buffer list (clip_model.buffers), never optimized, saved and loaded under OpenCLIP's keys with
// num_batches_tracked (int64, host counters here). With a sync callback (--use-bn-sync) the
// batch statistics are those of the global batch over the ranks (SyncBatchNorm), and their
// gradients are summed over the ranks too.
#ifndef CLIPC_MODEL_RESNET_H
#define CLIPC_MODEL_RESNET_H

#include <stdbool.h>
#include <stdint.h>

#include "model/config.h"
#include "param/param.h"
#include "shim/tensor.h"

#define RESNET_BN_MOMENTUM 0.1
#define RESNET_BN_EPS 1e-5

typedef struct {
    char *key;                           // OpenCLIP's module name, e.g. "visual.layer1.0.bn1"
    tensor *weight, *bias;               // (C) trained parameters
    tensor *running_mean, *running_var;  // (C) buffers (views of clip_model.buffers)
    int64_t num_batches_tracked;
} resnet_bn;

typedef struct {
    tensor *conv1, *conv2, *conv3;  // (P, Cin, 1, 1), (P, P, 3, 3), (4P, P, 1, 1)
    resnet_bn bn1, bn2, bn3;
    tensor *down_conv;              // (4P, Cin, 1, 1), NULL when the block keeps its input's shape
    resnet_bn down_bn;
    int stride;
} resnet_block;

// The sum over the ranks of the global batch's statistics (the training code's collective).
typedef struct {
    tensor_reduce_fn reduce;  // NULL: each rank's own batch statistics
    void *ctx;
} resnet_sync;

typedef struct resnet_tower {
    tensor *conv1, *conv2, *conv3;  // stem: (W/2, 3, 3, 3), (W/2, W/2, 3, 3), (W, W/2, 3, 3)
    resnet_bn bn1, bn2, bn3;
    resnet_block *blocks;           // layer1..layer4 in order
    int n_blocks, stage_blocks[4];
    tensor *attn_pos;               // ((S/32)^2 + 1, 32W)
    tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b;  // (32W, 32W), (32W)
    tensor *c_w, *c_b;              // (E, 32W), (E)
    int heads;
    resnet_bn **bns;                // every BatchNorm, in state-dict order
    int n_bns;
    // Mode, set by the training code: training (batch statistics), update_stats (training only:
    // update the running statistics in this pass), frozen_stats (resnet_lock's freeze_bn_stats:
    // running statistics always, never updated).
    bool training, update_stats, frozen_stats;
    resnet_sync sync;
} resnet_tower;

// Builds the tower of cfg (clip_config_is_resnet) initialised as OpenCLIP does, adding its
// parameters to params and its running statistics to buffers (frozen), in state-dict order.
resnet_tower *resnet_tower_init(const clip_config *cfg, param_list *params, param_list *buffers, tensor_generator *g);
void resnet_tower_free(resnet_tower *t);

// images (B, 3, S, S) -> features (B, E), in the tower's mode.
tensor *resnet_tower_forward(resnet_tower *t, const tensor *images);

// OpenCLIP's ModifiedResNet.lock: every parameter of the tower (the "visual." entries of params)
// frozen, params repacked; freeze_bn_stats also fixes the BatchNorms to their running statistics
// (FrozenBatchNorm2d). OpenCLIP supports no partial locking of this tower: unlocked_groups other
// than 0 is an error. Returns 0 or -1.
int resnet_lock(resnet_tower *t, param_list *params, int unlocked_groups, bool freeze_bn_stats);

#endif
