// Parity with OpenCLIP: loads a fixture folder (config.json, weights, inputs, expected; see
// ../shared/fixtures/openclip/README.md), runs both towers, the CLIP loss and its backward, and
// compares every expected tensor: features and logits within 2e-5 absolute, gradients within
// 1e-5 + 1e-4 * max|expected|. Prints the max abs diff per tensor.
// Usage: test_parity FIXTURE_DIR
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "model/clip.h"
#include "model/safetensors.h"

static const char *fixture_dir;

static st_file *open_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", err_msg());
    return f;
}

static tensor *fixture_tensor(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor '%s'", st_path(f), name);
    tensor_dtype dtype = t->dtype == ST_DTYPE_I64 ? TENSOR_I64 : TENSOR_F32;
    assert_true(t->dtype == ST_DTYPE_I64 || t->dtype == ST_DTYPE_F32);
    return tensor_from_host(t->data, t->shape, t->ndim, dtype, false);
}

// Compares got against the fixture's tensor; tol = abs_tol + rel_tol * max|expected|.
static void expect_close(const st_file *f, const char *name, const tensor *got, double abs_tol, double rel_tol) {
    const st_tensor *want = st_find(f, name);
    if (!want) fail_msg("%s: no tensor '%s'", st_path(f), name);
    assert_non_null(got);
    assert_int_equal(tensor_numel(got), want->numel);
    float *g = malloc((size_t)want->numel * sizeof(float));
    assert_int_equal(tensor_to_host(got, g, (size_t)want->numel * sizeof(float)), 0);
    const float *w = want->data;
    double max_diff = 0, max_abs = 0;
    for (int64_t i = 0; i < want->numel; i++) {
        double d = fabs((double)g[i] - (double)w[i]);
        if (!(d <= max_diff)) max_diff = d;  // NaN counts as a failure
        if (fabs(w[i]) > max_abs) max_abs = fabs(w[i]);
    }
    double tol = abs_tol + rel_tol * max_abs;
    printf("  %-58s max abs diff %.3g (tol %.3g)\n", name, max_diff, tol);
    free(g);
    if (!(max_diff <= tol)) fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g)", name, max_diff, tol);
}

static void test_forward_loss_and_gradients(void **state) {
    (void)state;
    char path[1024];
    clip_config cfg;
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    if (clip_config_load(path, &cfg) != 0) fail_msg("%s", err_msg());
    clip_model *m = clip_model_init(&cfg, 0);
    assert_non_null(m);
    snprintf(path, sizeof path, "%s/weights.safetensors", fixture_dir);
    if (clip_model_load(m, path) != 0) fail_msg("%s", err_msg());

    st_file *inputs = open_fixture("inputs.safetensors");
    st_file *expected = open_fixture("expected.safetensors");
    tensor_scope_begin();
    tensor *img = clip_encode_image(m, fixture_tensor(inputs, "images"), false);
    tensor *txt = clip_encode_text(m, fixture_tensor(inputs, "tokens"), false);
    const double feat_tol = 2e-5;
    expect_close(expected, "image_features", img, feat_tol, 0);
    expect_close(expected, "text_features", txt, feat_tol, 0);
    tensor *img_n = tensor_l2_normalize(img, -1), *txt_n = tensor_l2_normalize(txt, -1);
    expect_close(expected, "image_features_normed", img_n, feat_tol, 0);
    expect_close(expected, "text_features_normed", txt_n, feat_tol, 0);
    tensor *scale = tensor_exp(m->logit_scale);
    expect_close(expected, "logit_scale", scale, feat_tol, 0);
    tensor *logits_per_image = tensor_mul(scale, tensor_matmul(img_n, tensor_transpose(txt_n, 0, 1)));
    tensor *logits_per_text = tensor_transpose(logits_per_image, 0, 1);
    expect_close(expected, "logits_per_image", logits_per_image, feat_tol, 0);
    expect_close(expected, "logits_per_text", logits_per_text, feat_tol, 0);
    tensor *labels = tensor_arange(tensor_size(img, 0), TENSOR_I64, TENSOR_CPU);
    tensor *loss = tensor_mul_scalar(tensor_add(tensor_cross_entropy(logits_per_image, labels),
                                                tensor_cross_entropy(logits_per_text, labels)), 0.5);
    expect_close(expected, "clip_loss", loss, feat_tol, 0);
    assert_int_equal(tensor_backward(loss, NULL), 0);

    int n_grads = 0;
    for (int i = 0; i < st_count(expected); i++) {
        const char *key = st_get(expected, i)->name;
        if (strncmp(key, "grad.", 5) != 0) continue;
        clip_param *p = clip_model_find_param(m, key + 5);
        if (!p) fail_msg("expected.safetensors: %s names no parameter of the model", key);
        expect_close(expected, key, tensor_grad(p->value), 1e-5, 1e-4);
        n_grads++;
    }
    assert_true(n_grads > 0);
    tensor_scope_end();
    st_close(inputs);
    st_close(expected);
    clip_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_forward_loss_and_gradients)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
