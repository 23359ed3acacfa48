// replay_objective: the objective through which the step-parity tests (test_step_parity,
// test_rn_step_parity) replay OpenCLIP's training steps: features of a fixture's inputs in the
// order the batch (a tensor of sample indices) gives, OpenCLIP's ClipLoss over the rows. A
// micro-batch's second pass (--accum-freq) leaves BatchNorm running statistics alone, as
// train/objective.c does. Header-only; include it after cmocka.h.
#ifndef CLIPC_TESTS_REPLAY_OBJECTIVE_H
#define CLIPC_TESTS_REPLAY_OBJECTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "loss/loss.h"
#include "model/clip.h"
#include "train/step.h"

typedef struct {
    clip_model *model;
    tensor *images, *tokens;  // (N, 3, S, S), (N, C): the fixture's inputs.safetensors
} replay;

static inline int replay_features(void *ctx, const void *batch, int64_t begin, int64_t end, tensor **out) {
    const replay *r = ctx;
    const tensor *order = tensor_slice(batch, 0, begin, end);
    out[0] = clip_encode_image(r->model, tensor_index_select(r->images, 0, order), true);
    out[1] = clip_encode_text(r->model, tensor_index_select(r->tokens, 0, order), true);
    return out[0] && out[1] ? 0 : -1;
}

static inline tensor *replay_loss_rows(void *ctx, tensor *const *all, int64_t row_begin, int64_t row_end) {
    const replay *r = ctx;
    return loss_contrastive_rows(LOSS_KIND_CLIP, all[0], all[1], tensor_exp(r->model->logit_scale), NULL, row_begin,
                                 row_end);
}

static inline void replay_recomputing(void *ctx, bool on) {
    const replay *r = ctx;
    clip_model_set_update_stats(r->model, !on);
}

static inline step_objective replay_objective(replay *r) {
    return (step_objective){.n_features = 2, .n_trained = 2, .features = replay_features, .loss_rows = replay_loss_rows,
                            .recomputing = replay_recomputing, .ctx = r};
}

#endif
