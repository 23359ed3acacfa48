// Training-step parity with OpenCLIP: replays the whole OpenCLIP v2.20.0 training steps of a
// fixture folder's step.safetensors (see ../shared/fixtures/openclip/README.md) through clipc's
// own training step (train/step.h: ClipLoss, backward, the finiteness check, clipping, AdamW with
// OpenCLIP's parameter groups, the cosine schedule, the logit-scale clamp) and compares each
// step's learning rate, loss, gradient norm and logit scale, every parameter after the last step
// and the AdamW moments, at the tolerances the fixture's metadata states; then again with each
// batch split into 2 and 4 micro-batches (--accum-freq), which must give the same steps. Hyper-parameters,
// batch orders and tolerances all come from the fixture, so any folder of that layout works.
// On a GPU (DEVICE cuda or cuda:N) the model, inputs and steps run there in float32 with TF32 off
// (scripts/gpu-check.sh): the same tolerances hold.
// Usage: test_step_parity FIXTURE_DIR [DEVICE]      (DEVICE: cpu (default), cuda, cuda:N)
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
#include "optim/grad.h"
#include "train/step.h"
#include "fixture.h"
#include "replay_objective.h"

static const char *fixture_dir;
static char step_path[1024];
static tensor_device device;  // where the model and the inputs live

typedef struct {
    double lr, beta1, beta2, eps, wd, grad_clip_norm;
    int64_t warmup, total_steps, num_steps;
    cJSON *tolerance;  // {"loss": {"atol", "rtol"}, ..., "exp_avg": {"tensor_rel"}}
} step_fixture;

static double json_number(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) fail_msg("step.safetensors metadata: no number '%s'", key);
    return v->valuedouble;
}

static cJSON *metadata_json(const st_file *f, const char *key) {
    const char *text = st_metadata(f, key);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (!j) fail_msg("%s: metadata '%s' is missing or not JSON", step_path, key);
    return j;
}

static void read_fixture(step_fixture *fx) {
    st_file *f = st_open(step_path);
    if (!f) fail_msg("%s", err_msg());
    cJSON *h = metadata_json(f, "hyperparameters");
    *fx = (step_fixture){.lr = json_number(h, "lr"), .beta1 = json_number(h, "beta1"), .beta2 = json_number(h, "beta2"),
                         .eps = json_number(h, "eps"), .wd = json_number(h, "wd"),
                         .grad_clip_norm = json_number(h, "grad_clip_norm"), .warmup = (int64_t)json_number(h, "warmup"),
                         .total_steps = (int64_t)json_number(h, "total_steps"),
                         .num_steps = (int64_t)json_number(h, "num_steps")};
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(h, "lr_scheduler");
    if (!cJSON_IsString(sched) || strcmp(sched->valuestring, "cosine") != 0) fail_msg("only the cosine schedule is replayed");
    cJSON_Delete(h);
    fx->tolerance = metadata_json(f, "tolerance");
    st_close(f);
}

static double tol(const step_fixture *fx, const char *kind, const char *field) {
    return json_number(cJSON_GetObjectItemCaseSensitive(fx->tolerance, kind), field);
}

static tensor *ref(const char *file, const char *name) {
    tensor *t = fixture_tensor_in(fixture_dir, file, name);
    if (!t) fail_msg("%s", err_msg());
    return t;
}

// t moved to the test's device (t itself on the CPU).
static tensor *placed(tensor *t) {
    if (device.type == TENSOR_DEVICE_CPU) return t;
    tensor *moved = tensor_to_device(t, device, false);
    if (!moved) fail_msg("%s", err_msg());
    tensor_free(t);
    return moved;
}

// A tensor of the fixture, on the test's device.
static tensor *ref_placed(const char *file, const char *name) { return placed(ref(file, name)); }

static double ref_value(const char *name) {
    double v;
    tensor *t = ref("step.safetensors", name);
    assert_int_equal(tensor_item(t, &v), 0);
    tensor_free(t);
    return v;
}

// |got - ref| <= atol + rtol |ref| for a scalar of step.safetensors.
static void expect_scalar(const step_fixture *fx, const char *kind, const char *name, double got) {
    double want = ref_value(name), bound = tol(fx, kind, "atol") + tol(fx, kind, "rtol") * fabs(want);
    printf("  %-34s %.9g (OpenCLIP %.9g, diff %.3g, tol %.3g)\n", name, got, want, fabs(got - want), bound);
    if (!(fabs(got - want) <= bound)) fail_msg("%s: %.9g differs from OpenCLIP's %.9g (tolerance %.3g)", name, got, want, bound);
}

// ---- the replayed run ----------------------------------------------------------------------------

