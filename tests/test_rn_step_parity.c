// Training-step parity of the ModifiedResNet towers with OpenCLIP v2.20.0: replays the steps of a
// folder written by tests/fixtures/make_openclip_rn_step.py (tests/data/openclip-rn-step: config,
// weights with BatchNorm buffers, inputs, step.safetensors) through clipc's training step
// (train/step.h, the objective in BatchNorm training mode, AdamW with OpenCLIP's groups, the cosine
// schedule, clipping, the clamp) and compares each step's lr, loss, gradient norm and logit scale,
// every parameter after the last step, and every BatchNorm's running statistics and
// num_batches_tracked: once with the whole batch (k1) and once as 2 micro-batches (--accum-freq 2,
// k2: each micro-batch normalized by its own statistics, which it updates once). Hyper-parameters
// and tolerances come from the file's metadata.
// Usage: test_rn_step_parity FIXTURE_DIR
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "loss/loss.h"
#include "model/clip.h"
#include "model/safetensors.h"
#include "train/step.h"
#include "fixture.h"
#include "replay_objective.h"

static const char *fixture_dir;
static char step_path[1024];
static cJSON *hyper, *tolerance;

static double number(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) fail_msg("%s: metadata: no number '%s'", step_path, key);
    return v->valuedouble;
}

static double tol(const char *kind, const char *field) { return number(cJSON_GetObjectItemCaseSensitive(tolerance, kind), field); }

static tensor *ref(const char *file, const char *name) {
    tensor *t = fixture_tensor_in(fixture_dir, file, name);
    if (!t) fail_msg("%s", err_msg());
    return t;
}

static void expect_scalar(const char *kind, const char *name, double got) {
    tensor *t = ref("step.safetensors", name);
    double want;
    assert_int_equal(tensor_item(t, &want), 0);
    tensor_free(t);
    double bound = tol(kind, "atol") + tol(kind, "rtol") * fabs(want);
    printf("  %-24s %.9g (OpenCLIP %.9g, diff %.3g, tol %.3g)\n", name, got, want, fabs(got - want), bound);
    if (!(fabs(got - want) <= bound)) fail_msg("%s: %.9g differs from OpenCLIP's %.9g (tolerance %.3g)", name, got, want, bound);
}

static void expect_tensor(const char *key, const tensor *got, double atol, double rtol) {
    double max_abs, diff = fixture_max_diff(step_path, key, got, &max_abs);
    if (!(diff <= atol + rtol * max_abs))
        fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g): %s", key, diff, atol + rtol * max_abs, err_msg());
}

static void replay_init(replay *r) {
    char path[1024];
    clip_config cfg;
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    if (clip_config_load(path, &cfg) != 0) fail_msg("%s", err_msg());
    r->model = clip_model_init(&cfg, 0);
    assert_non_null(r->model);
    snprintf(path, sizeof path, "%s/weights.safetensors", fixture_dir);
    if (clip_model_load(r->model, path) != 0) fail_msg("%s", err_msg());
    r->images = ref("inputs.safetensors", "images");
    r->tokens = ref("inputs.safetensors", "tokens");
    clip_model_set_training(r->model, true);
}

static void replay_free(replay *r) {
    tensor_free(r->images);
    tensor_free(r->tokens);
    clip_model_free(r->model);
}

static void expect_statistics(const char *run, const clip_model *m) {
    char key[512];
    const st_tensor *counter;
    st_file *f = st_open(step_path);
    assert_non_null(f);
    for (int i = 0; i < m->resnet->n_bns; i++) {
        const resnet_bn *bn = m->resnet->bns[i];
        snprintf(key, sizeof key, "%s.bn.%s.running_mean", run, bn->key);
        expect_tensor(key, bn->running_mean, tol("bn", "atol"), tol("bn", "rtol"));
        snprintf(key, sizeof key, "%s.bn.%s.running_var", run, bn->key);
        expect_tensor(key, bn->running_var, tol("bn", "atol"), tol("bn", "rtol"));
        snprintf(key, sizeof key, "%s.bn.%s.num_batches_tracked", run, bn->key);
        assert_non_null(counter = st_find(f, key));
        int64_t want;
        memcpy(&want, counter->data, sizeof want);
        if (bn->num_batches_tracked != want) fail_msg("%s: %lld, OpenCLIP %lld", key, (long long)bn->num_batches_tracked, (long long)want);
    }
    st_close(f);
    printf("  %s.bn.* (%d BatchNorms)   within tolerance, counters equal\n", run, m->resnet->n_bns);
}

