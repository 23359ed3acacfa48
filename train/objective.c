#include "train/objective.h"

#include <stdlib.h>

#include "common/error.h"
#include "common/rng.h"
#include "loader/loader.h"

_Static_assert(DISTILL_MAX_FEATURES <= STEP_MAX_FEATURES, "a step must hold every teacher's features");

#define PATCH_DROPOUT_STREAM 0x70617463685f6470ull  // rng_mix stream of patch dropout ("patch_dp")

// The image features of samples [begin, end) of this rank's batch, with patch dropout in training:
// each sample's patches come from its place in the global batch (rank r's n rows follow the first
// r * n) and the step.
static tensor *image_features(const train_objective *o, const tensor *images, const loader_batch *b, int64_t begin,
                              int64_t end, bool training) {
    const clip_model *m = o->model;
    if (!training || clip_config_is_resnet(&m->cfg) || !(m->cfg.vision.patch_dropout > 0)) return clip_encode_image(m, images, true);
    int64_t n = end - begin, G = m->cfg.vision.image_size / m->cfg.vision.patch_size;
    uint64_t *seeds = xmalloc((size_t)n * sizeof(uint64_t));
    int64_t *keep = xmalloc((size_t)n * (size_t)(G * G + 1) * sizeof(int64_t));
    uint64_t base = rng_mix(rng_mix(o->seed, PATCH_DROPOUT_STREAM), (uint64_t)o->step);
    for (int64_t i = 0; i < n; i++) seeds[i] = rng_mix(base, (uint64_t)((int64_t)o->rank * b->n + begin + i));
    int64_t K = clip_patch_dropout_keep(m, seeds, n, keep);
    tensor *f = clip_encode_image_keep(m, images, keep, K, true);
    free(seeds);
    free(keep);
    return f;
}

static int features(const train_objective *o, const void *batch, int64_t begin, int64_t end, bool training, tensor **out) {
    const loader_batch *b = batch;
    const clip_model *m = o->model;
    int64_t n = end - begin, C = m->cfg.text.context_length;
    size_t image = 3 * (size_t)m->cfg.vision.image_size * (size_t)m->cfg.vision.image_size;
    tensor *images = b->images_u8 ? clip_images_u8_to_device(m, b->images_u8 + (size_t)begin * image, n, o->mean, o->std)
                                  : clip_images_to_device(m, b->images + (size_t)begin * image, n);
    out[0] = image_features(o, images, b, begin, end, training);
    out[1] = clip_encode_text_host(m, b->tokens + begin * C, n, true);
    if (!out[0] || !out[1]) return -1;
    return o->distill ? distill_teacher_features(o->distill, m, b, begin, end, out + DISTILL_TEACHER_IMAGE) : 0;
}

static int batch_features(void *objective, const void *batch, int64_t begin, int64_t end, tensor **out) {
    return features(objective, batch, begin, end, true, out);
}

static tensor *batch_loss_rows(void *objective, tensor *const *all, int64_t row_begin, int64_t row_end) {
    const train_objective *o = objective;
    const clip_model *m = o->model;
    if (o->distill)
        return distill_loss_rows(o->distill, o->loss, all, tensor_exp(m->logit_scale), m->logit_bias, row_begin, row_end);
    return loss_contrastive_rows(o->loss, all[0], all[1], tensor_exp(m->logit_scale), m->logit_bias, row_begin, row_end);
}

// A micro-batch's second pass (with the graph) leaves the BatchNorm running statistics alone:
// its first pass counted it.
static void batch_recomputing(void *objective, bool on) {
    const train_objective *o = objective;
    clip_model_set_update_stats(o->model, !on);
}

step_objective train_objective_step(train_objective *o) {
    return (step_objective){.n_features = o->distill ? distill_n_features(o->distill) : 2, .n_trained = 2,
                            .features = batch_features, .loss_rows = batch_loss_rows,
                            .recomputing = batch_recomputing, .ctx = o};
}

tensor *train_objective_loss(train_objective *o, const void *batch) {
    const loader_batch *b = batch;
    tensor *f[DISTILL_MAX_FEATURES];
    return features(o, batch, 0, b->n, false, f) == 0 ? batch_loss_rows(o, f, 0, b->n) : NULL;
}