static void replay_init(replay *r) {
    char path[1024];
    clip_config cfg;
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    if (clip_config_load(path, &cfg) != 0) fail_msg("%s", err_msg());
    r->model = clip_model_init(&cfg, 0);
    assert_non_null(r->model);
    snprintf(path, sizeof path, "%s/weights.safetensors", fixture_dir);
    if (clip_model_load(r->model, path) != 0) fail_msg("%s", err_msg());
    if (clip_model_to_device(r->model, device) != 0) fail_msg("%s", err_msg());
    r->images = ref_placed("inputs.safetensors", "images");
    r->tokens = ref_placed("inputs.safetensors", "tokens");
}

static void replay_free(replay *r) {
    tensor_free(r->images);
    tensor_free(r->tokens);
    clip_model_free(r->model);
}

static adamw *make_optimizer(const step_fixture *fx, replay *r) {
    param_list *lists[1] = {&r->model->params};
    adamw *opt = adamw_init(lists, 1, (adamw_config){.lr = fx->lr, .beta1 = fx->beta1, .beta2 = fx->beta2,
                                                        .eps = fx->eps, .weight_decay = fx->wd});
    assert_non_null(opt);
    return opt;
}

static step_config make_step(const step_fixture *fx, replay *r, param_list **lists, adamw *opt, const schedule *s) {
    lists[0] = &r->model->params;
    return (step_config){.lists = lists, .n_lists = 1, .opt = opt, .sched = s, .grad_clip_norm = fx->grad_clip_norm,
                         .logit_scale = r->model->logit_scale, .accum_freq = 1};
}

// ---- comparisons after the last step -------------------------------------------------------------

static void expect_parameters(const step_fixture *fx, clip_model *m) {
    double atol = tol(fx, "after", "atol"), worst = 0;
    char key[160];
    for (int i = 0; i < m->params.n; i++) {
        snprintf(key, sizeof key, "after.%s", m->params.items[i].name);
        double max_abs, diff = fixture_max_diff(step_path, key, m->params.items[i].value, &max_abs);
        if (!(diff <= atol)) fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g): %s", key, diff, atol, err_msg());
        if (diff > worst) worst = diff;
    }
    printf("  after.* (%d parameters)               max abs diff %.3g (tol %.3g)\n", m->params.n, worst, atol);
}

// The token embedding's moments are stored for the listed rows only; every other row must be 0.
static void expect_row_moment(const char *key, const tensor *got, double bound) {
    char rows_key[200];
    snprintf(rows_key, sizeof rows_key, "adam.token_embedding.weight.rows");
    tensor *rows = ref_placed("step.safetensors", rows_key), *picked = tensor_index_select(got, 0, rows);
    double max_abs, diff = fixture_max_diff(step_path, key, picked, &max_abs);
    if (!(diff <= bound * max_abs)) fail_msg("%s differs by %.3g (tolerance %.3g)", key, diff, bound * max_abs);
    int64_t V = tensor_size(got, 0), W = tensor_size(got, 1), n = tensor_numel(rows);
    float *all = malloc((size_t)(V * W) * sizeof(float));
    int64_t *listed = malloc((size_t)n * sizeof(int64_t));
    bool *keep = calloc((size_t)V, sizeof(bool));
    assert_int_equal(tensor_to_host(got, all, (size_t)(V * W) * sizeof(float)), 0);
    assert_int_equal(tensor_to_host(rows, listed, (size_t)n * sizeof(int64_t)), 0);
    for (int64_t i = 0; i < n; i++) keep[listed[i]] = true;
    for (int64_t v = 0; v < V; v++)
        for (int64_t w = 0; !keep[v] && w < W; w++)
            if (all[v * W + w] != 0) fail_msg("%s: row %lld is not in the fixture's rows but is %g", key, (long long)v, all[v * W + w]);
    free(all), free(listed), free(keep);
    tensor_free(rows), tensor_free(picked);
}

static void expect_moments(const step_fixture *fx, const adamw *opt) {
    int compared = 0;
    for (int i = 0; i < adamw_state_count(opt); i++) {
        const char *name;
        tensor *value;
        assert_int_equal(adamw_state_get(opt, i, &name, &value), 0);
        const char *suffix = strrchr(name, '.');
        char key[200];
        snprintf(key, sizeof key, "adam.%s", name + strlen("optimizer."));
        if (!strcmp(suffix, ".step")) {
            double step;
            assert_int_equal(tensor_item(value, &step), 0);
            assert_int_equal((int64_t)step, fx->num_steps);
        } else if (strstr(name, "token_embedding.weight")) {
            expect_row_moment(key, value, tol(fx, suffix + 1, "tensor_rel"));
            compared++;
        } else {
            double max_abs, diff = fixture_max_diff(step_path, key, value, &max_abs);
            double bound = tol(fx, suffix + 1, "tensor_rel") * max_abs;
            if (!(diff <= bound)) fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g): %s", key, diff, bound, err_msg());
            compared++;
        }
        tensor_free(value);
    }
    printf("  adam.*.exp_avg, exp_avg_sq          %d tensors within tolerance\n", compared);
    assert_true(compared > 0);
}

