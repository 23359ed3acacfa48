// Tests of the few-shot modules: the L-BFGS logistic regression (linear probe) on synthetic
// features (separable clusters reach 100%, the held-out sweep picks a small L2 strength on clean
// data and a large one on pure noise, fits are deterministic and their optimum unique), the K = 1
// and K > 1 probe paths, head files (round trip and every defect named), and WiSE-FT interpolation
// (alpha 0 and 1 give the two weight sets exactly, 0.5 their mean) with the zero-shot head.
// Usage: test_fewshot CONFIGS_DIR
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "finetune/fewshot.h"
#include "model/safetensors.h"
#include "tmpdir.h"

static const char *configs;

static double gaussian(rng *r) {
    double u = rng_uniform(r) + 1e-300, v = rng_uniform(r);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static void normalize(float *x, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)x[i] * x[i];
    for (int i = 0; i < d; i++) x[i] = (float)(x[i] / sqrt(s));
}

// n samples of C classes (class i % C) around C random unit centres (drawn from centre_seed) with
// the given noise (drawn from sample_seed); noise < 0 gives pure noise features with random labels.
// Normalized like image features.
static feature_set make_clusters(int n, int C, int d, double noise, uint64_t centre_seed, uint64_t sample_seed) {
    rng r = {centre_seed};
    float *centres = malloc((size_t)C * d * sizeof(float));
    for (int i = 0; i < C * d; i++) centres[i] = (float)gaussian(&r);
    for (int c = 0; c < C; c++) normalize(centres + c * d, d);
    r.state = sample_seed;
    feature_set f = {.n = n, .dim = d, .x = malloc((size_t)n * d * sizeof(float)), .y = malloc((size_t)n * sizeof(int32_t))};
    for (int i = 0; i < n; i++) {
        f.y[i] = noise < 0 ? (int32_t)rng_below(&r, (uint64_t)C) : i % C;
        for (int j = 0; j < d; j++)
            f.x[i * d + j] = (float)((noise < 0 ? 0 : centres[f.y[i] * d + j]) + fabs(noise) * gaussian(&r) / sqrt(d));
        normalize(f.x + i * d, d);
    }
    free(centres);
    return f;
}

static void test_probe_separable_clusters(void **state) {
    (void)state;
    feature_set train = make_clusters(80, 4, 16, 0.3, 1, 2), test = make_clusters(2000, 4, 16, 0.3, 1, 3);
    linprobe_options opt = linprobe_options_default();
    linear_head head;
    linear_head_init(&head, 4, 16);
    linprobe_fit_info info;
    assert_int_equal(linprobe_fit(train.x, train.y, train.n, 1e-4, &opt, &head, &info), 0);
    assert_true(info.converged);
    double acc = 0, loss = 0;
    assert_int_equal(linear_head_score(&head, test.x, test.y, test.n, &acc, &loss), 0);
    assert_true(acc >= 0.995);
    assert_true(loss < 0.1);
    linear_head_free(&head);
    feature_set_free(&train);
    feature_set_free(&test);
}

// The best lambda of the default grid for a training set and held-out set.
static double swept_lambda(const feature_set *train, const feature_set *val, int C) {
    double grid[LINPROBE_GRID_SIZE];
    linprobe_default_grid(grid);
    assert_true(grid[0] > grid[LINPROBE_GRID_SIZE - 1]);
    linprobe_options opt = linprobe_options_default();
    linprobe_sweep s;
    assert_int_equal(linprobe_sweep_lambda(train->x, train->y, train->n, val->x, val->y, val->n, train->dim, C, grid,
                                           LINPROBE_GRID_SIZE, &opt, &s),
                     0);
    assert_int_equal(s.n, LINPROBE_GRID_SIZE);
    for (int i = 0; i < s.n; i++) assert_true(s.val_log_loss[s.best] <= s.val_log_loss[i]);
    double best = s.lambdas[s.best];
    linprobe_sweep_free(&s);
    return best;
}

