// test_counters: what a training step asks of its device, counted by the shim (shim/tensor.h), on
// the CPU. A model with ViT-B-32's 302 parameter tensors (its depth and layout, small widths, so
// that it runs fast) takes whole steps of `clipc train`'s objective through train/step.h:
// - each step reads the host once (loss and gradient norm together): its only synchronisation;
//   the forward has no host read (the text prefix comes from the host tokens);
// - the optimizer part (clipping, AdamW, clamp) and the gradient norm issue a small number of ops
//   that does not depend on the number of parameter tensors: the same as for a model with 38.
// Usage: test_counters CONFIGS_DIR
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "loader/loader.h"
#include "optim/grad.h"
#include "train/objective.h"
#include "train/step.h"

#define BATCH 8
#define MAX_UPDATE_OPS 32  // clipping, AdamW and the clamp over the flat buffers
#define MAX_NORM_OPS 12    // the chunked float64 norm (tensor_norm_f64) of the flat gradient buffer

static clip_config vit_b32;

typedef struct {
    clip_model *model;
    adamw *opt;
    schedule sched;
    param_list *lists[1];
    train_objective objective;
    step_config step;
    loader_batch batch;
} trainer;

// ViT-B-32's layout (12 + 12 blocks: 302 tensors) with `layers` blocks per tower and small widths.
static clip_config shaped_like_vit_b32(int layers) {
    clip_config c = vit_b32;
    c.embed_dim = 16;
    c.vision.image_size = 32, c.vision.patch_size = 16, c.vision.width = 32, c.vision.head_width = 16;
    c.text.vocab_size = 100, c.text.width = 32, c.text.heads = 2;
    c.vision.layers = c.text.layers = layers;
    return c;
}

// A loader batch as `clipc train` gets it: uint8 images in host memory for the device, captions
// of different lengths (SOT, ids, EOT) with one repeated.
static void make_batch(loader_batch *b, const clip_config *c) {
    size_t pixels = (size_t)BATCH * 3 * (size_t)c->vision.image_size * (size_t)c->vision.image_size;
    int64_t C = c->text.context_length, V = c->text.vocab_size;
    b->n = BATCH;
    b->images_u8 = tensor_host_alloc(pixels);
    b->tokens = tensor_host_alloc((size_t)(BATCH * C) * sizeof(int64_t));
    for (size_t i = 0; i < pixels; i++) b->images_u8[i] = (uint8_t)(i * 37 % 251);
    memset(b->tokens, 0, (size_t)(BATCH * C) * sizeof(int64_t));
    for (int r = 0; r < BATCH; r++) {
        int64_t *row = b->tokens + r * C, len = 3 + (r % 4) * 3;
        row[0] = V - 2;
        for (int64_t i = 1; i < len - 1; i++) row[i] = 1 + (r * 13 + i * 7) % (V - 3);
        row[len - 1] = V - 1;
    }
}

static void trainer_init(trainer *t, int layers) {
    clip_config c = shaped_like_vit_b32(layers);
    t->model = clip_model_init(&c, 0);
    assert_non_null(t->model);
    t->lists[0] = &t->model->params;
    t->opt = adamw_init(t->lists, 1, adamw_config_default());
    assert_non_null(t->opt);
    t->sched = (schedule){.kind = SCHEDULE_CONST, .base_lr = 1e-3, .total_steps = 100};
    t->objective = (train_objective){.model = t->model, .loss = LOSS_KIND_CLIP,
                                     .mean = {0.48f, 0.46f, 0.41f}, .std = {0.27f, 0.26f, 0.28f}};
    t->step = (step_config){.lists = t->lists, .n_lists = 1, .opt = t->opt, .sched = &t->sched, .grad_clip_norm = 1.0,
                            .logit_scale = t->model->logit_scale, .accum_freq = 1};
    make_batch(&t->batch, &c);
}

static void trainer_free(trainer *t) {
    tensor_host_free(t->batch.images_u8);
    tensor_host_free(t->batch.tokens);
    adamw_free(t->opt);
    clip_model_free(t->model);
}

