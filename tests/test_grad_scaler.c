// Tests the loss scaler of --precision amp (optim/grad_scaler.h) on the CPU, alone and inside the
// training step (train/step.h): PyTorch GradScaler's dynamics (backoff on overflow, growth after
// growth_interval finite steps, a scale kept finite in float32); a step whose scaled gradients
// overflow is skipped (weights and optimizer untouched, scale halved, reported as an overflow, not
// as a bad step); a finite one applies the update of the unscaled gradients, the same as without
// a scaler; a non-finite loss is a bad step, not an overflow.
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "optim/grad_scaler.h"
#include "train/step.h"

static void test_update_dynamics(void **state) {
    (void)state;
    grad_scaler s = grad_scaler_default();
    assert_true(s.scale == 65536 && s.growth_factor == 2 && s.backoff_factor == 0.5 && s.growth_interval == 2000);
    s.growth_interval = 3;
    grad_scaler_update(&s, false);
    grad_scaler_update(&s, false);
    assert_true(s.scale == 65536 && s.growth_tracker == 2);
    grad_scaler_update(&s, false);  // the third finite step in a row
    assert_true(s.scale == 131072 && s.growth_tracker == 0);
    grad_scaler_update(&s, false);
    grad_scaler_update(&s, true);  // an overflow: backoff, and the count starts again
    assert_true(s.scale == 65536 && s.growth_tracker == 0);
    s = (grad_scaler){.scale = 0x1p127, .growth_factor = 2, .backoff_factor = 0.5, .growth_interval = 1};
    grad_scaler_update(&s, false);  // 2^128 is no float32: the scale stays
    assert_true(s.scale == 0x1p127 && s.growth_tracker == 0);
}

// A one-parameter-vector objective: features x[begin:end] * w (n, 4), loss weight * sum of a
// range of rows, so that weight 1e35 makes a finite loss whose scaled gradients overflow.
typedef struct {
    tensor *w;
    double weight;
} toy;

static const float X[2][4] = {{0.5f, -1.0f, 2.0f, 0.25f}, {1.5f, 0.5f, -0.5f, 1.0f}};

static int toy_features(void *ctx, const void *batch, int64_t begin, int64_t end, tensor **out) {
    const toy *t = ctx;
    int64_t shape[2] = {end - begin, 4};
    out[0] = tensor_mul(tensor_from_host((const float *)batch + begin * 4, shape, 2, TENSOR_F32, false), t->w);
    return out[0] ? 0 : -1;
}

static tensor *toy_loss_rows(void *ctx, tensor *const *all, int64_t row_begin, int64_t row_end) {
    const toy *t = ctx;
    return tensor_mul_scalar(tensor_sum(tensor_slice(all[0], 0, row_begin, row_end)), t->weight);
}

typedef struct {
    toy t;
    param_list params;
    param_list *lists[1];
    adamw *opt;
    schedule sched;
    step_objective obj;
} toy_run;

static void toy_init(toy_run *r) {
    param_list_init(&r->params);
    float w0[4] = {0.1f, 0.2f, -0.3f, 0.4f};
    int64_t n = 4;
    r->t.w = param_list_add(&r->params, "w", tensor_from_host(w0, &n, 1, TENSOR_F32, false))->value;
    if (param_list_pack(&r->params, TENSOR_CPU) != 0) fail_msg("%s", err_msg());
    r->t.weight = 1;
    r->lists[0] = &r->params;
    adamw_config ac = adamw_config_default();
    ac.lr = 0.1, ac.weight_decay = 0, ac.eps = 1;  // an eps the size of the gradients: AdamW sees their scale
    r->opt = adamw_init(r->lists, 1, ac);
    r->sched = (schedule){.kind = SCHEDULE_CONST, .base_lr = 0.1, .total_steps = 100};
    r->obj = (step_objective){.n_features = 1, .n_trained = 1, .features = toy_features, .loss_rows = toy_loss_rows, .ctx = &r->t};
}

static void toy_free(toy_run *r) {
    adamw_free(r->opt);
    param_list_free(&r->params);
}

static step_result toy_step(toy_run *r, grad_scaler *scaler, int64_t step) {
    step_config c = {.lists = r->lists, .n_lists = 1, .opt = r->opt, .sched = &r->sched, .accum_freq = 1,
                     .autocast_f16 = scaler != NULL, .scaler = scaler};
    step_result out;
    if (step_run(&c, step, &r->obj, X, 2, &out) != 0) fail_msg("%s", err_msg());
    return out;
}

static void weights(const toy_run *r, float *w) { assert_int_equal(tensor_to_host(r->t.w, w, 4 * sizeof(float)), 0); }

static void test_step_overflow_and_unscale(void **state) {
    (void)state;
    toy_run scaled, plain;
    toy_init(&scaled), toy_init(&plain);
    grad_scaler s = grad_scaler_default();
    float before[4], after[4], want[4];
    weights(&scaled, before);
    // 1e35 * 65536 overflows float32: the step is skipped, the weights stay, the scale halves.
    scaled.t.weight = 1e35;
    step_result r = toy_step(&scaled, &s, 0);
    assert_true(r.overflow && !r.finite && isfinite(r.loss) && r.grad_scale == 65536);
    weights(&scaled, after);
    assert_memory_equal(before, after, sizeof before);
    assert_true(s.scale == 32768 && s.growth_tracker == 0);
    // A finite step: the update and the gradient norm of the unscaled gradients, as without a scaler.
    scaled.t.weight = 1;
    r = toy_step(&scaled, &s, 1);
    step_result p = toy_step(&plain, NULL, 1);
    assert_true(r.finite && !r.overflow && r.grad_scale == 32768 && s.growth_tracker == 1);
    assert_true(!p.overflow && p.grad_scale == 0);
    double norm = 0;  // d loss / d w = the column sums of X
    for (int j = 0; j < 4; j++) norm += (double)(X[0][j] + X[1][j]) * (X[0][j] + X[1][j]);
    assert_true(fabs(r.grad_norm - sqrt(norm)) < 1e-6 * sqrt(norm) && fabs(p.grad_norm - r.grad_norm) < 1e-6 * sqrt(norm));
    weights(&scaled, after), weights(&plain, want);
    for (int j = 0; j < 4; j++) {
        assert_true(after[j] != before[j]);
        assert_true(fabs(after[j] - want[j]) < 1e-6);
    }
    // A non-finite loss is a bad step (for the caller's guard), not an overflow; the scale backs off.
    scaled.t.weight = INFINITY;
    r = toy_step(&scaled, &s, 2);
    assert_true(!r.finite && !r.overflow && s.scale == 16384);
    toy_free(&scaled), toy_free(&plain);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_dynamics),
        cmocka_unit_test(test_step_overflow_and_unscale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