static void test_lambda_selection(void **state) {
    (void)state;
    feature_set clean_train = make_clusters(60, 3, 16, 0.2, 5, 6), clean_val = make_clusters(60, 3, 16, 0.2, 5, 7);
    double clean = swept_lambda(&clean_train, &clean_val, 3);
    feature_set noise_train = make_clusters(60, 3, 16, -1, 11, 11), noise_val = make_clusters(300, 3, 16, -1, 12, 12);
    double noise = swept_lambda(&noise_train, &noise_val, 3);
    print_message("chosen lambda: clean %g, noise %g\n", clean, noise);
    assert_true(clean <= 1e-3);
    assert_true(noise >= 1e-1);
    feature_set_free(&clean_train);
    feature_set_free(&clean_val);
    feature_set_free(&noise_train);
    feature_set_free(&noise_val);
}

// Same data, same result bit for bit; another starting point reaches the same (unique) optimum.
static void test_fit_deterministic_and_unique(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    feature_set f = make_clusters(90, 3, 8, 1.0, 3, 4);
    linprobe_options opt = linprobe_options_default();
    linear_head a, b, c;
    linear_head_init(&a, 3, 8);
    linear_head_init(&b, 3, 8);
    linear_head_init(&c, 3, 8);
    for (int i = 0; i < 24; i++) c.weight[i] = (float)(i % 5) - 2.0f;
    linprobe_fit_info ia, ic;
    assert_int_equal(linprobe_fit(f.x, f.y, f.n, 1e-2, &opt, &a, &ia), 0);
    assert_int_equal(linprobe_fit(f.x, f.y, f.n, 1e-2, &opt, &b, NULL), 0);
    assert_int_equal(linprobe_fit(f.x, f.y, f.n, 1e-2, &opt, &c, &ic), 0);
    assert_memory_equal(a.weight, b.weight, 24 * sizeof(float));
    assert_memory_equal(a.bias, b.bias, 3 * sizeof(float));
    assert_true(ia.converged && ic.converged);
    assert_true(ia.objective < log(3.0));
    assert_true(fabs(ia.objective - ic.objective) < 1e-9);
    for (int i = 0; i < 24; i++) assert_true(fabs(a.weight[i] - c.weight[i]) < 1e-3);
    // The bias is unpenalised and the softmax ignores a common shift: compare centred biases.
    double ma = (a.bias[0] + a.bias[1] + a.bias[2]) / 3, mc = (c.bias[0] + c.bias[1] + c.bias[2]) / 3;
    for (int k = 0; k < 3; k++) assert_true(fabs((a.bias[k] - ma) - (c.bias[k] - mc)) < 1e-3);
    linear_head_free(&a);
    linear_head_free(&b);
    linear_head_free(&c);
    feature_set_free(&f);
    assert_int_equal(tensor_live_count(), live);  // no tensor handle leaked
}

static void test_fit_bad_input(void **state) {
    (void)state;
    feature_set f = make_clusters(10, 2, 4, 0.5, 1, 1);
    linprobe_options opt = linprobe_options_default();
    linear_head h;
    linear_head_init(&h, 2, 4);
    f.y[3] = 2;
    assert_int_equal(linprobe_fit(f.x, f.y, f.n, 1e-2, &opt, &h, NULL), -1);
    assert_non_null(strstr(err_msg(), "sample 3 has label 2 outside the 2 classes"));
    f.y[3] = 1;
    assert_int_equal(linprobe_fit(f.x, f.y, f.n, -1, &opt, &h, NULL), -1);
    assert_non_null(strstr(err_msg(), ">= 0"));
    assert_int_equal(linprobe_fit(f.x, f.y, 0, 1e-2, &opt, &h, NULL), -1);
    f.y[0] = -1;
    assert_int_equal(linear_head_score(&h, f.x, f.y, f.n, NULL, NULL), -1);
    linear_head_free(&h);
    feature_set_free(&f);
}