static step_result run_step(trainer *t, int64_t k) {
    step_result r;
    step_objective obj = train_objective_step(&t->objective);
    if (step_run(&t->step, k, &obj, &t->batch, t->batch.n, &r) != 0) fail_msg("%s", err_msg());
    assert_true(r.finite);
    return r;
}

// The ops of the gradient norm and of the update part of a step of model t.
static void optimizer_ops(trainer *t, int64_t *norm_ops, int64_t *update_ops) {
    run_step(t, 0);  // first-step work (lazy state) is not counted
    tensor_count_ops(true);
    step_result r = run_step(t, 1);
    tensor_counters before = tensor_counters_get();
    tensor *norm = optim_grad_norm(t->lists, 1);
    *norm_ops = tensor_counters_sub(tensor_counters_get(), before).ops;
    tensor_count_ops(false);
    tensor_free(norm);
    *update_ops = r.update.ops;
}

static void test_one_host_read_per_step(void **state) {
    (void)state;
    trainer t;
    trainer_init(&t, vit_b32.vision.layers);
    assert_int_equal(t.model->params.n, 302);
    for (int64_t k = 0; k < 3; k++) {
        step_result r = run_step(&t, k);
        assert_int_equal(r.forward_backward.host_reads, 1);
        assert_int_equal(r.forward_backward.syncs, 1);
        assert_int_equal(r.update.host_reads, 0);
        assert_int_equal(r.update.syncs, 0);
    }
    trainer_free(&t);
}

static void test_optimizer_ops_do_not_grow_with_parameters(void **state) {
    (void)state;
    trainer deep, shallow;
    int64_t deep_norm, deep_update, shallow_norm, shallow_update;
    trainer_init(&deep, vit_b32.vision.layers);
    optimizer_ops(&deep, &deep_norm, &deep_update);
    trainer_init(&shallow, 1);
    assert_int_equal(shallow.model->params.n, 38);
    optimizer_ops(&shallow, &shallow_norm, &shallow_update);
    printf("  302 tensors: norm %lld ops, clip+AdamW+clamp %lld ops; 38 tensors: %lld, %lld\n", (long long)deep_norm,
           (long long)deep_update, (long long)shallow_norm, (long long)shallow_update);
    assert_true(deep_update > 0 && deep_update <= MAX_UPDATE_OPS);
    assert_int_equal(deep_update, shallow_update);
    assert_true(deep_norm > 0 && deep_norm <= MAX_NORM_OPS);
    assert_int_equal(deep_norm, shallow_norm);
    trainer_free(&deep);
    trainer_free(&shallow);
}

// The device-token path finds its prefix with one host read; the host-token path with none.
static void test_text_prefix_from_the_host(void **state) {
    (void)state;
    trainer t;
    trainer_init(&t, 1);
    int64_t C = t.model->cfg.text.context_length, shape[2] = {BATCH, C};
    tensor_scope_begin();
    tensor_counters before = tensor_counters_get();
    assert_non_null(clip_encode_text_host(t.model, t.batch.tokens, BATCH, true));
    assert_int_equal(tensor_counters_sub(tensor_counters_get(), before).host_reads, 0);
    tensor *tokens = tensor_from_host(t.batch.tokens, shape, 2, TENSOR_I64, false);
    before = tensor_counters_get();
    assert_non_null(clip_encode_text(t.model, tokens, true));
    assert_int_equal(tensor_counters_sub(tensor_counters_get(), before).host_reads, 1);
    tensor_scope_end();
    trainer_free(&t);
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: %s CONFIGS_DIR\n", argv[0]), 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/ViT-B-32.json", argv[1]);
    if (clip_config_load(path, &vit_b32) != 0) return fprintf(stderr, "%s\n", err_msg()), 1;
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_host_read_per_step),
        cmocka_unit_test(test_optimizer_ops_do_not_grow_with_parameters),
        cmocka_unit_test(test_text_prefix_from_the_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
