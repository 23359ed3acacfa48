// Parity of the ModifiedResNet towers (model/resnet.h) with OpenCLIP v2.20.0 on a fixture folder
// of ../shared/fixtures/openclip-rn's layout (its README): in training mode the features, the CLIP
// loss, every parameter's gradient and every BatchNorm's running statistics after the forward; in
// evaluation mode the image features (running statistics). Tolerance, the README's: 1e-6 + 1e-4 *
// max|expected| per tensor. Also the buffers' place (out of the trained list), the strict load of
// a state dict missing a BatchNorm key, a save/load round trip of the buffers, and resnet_lock.
// Usage: test_rn_parity FIXTURE_DIR
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
#include "tmpdir.h"

static const char *fixture_dir;
static char expected_path[1024], weights_path[1024];

static void expect_close(const char *name, const tensor *got) {
    double max_abs, max_diff = fixture_max_diff(expected_path, name, got, &max_abs);
    double tol = 1e-6 + 1e-4 * max_abs;
    printf("  %-58s max abs diff %.3g (tol %.3g)\n", name, max_diff, tol);
    if (!(max_diff <= tol)) fail_msg("%s differs from OpenCLIP by %.3g (tolerance %.3g): %s", name, max_diff, tol, err_msg());
}

static tensor *input(const char *name) {
    tensor *t = fixture_tensor_in(fixture_dir, "inputs.safetensors", name);
    if (!t) fail_msg("%s", err_msg());
    return t;
}

static clip_model *load_model(void) {
    char path[1024];
    clip_config cfg;
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    if (clip_config_load(path, &cfg) != 0) fail_msg("%s", err_msg());
    assert_true(clip_config_is_resnet(&cfg));
    clip_model *m = clip_model_init(&cfg, 0);
    assert_non_null(m);
    assert_non_null(m->resnet);
    if (clip_model_load(m, weights_path) != 0) fail_msg("%s", err_msg());
    return m;
}

static int64_t stored_counter(const char *key) {
    st_file *f = st_open(weights_path);
    assert_non_null(f);
    const st_tensor *t = st_find(f, key);
    assert_non_null(t);
    int64_t v;
    memcpy(&v, t->data, sizeof v);
    st_close(f);
    return v;
}

static void test_train_forward_gradients_and_stats(void **state) {
    (void)state;
    clip_model *m = load_model();
    clip_model_set_training(m, true);
    tensor_scope_begin();
    tensor *img = clip_encode_image(m, input("images"), false);
    tensor *txt = clip_encode_text(m, input("tokens"), false);
    expect_close("image_features", img);
    expect_close("text_features", txt);
    tensor *img_n = tensor_l2_normalize(img, -1), *txt_n = tensor_l2_normalize(txt, -1);
    expect_close("image_features_normed", img_n);
    expect_close("text_features_normed", txt_n);
    tensor *scale = tensor_exp(m->logit_scale);
    expect_close("logit_scale", scale);
    tensor *logits_per_image = tensor_mul(scale, tensor_matmul(img_n, tensor_transpose(txt_n, 0, 1)));
    expect_close("logits_per_image", logits_per_image);
    expect_close("logits_per_text", tensor_transpose(logits_per_image, 0, 1));
    tensor *labels = tensor_arange(tensor_size(img, 0), TENSOR_I64, TENSOR_CPU);
    tensor *loss = tensor_mul_scalar(tensor_add(tensor_cross_entropy(logits_per_image, labels),
                                                tensor_cross_entropy(tensor_transpose(logits_per_image, 0, 1), labels)),
                                     0.5);
    expect_close("clip_loss", loss);
    assert_int_equal(tensor_backward(loss, NULL), 0);
    // Every trained parameter has its OpenCLIP gradient, and nothing else is trained.
    for (int i = 0; i < m->params.n; i++) {
        char key[512];
        snprintf(key, sizeof key, "grad.%s", m->params.items[i].name);
        expect_close(key, tensor_grad(m->params.items[i].value));
    }
    for (int i = 0; i < m->buffers.n; i++) assert_false(tensor_requires_grad(m->buffers.items[i].value));
    // The running statistics after the one training forward; the counters one further.
    for (int i = 0; i < m->resnet->n_bns; i++) {
        const resnet_bn *bn = m->resnet->bns[i];
        char key[512], counter[512];
        snprintf(key, sizeof key, "bn_after.%s.running_mean", bn->key);
        expect_close(key, bn->running_mean);
        snprintf(key, sizeof key, "bn_after.%s.running_var", bn->key);
        expect_close(key, bn->running_var);
        snprintf(counter, sizeof counter, "%s.num_batches_tracked", bn->key);
        assert_int_equal(bn->num_batches_tracked, stored_counter(counter) + 1);
    }
    assert_true(m->resnet->n_bns > 0);
    tensor_scope_end();
    clip_model_free(m);
}