// Shots in class-major draw order, as the shot set stores them.
static feature_set class_major(int C, int K, uint64_t seed) {
    feature_set f = make_clusters(C * K, C, 8, 0.3, seed, seed + 1), out = f;
    out.x = malloc((size_t)f.n * 8 * sizeof(float));
    out.y = malloc((size_t)f.n * sizeof(int32_t));
    for (int i = 0; i < f.n; i++) {  // sample i is class i % C, shot i / C
        int64_t at = (int64_t)(i % C) * K + i / C;
        memcpy(out.x + at * 8, f.x + (int64_t)i * 8, 8 * sizeof(float));
        out.y[at] = f.y[i];
    }
    feature_set_free(&f);
    return out;
}

static void test_probe_shot_paths(void **state) {
    (void)state;
    assert_int_equal(fewshot_holdout_shots(1), 0);
    assert_int_equal(fewshot_holdout_shots(2), 1);
    assert_int_equal(fewshot_holdout_shots(4), 1);
    assert_int_equal(fewshot_holdout_shots(16), 4);
    linprobe_options opt = linprobe_options_default();
    linear_head h;
    probe_report r;
    feature_set one = class_major(3, 1, 2), sixteen = class_major(3, 16, 2);
    assert_int_equal(fewshot_train_probe(&one, 3, 1, -1, &opt, &h, &r), 0);
    assert_false(r.swept);
    assert_true(r.lambda == FEWSHOT_DEFAULT_LAMBDA);
    linear_head_free(&h);
    probe_report_free(&r);
    assert_int_equal(fewshot_train_probe(&sixteen, 3, 16, -1, &opt, &h, &r), 0);
    assert_true(r.swept);
    assert_int_equal(r.n_train, 36);
    assert_int_equal(r.n_val, 12);
    assert_true(r.lambda == r.sweep.lambdas[r.sweep.best]);
    linear_head_free(&h);
    probe_report_free(&r);
    assert_int_equal(fewshot_train_probe(&sixteen, 3, 16, 0.5, &opt, &h, &r), 0);
    assert_false(r.swept);
    assert_true(r.lambda == 0.5);
    linear_head_free(&h);
    probe_report_free(&r);
    assert_int_equal(fewshot_train_probe(&sixteen, 3, 8, -1, &opt, &h, &r), -1);
    assert_non_null(strstr(err_msg(), "not 3 classes x 8 shots"));
    feature_set_free(&one);
    feature_set_free(&sixteen);
}

static void test_head_file_round_trip(void **state) {
    (void)state;
    linear_head h, back;
    linear_head_init(&h, 3, 5);
    for (int i = 0; i < 15; i++) h.weight[i] = (float)i / 7;
    for (int i = 0; i < 3; i++) h.bias[i] = (float)-i;
    const char *names[3] = {"cat", "dog \"quoted\"", "caf\xc3\xa9"};
    const char *meta[] = {"clipc.lambda", "0.01", NULL};
    assert_int_equal(linear_head_save(&h, tmpdir_path("probe.safetensors"), HEAD_KIND_PROBE, names, "{}", meta), 0);
    char kind[32], **back_names = NULL;
    assert_int_equal(linear_head_load(tmpdir_path("probe.safetensors"), &back, kind, &back_names), 0);
    assert_string_equal(kind, HEAD_KIND_PROBE);
    assert_int_equal(back.n_classes, 3);
    assert_int_equal(back.dim, 5);
    assert_memory_equal(back.weight, h.weight, 15 * sizeof(float));
    assert_memory_equal(back.bias, h.bias, 3 * sizeof(float));
    for (int c = 0; c < 3; c++) assert_string_equal(back_names[c], names[c]);
    for (int c = 0; c < 3; c++) free(back_names[c]);
    free(back_names);
    linear_head_free(&back);
    st_file *f = st_open(tmpdir_path("probe.safetensors"));
    assert_non_null(st_find(f, "probe.weight"));
    assert_string_equal(st_metadata(f, "clipc.lambda"), "0.01");
    st_close(f);
    // The fine-tuned kind stores "head.*".
    assert_int_equal(linear_head_save(&h, tmpdir_path("ft.safetensors"), HEAD_KIND_FINETUNED, names, NULL, NULL), 0);
    f = st_open(tmpdir_path("ft.safetensors"));
    assert_non_null(st_find(f, "head.weight"));
    assert_non_null(st_find(f, "head.bias"));
    st_close(f);
    linear_head_free(&h);
}