// ---- tests -----------------------------------------------------------------------------------------

// The four steps with the batch split into accum_freq micro-batches (1: none): the loss over the
// global batch is exact, so every split must match OpenCLIP's unsplit steps.
static void four_training_steps(int accum_freq) {
    step_fixture fx;
    read_fixture(&fx);
    replay r;
    replay_init(&r);
    step_objective obj = replay_objective(&r);
    adamw *opt = make_optimizer(&fx, &r);
    schedule sched = {.kind = SCHEDULE_COSINE, .base_lr = fx.lr, .warmup_steps = fx.warmup, .total_steps = fx.total_steps};
    assert_int_equal(schedule_check(&sched), 0);
    param_list *lists[1];
    step_config sc = make_step(&fx, &r, lists, opt, &sched);
    sc.accum_freq = accum_freq;
    printf("  %d micro-batch(es) per step\n", accum_freq);
    char name[64];
    for (int64_t k = 0; k < fx.num_steps; k++) {
        snprintf(name, sizeof name, "step%lld.order", (long long)k);
        tensor *order = ref_placed("step.safetensors", name);
        step_result res;
        tensor_scope_begin();
        assert_int_equal(step_run(&sc, k, &obj, order, tensor_numel(order), &res), 0);
        tensor_scope_end();
        tensor_free(order);
        assert_true(res.finite);
        double scale;
        assert_int_equal(tensor_item(r.model->logit_scale, &scale), 0);
        const char *fields[4] = {"lr", "loss", "grad_norm", "logit_scale"};
        double got[4] = {res.lr, res.loss, res.grad_norm, scale};
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "step%lld.%s", (long long)k, fields[i]);
            expect_scalar(&fx, fields[i], name, got[i]);
        }
    }
    expect_parameters(&fx, r.model);
    expect_moments(&fx, opt);
    adamw_free(opt);
    replay_free(&r);
    cJSON_Delete(fx.tolerance);
}

static void test_four_training_steps(void **state) {
    (void)state;
    four_training_steps(1);
}

static void test_four_training_steps_accumulated(void **state) {
    (void)state;
    four_training_steps(2);
    four_training_steps(4);
}

// One step from a logit scale just outside [0, ln 100]: the update, then the clamp.
static void clamp_run(const char *run) {
    step_fixture fx;
    read_fixture(&fx);
    replay r;
    replay_init(&r);
    step_objective obj = replay_objective(&r);
    char name[64];
    snprintf(name, sizeof name, "%s.logit_scale_init", run);
    assert_int_equal(tensor_fill_(r.model->logit_scale, ref_value(name)), 0);
    adamw *opt = make_optimizer(&fx, &r);
    schedule sched = {.kind = SCHEDULE_COSINE, .base_lr = fx.lr, .warmup_steps = fx.warmup, .total_steps = fx.total_steps};
    param_list *lists[1];
    step_config sc = make_step(&fx, &r, lists, opt, &sched);
    sc.logit_scale = NULL;  // clamped below, after reading the unclamped value
    int64_t four = 4;
    tensor *order = tensor_arange(four, TENSOR_I64, device);
    step_result res;
    tensor_scope_begin();
    assert_int_equal(step_run(&sc, 0, &obj, order, four, &res), 0);
    tensor_scope_end();
    double unclamped, clamped;
    assert_int_equal(tensor_item(r.model->logit_scale, &unclamped), 0);
    assert_int_equal(optim_clamp_logit_scale(r.model->logit_scale), 0);
    assert_int_equal(tensor_item(r.model->logit_scale, &clamped), 0);
    const char *fields[4] = {"loss", "grad_norm", "logit_scale_unclamped", "logit_scale"};
    const char *kinds[4] = {"loss", "grad_norm", "logit_scale", "logit_scale"};
    double got[4] = {res.loss, res.grad_norm, unclamped, clamped};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", run, fields[i]);
        expect_scalar(&fx, kinds[i], name, got[i]);
    }
    tensor_free(order);
    adamw_free(opt);
    replay_free(&r);
    cJSON_Delete(fx.tolerance);
}

static void test_clamp_high(void **state) {
    (void)state;
    clamp_run("clamp_hi");
}

static void test_clamp_low(void **state) {
    (void)state;
    clamp_run("clamp_lo");
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s FIXTURE_DIR [DEVICE]\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    if (tensor_device_parse(argc == 3 ? argv[2] : "cpu", &device) != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err_msg());
        return 2;
    }
    tensor_set_tf32(false);  // full float32 on a GPU, as the fixture was made
    printf("device %s\n", device.type == TENSOR_DEVICE_CUDA ? "cuda" : "cpu");
    snprintf(step_path, sizeof step_path, "%s/step.safetensors", fixture_dir);
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_training_steps),
        cmocka_unit_test(test_four_training_steps_accumulated),
        cmocka_unit_test(test_clamp_high),
        cmocka_unit_test(test_clamp_low),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
