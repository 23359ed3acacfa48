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
#include "fixture.h"

static const char *fixture_dir;

static char expected_path[1024];

// Compares got with the expected tensor `name`; tolerance abs_tol + rel_tol * max|expected|.
static void expect_close(const char *name, const tensor *got, double abs_tol, double rel_tol) {
    double max_abs, max_diff = fixture_max_diff(expected_path, name, got, &max_abs);
    double tol = abs_tol + rel_tol * max_abs;
    printf("  %-58s max abs diff %.3g (tol %.3g)\n", name, max_diff, tol);
    if (!(max_diff <= tol)) fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g): %s", name, max_diff, tol, err_msg());
}

static tensor *input(const char *name) {
    tensor *t = fixture_tensor_in(fixture_dir, "inputs.safetensors", name);
    if (!t) fail_msg("%s", err_msg());
    return t;
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

    snprintf(expected_path, sizeof expected_path, "%s/expected.safetensors", fixture_dir);
    st_file *expected = st_open(expected_path);
    if (!expected) fail_msg("%s", err_msg());
    tensor_scope_begin();
    tensor *img = clip_encode_image(m, input("images"), false);
    tensor *txt = clip_encode_text(m, input("tokens"), false);
    const double feat_tol = 2e-5;
    expect_close("image_features", img, feat_tol, 0);
    expect_close("text_features", txt, feat_tol, 0);
    tensor *img_n = tensor_l2_normalize(img, -1), *txt_n = tensor_l2_normalize(txt, -1);
    expect_close("image_features_normed", img_n, feat_tol, 0);
    expect_close("text_features_normed", txt_n, feat_tol, 0);
    tensor *scale = tensor_exp(m->logit_scale);
    expect_close("logit_scale", scale, feat_tol, 0);
    tensor *logits_per_image = tensor_mul(scale, tensor_matmul(img_n, tensor_transpose(txt_n, 0, 1)));
    tensor *logits_per_text = tensor_transpose(logits_per_image, 0, 1);
    expect_close("logits_per_image", logits_per_image, feat_tol, 0);
    expect_close("logits_per_text", logits_per_text, feat_tol, 0);
    tensor *labels = tensor_arange(tensor_size(img, 0), TENSOR_I64, TENSOR_CPU);
    tensor *loss = tensor_mul_scalar(tensor_add(tensor_cross_entropy(logits_per_image, labels),
                                                tensor_cross_entropy(logits_per_text, labels)), 0.5);
    expect_close("clip_loss", loss, feat_tol, 0);
    assert_int_equal(tensor_backward(loss, NULL), 0);

    int n_grads = 0;
    for (int i = 0; i < st_count(expected); i++) {
        const char *key = st_get(expected, i)->name;
        if (strncmp(key, "grad.", 5) != 0) continue;
        param *p = clip_model_find_param(m, key + 5);
        if (!p) fail_msg("expected.safetensors: %s names no parameter of the model", key);
        expect_close(key, tensor_grad(p->value), 1e-5, 1e-4);
        n_grads++;
    }
    assert_true(n_grads > 0);
    tensor_scope_end();
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