// Writes a head-like file with the given pieces and expects linear_head_load to name the defect.
static void expect_bad_head(const char *kind, const char *wname, const int64_t *wshape, const char *names,
                            const char *expected) {
    static float data[64];
    int64_t bshape[1] = {2};
    st_writer *w = st_writer_init();
    assert_int_equal(st_writer_add(w, wname, ST_DTYPE_F32, wshape, 2, data), 0);
    assert_int_equal(st_writer_add(w, "probe.bias", ST_DTYPE_F32, bshape, 1, data), 0);
    if (kind) st_writer_set_metadata(w, "clipc.head", kind);
    if (names) st_writer_set_metadata(w, "clipc.classnames", names);
    assert_int_equal(st_writer_write(w, tmpdir_path("bad.safetensors")), 0);
    st_writer_free(w);
    linear_head h;
    assert_int_equal(linear_head_load(tmpdir_path("bad.safetensors"), &h, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "bad.safetensors"));
    assert_non_null(strstr(err_msg(), expected));
}

static void test_head_file_defects(void **state) {
    (void)state;
    int64_t two_by_three[2] = {2, 3}, three_by_three[2] = {3, 3};
    expect_bad_head(NULL, "probe.weight", two_by_three, "[\"a\",\"b\"]", "'clipc.head' is missing");
    expect_bad_head("svm", "probe.weight", two_by_three, "[\"a\",\"b\"]", "'clipc.head' is missing or not");
    expect_bad_head(HEAD_KIND_PROBE, "head.weight", two_by_three, "[\"a\",\"b\"]", "no 2-D tensor 'probe.weight'");
    expect_bad_head(HEAD_KIND_PROBE, "probe.weight", three_by_three, "[\"a\",\"b\",\"c\"]", "'probe.bias' is not F32 of the expected shape");
    expect_bad_head(HEAD_KIND_PROBE, "probe.weight", two_by_three, NULL, "'clipc.classnames' is missing");
    expect_bad_head(HEAD_KIND_PROBE, "probe.weight", two_by_three, "[\"a\"]", "array of 2 names");
    expect_bad_head(HEAD_KIND_PROBE, "probe.weight", two_by_three, "[\"a\",3]", "'clipc.classnames'[1] is not a string");
    linear_head h;
    assert_int_equal(linear_head_load(tmpdir_path("absent.safetensors"), &h, NULL, NULL), -1);
    assert_non_null(strstr(err_msg(), "absent.safetensors"));
}

static clip_model *tiny_model(uint64_t seed) {
    char path[1024];
    clip_config cfg;
    snprintf(path, sizeof path, "%s/clip-tiny.json", configs);
    assert_int_equal(clip_config_load(path, &cfg), 0);
    clip_model *m = clip_model_init(&cfg, seed);
    assert_non_null(m);
    return m;
}

static void to_host(const tensor *t, float *dst) {
    assert_int_equal(tensor_to_host(t, dst, (size_t)tensor_numel(t) * sizeof(float)), 0);
}