static void test_eval_features(void **state) {
    (void)state;
    clip_model *m = load_model();
    tensor_scope_begin();  // evaluation is the default mode
    expect_close("eval.image_features", clip_encode_image(m, input("images"), false));
    tensor_scope_end();
    clip_model_free(m);
}

// A copy of the fixture's weights without `drop`.
static void write_without(const char *drop, const char *path) {
    st_file *f = st_open(weights_path);
    assert_non_null(f);
    st_writer *w = st_writer_init();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (strcmp(t->name, drop) != 0) assert_int_equal(st_writer_add(w, t->name, t->dtype, t->shape, t->ndim, t->data), 0);
    }
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);
    st_close(f);
}

static void test_missing_buffer_keys(void **state) {
    (void)state;
    clip_model *m = load_model();
    const char *keys[] = {"visual.layer1.0.bn2.running_var", "visual.bn1.num_batches_tracked"};
    for (int i = 0; i < 2; i++) {
        write_without(keys[i], tmpdir_path("partial.safetensors"));
        assert_int_equal(clip_model_load(m, tmpdir_path("partial.safetensors")), -1);
        printf("  %s\n", err_msg());
        assert_non_null(strstr(err_msg(), keys[i]));
        assert_non_null(strstr(err_msg(), "missing key"));
    }
    clip_model_free(m);
}

// The buffers survive a save and a load (OpenCLIP's keys, num_batches_tracked as I64).
static void test_save_round_trip(void **state) {
    (void)state;
    clip_model *m = load_model();
    clip_model_set_training(m, true);
    tensor_scope_begin();
    assert_non_null(clip_encode_image(m, input("images"), false));  // moves the statistics
    tensor_scope_end();
    assert_int_equal(clip_model_save(m, tmpdir_path("saved.safetensors"), NULL), 0);
    st_file *f = st_open(tmpdir_path("saved.safetensors"));
    assert_non_null(f);
    const st_tensor *nbt = st_find(f, "visual.layer1.0.downsample.1.num_batches_tracked");
    assert_non_null(nbt);
    assert_int_equal(nbt->dtype, ST_DTYPE_I64);
    assert_int_equal(nbt->ndim, 0);
    st_close(f);
    clip_model *again = load_model();
    if (clip_model_load(again, tmpdir_path("saved.safetensors")) != 0) fail_msg("%s", err_msg());
    for (int i = 0; i < m->resnet->n_bns; i++) {
        assert_int_equal(again->resnet->bns[i]->num_batches_tracked, m->resnet->bns[i]->num_batches_tracked);
        tensor_scope_begin();
        double d = 1;
        assert_int_equal(tensor_item(tensor_max_dim(tensor_abs(tensor_sub(again->resnet->bns[i]->running_var,
                                                                           m->resnet->bns[i]->running_var)),
                                                    0, false),
                                     &d),
                         0);
        assert_true(d == 0);
        tensor_scope_end();
    }
    clip_model_free(again);
    clip_model_free(m);
}

// OpenCLIP's ModifiedResNet.lock: the whole tower frozen (no partial locking), and with
// freeze_bn_stats the BatchNorms keep to their running statistics even in training mode.
static void test_lock(void **state) {
    (void)state;
    clip_model *m = load_model();
    int64_t all = m->params.n_trainable;
    assert_int_equal(resnet_lock(m->resnet, &m->params, 1, false), -1);
    assert_non_null(strstr(err_msg(), "--lock-image-unlocked-groups 1"));
    assert_int_equal(m->params.n_trainable, all);
    assert_int_equal(resnet_lock(m->resnet, &m->params, 0, true), 0);
    for (int i = 0; i < m->params.n; i++) {
        const param *p = &m->params.items[i];
        assert_int_equal(p->frozen, strncmp(p->name, "visual.", 7) == 0);
    }
    assert_true(m->params.n_trainable < all && m->params.n_trainable > 0);
    clip_model_set_training(m, true);
    tensor_scope_begin();
    expect_close("eval.image_features", clip_encode_image(m, input("images"), false));
    tensor_scope_end();
    char counter[512];
    snprintf(counter, sizeof counter, "%s.num_batches_tracked", m->resnet->bns[0]->key);
    assert_int_equal(m->resnet->bns[0]->num_batches_tracked, stored_counter(counter));
    clip_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    snprintf(expected_path, sizeof expected_path, "%s/expected.safetensors", fixture_dir);
    snprintf(weights_path, sizeof weights_path, "%s/weights.safetensors", fixture_dir);
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_forward_gradients_and_stats),
        cmocka_unit_test(test_eval_features),
        cmocka_unit_test(test_missing_buffer_keys),
        cmocka_unit_test(test_save_round_trip),
        cmocka_unit_test(test_lock),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