static void steps(int accum_freq) {
    replay r;
    replay_init(&r);
    step_objective obj = replay_objective(&r);
    param_list *lists[1] = {&r.model->params};
    adamw *opt = adamw_init(lists, 1, (adamw_config){.lr = number(hyper, "lr"), .beta1 = number(hyper, "beta1"),
                                                        .beta2 = number(hyper, "beta2"), .eps = number(hyper, "eps"),
                                                        .weight_decay = number(hyper, "wd")});
    assert_non_null(opt);
    schedule sched = {.kind = SCHEDULE_COSINE, .base_lr = number(hyper, "lr"),
                      .warmup_steps = (int64_t)number(hyper, "warmup"), .total_steps = (int64_t)number(hyper, "total_steps")};
    step_config sc = {.lists = lists, .n_lists = 1, .opt = opt, .sched = &sched,
                      .grad_clip_norm = number(hyper, "grad_clip_norm"), .logit_scale = r.model->logit_scale,
                      .accum_freq = accum_freq};
    char run[8], name[128];
    snprintf(run, sizeof run, "k%d", accum_freq);
    int64_t n = (int64_t)number(hyper, "batch");
    for (int64_t k = 0; k < (int64_t)number(hyper, "num_steps"); k++) {
        int64_t *order = malloc((size_t)n * sizeof *order);
        for (int64_t i = 0; i < n; i++) order[i] = (i + k) % n;
        tensor *batch = tensor_from_host(order, &n, 1, TENSOR_I64, false);
        free(order);
        step_result res;
        tensor_scope_begin();
        if (step_run(&sc, k, &obj, batch, n, &res) != 0) fail_msg("%s", err_msg());
        tensor_scope_end();
        tensor_free(batch);
        assert_true(res.finite);
        double scale;
        assert_int_equal(tensor_item(r.model->logit_scale, &scale), 0);
        const char *fields[4] = {"lr", "loss", "grad_norm", "logit_scale"};
        double got[4] = {res.lr, res.loss, res.grad_norm, scale};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "%s.step%lld.%s", run, (long long)k, fields[i]);
            expect_scalar(fields[i], name, got[i]);
        }
    }
    for (int i = 0; i < r.model->params.n; i++) {
        snprintf(name, sizeof name, "%s.after.%s", run, r.model->params.items[i].name);
        expect_tensor(name, r.model->params.items[i].value, tol("after", "atol"), 0);
    }
    printf("  %s.after.* (%d parameters) within %g\n", run, r.model->params.n, tol("after", "atol"));
    expect_statistics(run, r.model);
    adamw_free(opt);
    replay_free(&r);
}

static void test_steps(void **state) {
    (void)state;
    steps(1);
}

static void test_steps_accumulated(void **state) {
    (void)state;
    steps(2);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    snprintf(step_path, sizeof step_path, "%s/step.safetensors", fixture_dir);
    st_file *f = st_open(step_path);
    if (!f) {
        fprintf(stderr, "%s: %s\n", argv[0], err_msg());
        return 1;
    }
    hyper = cJSON_Parse(st_metadata(f, "hyperparameters") ? st_metadata(f, "hyperparameters") : "");
    tolerance = cJSON_Parse(st_metadata(f, "tolerance") ? st_metadata(f, "tolerance") : "");
    st_close(f);
    if (!hyper || !tolerance) {
        fprintf(stderr, "%s: %s: no hyperparameters or tolerance metadata\n", argv[0], step_path);
        return 1;
    }
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_steps), cmocka_unit_test(test_steps_accumulated)};
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(hyper);
    cJSON_Delete(tolerance);
    return rc;
}