// Zero-shot head W = exp(logit_scale) * classifier, b = 0; the trained list is the image tower
// and the head; WiSE-FT's endpoints are exact and its midpoint is the mean.
static void test_wiseft_interpolation(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    clip_model *m = tiny_model(1), *other = tiny_model(2);
    int64_t shape[2] = {4, m->cfg.embed_dim};
    tensor_generator *g = tensor_generator_new(3, TENSOR_CPU);
    tensor *zs = tensor_normal(shape, 2, 0, 1, TENSOR_F32, TENSOR_CPU, g), *zs2 = tensor_normal(shape, 2, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    zs_classifier c, c2;
    assert_int_equal(zs_classifier_init(&c, m, zs), 0);
    assert_int_equal(zs_classifier_init(&c2, other, zs2), 0);
    int n_visual = 0, n_trained = 0;
    for (int i = 0; i < m->params.n; i++) n_visual += strncmp(m->params.items[i].name, "visual.", 7) == 0;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < c.lists[l]->n; i++) {
            const param *p = &c.lists[l]->items[i];
            if (p->frozen) continue;
            n_trained++;
            if (l == 0) assert_memory_equal(p->name, "visual.", 7);
        }
    assert_int_equal(n_trained, n_visual + 2);
    assert_string_equal(c.head.items[1].name, "head.bias");
    assert_true(clip_model_find_param(m, "logit_scale")->frozen);

    linear_head head;
    assert_int_equal(zs_classifier_get_head(&c, &head), 0);
    float *z = malloc((size_t)tensor_numel(zs) * sizeof(float));
    to_host(zs, z);
    double scale = exp(m->cfg.init_logit_scale);
    for (int i = 0; i < 4 * m->cfg.embed_dim; i++) assert_true(fabs(head.weight[i] - scale * z[i]) <= 1e-5 * fabs(scale * z[i]) + 1e-6);
    for (int k = 0; k < 4; k++) assert_true(head.bias[k] == 0);
    linear_head_free(&head);

    tensor **from = weights_snapshot(c.lists, 2), **to = weights_snapshot(c2.lists, 2);
    assert_non_null(from);
    assert_non_null(to);
    float *cur = NULL, *a = NULL, *b = NULL;
    for (int k = 0; k < 3; k++) {
        double alpha = k * 0.5;
        assert_int_equal(wiseft_interpolate(c.lists, 2, from, to, alpha), 0);
        for (int i = 0; i < 2; i++) {
            size_t n = (size_t)tensor_numel(from[i]);
            cur = realloc(cur, n * sizeof(float)), a = realloc(a, n * sizeof(float)), b = realloc(b, n * sizeof(float));
            tensor *trained = param_list_trainable(c.lists[i]);
            to_host(trained, cur);
            tensor_free(trained);
            to_host(from[i], a);
            to_host(to[i], b);
            if (k == 0) assert_memory_equal(cur, a, n * sizeof(float));
            if (k == 2) assert_memory_equal(cur, b, n * sizeof(float));
            for (size_t j = 0; k == 1 && j < n; j++) assert_true(cur[j] == (a[j] + b[j]) * 0.5f);
        }
    }
    assert_int_equal(wiseft_interpolate(c.lists, 2, from, to, 1.5), -1);
    assert_non_null(strstr(err_msg(), "alpha"));
    free(cur);
    free(a);
    free(b);
    free(z);
    weights_snapshot_free(from, 2);
    weights_snapshot_free(to, 2);
    zs_classifier_free(&c);
    zs_classifier_free(&c2);
    tensor_free(zs);
    tensor_free(zs2);
    tensor_generator_free(g);
    clip_model_free(m);
    clip_model_free(other);
    assert_int_equal(tensor_live_count(), live);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_fewshot CONFIGS_DIR\n");
        return 2;
    }
    configs = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_separable_clusters), cmocka_unit_test(test_lambda_selection),
        cmocka_unit_test(test_fit_deterministic_and_unique), cmocka_unit_test(test_fit_bad_input),
        cmocka_unit_test(test_probe_shot_paths),          cmocka_unit_test(test_head_file_round_trip),
        cmocka_unit_test(test_head_file_defects),         cmocka_unit_test(test_wiseft_interpolation),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
