// Tests of model/clip.c beyond the OpenCLIP parity test: parameter names match OpenCLIP's state
// dict, save/load round trips, strict loading errors name the key, duplicate captions encoded once
// give the same features and gradients, OpenCLIP's initialisation scales, tower locking, uint8
// images normalized on the device, bf16 weights, and gradient checkpointing (the same gradients
// with less memory).
// Usage: test_model FIXTURE_DIR
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "model/clip.h"
#include "model/safetensors.h"
#include "fixture.h"

static const char *fixture_dir;
static clip_config cfg;

static clip_model *fixture_model(void) {
    clip_model *m = clip_model_init(&cfg, 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/weights.safetensors", fixture_dir);
    if (!m || clip_model_load(m, path) != 0) fail_msg("%s", err_msg());
    return m;
}

static void test_names_match_openclip_state_dict(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/weights.safetensors", fixture_dir);
    st_file *f = st_open(path);
    assert_non_null(f);
    clip_model *m = clip_model_init(&cfg, 1);
    assert_int_equal(m->params.n, st_count(f));
    for (int i = 0; i < m->params.n; i++) {
        const st_tensor *t = st_find(f, m->params.items[i].name);
        if (!t) fail_msg("parameter %s is not an OpenCLIP key", m->params.items[i].name);
        assert_int_equal(tensor_numel(m->params.items[i].value), t->numel);
    }
    st_close(f);
    clip_model_free(m);
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    clip_model *a = fixture_model(), *b = clip_model_init(&cfg, 2);
    char path[] = "/tmp/clipc_test_model_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(clip_model_save(a, path, NULL), 0);
    assert_int_equal(clip_model_load(b, path), 0);
    st_file *f = st_open(path);
    assert_non_null(st_metadata(f, "clipc.config"));
    assert_string_equal(st_metadata(f, "format"), "pt");
    st_close(f);
    for (int i = 0; i < a->params.n; i++) {
        tensor_scope_begin();
        double diff;
        tensor_item(tensor_norm(tensor_sub(a->params.items[i].value, b->params.items[i].value)), &diff);
        assert_true(diff == 0);
        tensor_scope_end();
    }
    unlink(path);
    clip_model_free(a);
    clip_model_free(b);
}

static void test_strict_load_names_the_key(void **state) {
    (void)state;
    clip_model *m = fixture_model();
    char src[1024], path[] = "/tmp/clipc_test_model_XXXXXX";
    snprintf(src, sizeof src, "%s/weights.safetensors", fixture_dir);
    int fd = mkstemp(path);
    close(fd);
    st_file *f = st_open(src);
    // Missing key: all but ln_final.bias. Unexpected key: an extra tensor. Wrong shape: a resized one.
    const char *cases[3] = {"missing", "unexpected", "shape"};
    for (int c = 0; c < 3; c++) {
        st_writer *w = st_writer_init();
        for (int i = 0; i < st_count(f); i++) {
            const st_tensor *t = st_get(f, i);
            if (c == 0 && !strcmp(t->name, "ln_final.bias")) continue;
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            if (c == 2 && !strcmp(t->name, "visual.proj")) shape[0] -= 1;
            st_writer_add(w, t->name, t->dtype, shape, t->ndim, t->data);
        }
        float extra = 1;
        if (c == 1) st_writer_add(w, "visual.extra_head", ST_DTYPE_F32, NULL, 0, &extra);
        assert_int_equal(st_writer_write(w, path), 0);
        st_writer_free(w);
        assert_int_equal(clip_model_load(m, path), -1);
        const char *expect[3] = {"missing key 'ln_final.bias'", "unexpected key 'visual.extra_head'", "visual.proj: shape"};
        if (!strstr(err_msg(), expect[c]) || !strstr(err_msg(), path))
            fail_msg("%s case: got '%s'", cases[c], err_msg());
    }
    st_close(f);
    unlink(path);
    clip_model_free(m);
}

// Features and every parameter's gradient (concatenated in parameter order, zeros where a
// parameter gets none) of a loss on text features, computed with or without deduplication.
static void text_features_and_grad(clip_model *m, const int64_t *tokens, int64_t B, bool host, float *feat, float *grad) {
    int64_t C = cfg.text.context_length, E = cfg.embed_dim;
    int64_t shape[2] = {B, C};
    tensor_scope_begin();
    tensor *t = host ? clip_encode_text_host(m, tokens, B, true)
                     : clip_encode_text(m, tensor_from_host(tokens, shape, 2, TENSOR_I64, false), true);
    tensor *w = tensor_arange(B * E, TENSOR_F32, TENSOR_CPU);
    int64_t fshape[2] = {B, E};
    tensor *loss = tensor_sum(tensor_mul(t, tensor_reshape(w, fshape, 2)));
    assert_int_equal(tensor_backward(loss, NULL), 0);
    assert_int_equal(tensor_to_host(t, feat, (size_t)(B * E) * sizeof(float)), 0);
    for (int i = 0; i < m->params.n; i++) {
        size_t n = (size_t)tensor_numel(m->params.items[i].value);
        tensor *g = tensor_grad(m->params.items[i].value);
        if (g) assert_int_equal(tensor_to_host(g, grad, n * sizeof(float)), 0);
        else memset(grad, 0, n * sizeof(float));
        grad += n;
    }
    tensor_scope_end();
    assert_int_equal(param_list_zero_grad(&m->params), 0);
}

// Where a parameter starts in text_features_and_grad's concatenation, and the total length.
static size_t param_offset(const clip_model *m, int upto) {
    size_t at = 0;
    for (int i = 0; i < upto; i++) at += (size_t)tensor_numel(m->params.items[i].value);
    return at;
}

static void test_duplicate_captions_encoded_once(void **state) {
    (void)state;
    clip_model *m = fixture_model();
    int64_t C = cfg.text.context_length, B = 6, E = cfg.embed_dim;
    int64_t *tokens = calloc((size_t)(B * C), sizeof(int64_t));
    int64_t rows[3][4] = {{49406, 320, 1929, 49407}, {49406, 530, 49407, 0}, {49406, 7, 8, 49407}};
    int pick[6] = {0, 1, 0, 2, 1, 0};  // captions 0 and 1 repeat, caption 2 does not
    for (int b = 0; b < B; b++) memcpy(tokens + b * C, rows[pick[b]], sizeof rows[0]);
    size_t total = param_offset(m, m->params.n);
    float *f1 = malloc((size_t)(B * E) * sizeof(float)), *f2 = malloc((size_t)(B * E) * sizeof(float));
    float *g1 = malloc(total * sizeof(float)), *g2 = malloc(total * sizeof(float));
    text_features_and_grad(m, tokens, B, false, f1, g1);
    text_features_and_grad(m, tokens, B, true, f2, g2);
    for (int64_t i = 0; i < B * E; i++) assert_float_equal(f1[i], f2[i], 1e-6);
    // Every gradient, those that the repeated captions reach included (their tokens' embedding
    // rows are non-zero). Summation order differs (one row with its copies summed vs copies
    // apart): float32 noise only.
    const float *emb = g2 + param_offset(m, (int)(clip_model_find_param(m, "token_embedding.weight") - m->params.items));
    for (int64_t token = 320; token <= 530; token += 210) {
        double norm = 0;
        for (int k = 0; k < cfg.text.width; k++) norm += fabs(emb[token * cfg.text.width + k]);
        assert_true(norm > 0);
    }
    for (size_t i = 0; i < total; i++)
        if (fabs(g1[i] - g2[i]) > 1e-3 * (1 + fabs(g1[i]))) fail_msg("gradient %zu: %g vs %g", i, g1[i], g2[i]);
    free(f1), free(f2), free(g1), free(g2);
    free(tokens);
    clip_model_free(m);
}

// Captions of every length from 1 to the context, three of each in a scrambled order: the text
// tower run in length groups gives the features and gradients of the full-context computation.
static void test_text_tower_at_each_caption_length(void **state) {
    (void)state;
    clip_model *m = fixture_model();
    int64_t C = cfg.text.context_length, B = 3 * C, E = cfg.embed_dim;
    int64_t *tokens = calloc((size_t)(B * C), sizeof(int64_t)), *len = malloc((size_t)B * sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) {
        int64_t L = 1 + (b * 37) % C;  // 37 is prime to C = 77: every length three times
        int64_t *row = tokens + b * C;
        for (int64_t i = 0; i + 1 < L; i++) row[i] = i ? 1 + (b * 7919 + i * 104729) % 49000 : 49406;
        row[L - 1] = 49407;  // EOT
        len[b] = L;
    }
    int64_t *sorted = malloc((size_t)B * sizeof(int64_t)), *ends = malloc((size_t)B * sizeof(int64_t));
    for (int64_t i = 0; i < B; i++) sorted[i] = 1 + i / 3;
    int64_t groups = clip_text_groups(sorted, B, cfg.text.width, false, ends);
    assert_true(groups > 1);  // the test exercises the grouping
    assert_int_equal(ends[groups - 1], B);
    size_t total = param_offset(m, m->params.n);
    float *f1 = malloc((size_t)(B * E) * sizeof(float)), *f2 = malloc((size_t)(B * E) * sizeof(float));
    float *g1 = malloc(total * sizeof(float)), *g2 = malloc(total * sizeof(float));
    text_features_and_grad(m, tokens, B, false, f1, g1);  // one prefix: the whole context
    text_features_and_grad(m, tokens, B, true, f2, g2);
    for (int64_t i = 0; i < B * E; i++)
        if (fabs(f1[i] - f2[i]) > 1e-5) fail_msg("feature %lld (caption of %lld tokens): %g vs %g", (long long)i, (long long)len[i / E], f1[i], f2[i]);
    double diff = 0, norm = 0;
    for (size_t i = 0; i < total; i++) diff += (g1[i] - g2[i]) * (double)(g1[i] - g2[i]), norm += g1[i] * (double)g1[i];
    if (sqrt(diff / norm) > 1e-5) fail_msg("gradients differ by %.3g relative", sqrt(diff / norm));
    free(f1), free(f2), free(g1), free(g2), free(sorted), free(ends), free(len), free(tokens);
    clip_model_free(m);
}

// Groups end where lengths change, cover every caption, and cost no more padded tokens than one
// group; equal lengths make one group; a launch-bound device merges at least as much.
static void test_text_groups(void **state) {
    (void)state;
    enum { N = 256 };
    int64_t len[N], ends[N];
    for (int i = 0; i < N; i++) len[i] = 13;
    assert_int_equal(clip_text_groups(len, N, 512, false, ends), 1);
    assert_int_equal(ends[0], N);
    for (int i = 0; i < N; i++) len[i] = i < N - 13 ? 5 + (i * 27) / (N - 13) : 77;  // web-like, sorted
    int64_t cpu = clip_text_groups(len, N, 512, false, ends), padded = 0;
    for (int64_t g = 0, begin = 0; g < cpu; begin = ends[g++]) {
        assert_true(ends[g] > begin && (ends[g] == N || len[ends[g]] != len[ends[g] - 1]));
        padded += (ends[g] - begin) * len[ends[g] - 1];
    }
    assert_int_equal(ends[cpu - 1], N);
    printf("  web-like lengths, width 512: %lld groups on the CPU, %lld padded tokens (one group: %d)\n", (long long)cpu,
           (long long)padded, N * 77);
    assert_true(cpu > 1 && padded < N * 77 / 2);
    assert_true(clip_text_groups(len, N, 512, true, ends) <= cpu);
}

static double std_of(const tensor *t) {
    double v;
    tensor_scope_begin();
    tensor *c = tensor_sub(t, tensor_mean(t));
    tensor_item(tensor_sqrt(tensor_mean(tensor_mul(c, c))), &v);
    tensor_scope_end();
    return v;
}

static void test_openclip_initialisation(void **state) {
    (void)state;
    clip_config big = cfg;
    big.text.width = 256, big.text.heads = 4, big.text.layers = 3;
    clip_model *m = clip_model_init(&big, 7);
    double W = big.text.width, L = big.text.layers;
    assert_float_equal(std_of(m->token_embedding), 0.02, 0.002);
    assert_float_equal(std_of(m->text_pos), 0.01, 0.001);
    assert_float_equal(std_of(m->text_blocks[0].in_proj_w), 1 / sqrt(W), 0.1 / sqrt(W));
    assert_float_equal(std_of(m->text_blocks[0].proj_w), 1 / sqrt(W) / sqrt(2 * L), 0.1 / sqrt(W) / sqrt(2 * L));
    assert_float_equal(std_of(m->text_blocks[0].fc_w), 1 / sqrt(2 * W), 0.1 / sqrt(2 * W));
    double ls;
    tensor_item(m->logit_scale, &ls);
    assert_float_equal(ls, log(1 / 0.07), 1e-6);
    // Same seed, same model; another seed, another model.
    clip_model *same = clip_model_init(&big, 7), *other = clip_model_init(&big, 8);
    assert_float_equal(std_of(same->token_embedding), std_of(m->token_embedding), 0);
    assert_true(std_of(other->token_embedding) != std_of(m->token_embedding));
    clip_model_free(m);
    clip_model_free(same);
    clip_model_free(other);
}

static void test_lock_image_freezes_visual_only(void **state) {
    (void)state;
    clip_model *m = clip_model_init(&cfg, 1);
    assert_int_equal(clip_model_lock_image(m), 0);
    for (int i = 0; i < m->params.n; i++) {
        bool visual = strncmp(m->params.items[i].name, "visual.", 7) == 0;
        assert_int_equal(m->params.items[i].frozen, visual);
        assert_int_equal(tensor_requires_grad(m->params.items[i].value), !visual);
    }
    clip_model_free(m);
}

static bool trainable(clip_model *m, const char *name) {
    param *p = clip_model_find_param(m, name);
    if (!p) fail_msg("no parameter %s", name);
    assert_int_equal(tensor_requires_grad(p->value), !p->frozen);
    return !p->frozen;
}

// The flat buffer holds the trainable parameters first: its trainable part is their total size.
static void assert_packed(const clip_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++)
        if (!m->params.items[i].frozen) n += tensor_numel(m->params.items[i].value);
    assert_int_equal(m->params.n_trainable, n);
}

static clip_model *locked(bool image, int unlocked) {
    clip_model *m = clip_model_init(&cfg, 1);
    int rc = image ? clip_model_lock_image_groups(m, unlocked, false) : clip_model_lock_text_groups(m, unlocked, true);
    if (rc != 0) fail_msg("%s", err_msg());
    assert_packed(m);
    return m;
}

// --lock-image-unlocked-groups and --lock-text-unlocked-layers leave OpenCLIP's last N layer groups
// of a locked tower trainable, and nothing of the other tower or the logit scale is frozen.
static void test_lock_groups(void **state) {
    (void)state;
    int Lv = cfg.vision.layers, Lt = cfg.text.layers;
    char v_last[128], v_prev[128], t_last[128], t_prev[128];
    snprintf(v_last, sizeof v_last, "visual.transformer.resblocks.%d.mlp.c_fc.weight", Lv - 1);
    snprintf(v_prev, sizeof v_prev, "visual.transformer.resblocks.%d.ln_1.weight", Lv - 2);
    snprintf(t_last, sizeof t_last, "transformer.resblocks.%d.attn.in_proj_weight", Lt - 1);
    snprintf(t_prev, sizeof t_prev, "transformer.resblocks.%d.ln_2.bias", Lt - 2);
    clip_model *m = locked(true, 1);  // [proj]
    assert_true(trainable(m, "visual.proj") && !trainable(m, "visual.ln_post.weight") && !trainable(m, v_last));
    assert_true(trainable(m, "text_projection") && trainable(m, t_last) && trainable(m, "logit_scale"));
    clip_model_free(m);
    m = locked(true, 2);  // + [last block, ln_post]
    assert_true(trainable(m, v_last) && trainable(m, "visual.ln_post.bias") && !trainable(m, v_prev));
    assert_true(!trainable(m, "visual.conv1.weight") && !trainable(m, "visual.class_embedding"));
    clip_model_free(m);
    m = locked(true, Lv + 1);  // all but [conv1, class and positional embeddings, ln_pre]
    assert_true(trainable(m, v_prev) && !trainable(m, "visual.positional_embedding") && !trainable(m, "visual.ln_pre.bias"));
    clip_model_free(m);
    m = locked(true, Lv + 2);
    assert_true(trainable(m, "visual.conv1.weight") && trainable(m, "visual.ln_pre.weight"));
    clip_model_free(m);
    m = locked(true, 0);  // the whole tower, as clip_model_lock_image
    assert_true(!trainable(m, "visual.proj") && trainable(m, "positional_embedding"));
    clip_model_free(m);

    m = locked(false, 1);  // [text_projection]
    assert_true(trainable(m, "text_projection") && !trainable(m, "ln_final.weight") && !trainable(m, t_last));
    assert_true(trainable(m, v_last) && trainable(m, "logit_scale"));
    clip_model_free(m);
    m = locked(false, 2);  // + [last block, ln_final]: its LayerNorms too
    assert_true(trainable(m, t_last) && trainable(m, "ln_final.bias") && !trainable(m, t_prev));
    assert_true(!trainable(m, "token_embedding.weight") && !trainable(m, "positional_embedding"));
    clip_model_free(m);
    m = locked(false, Lt + 2);
    assert_true(trainable(m, "token_embedding.weight") && trainable(m, "positional_embedding") && trainable(m, t_prev));
    clip_model_free(m);
    m = clip_model_init(&cfg, 1);
    assert_int_equal(clip_model_lock_text_groups(m, -1, false), -1);
    clip_model_free(m);
}

// Patch dropout keeps the class token and a uniform subset of K = max(1, floor(N (1 - p))) patches
// chosen by each sample's seed alone; keeping every token gives clip_encode_image's features.
static void test_patch_dropout(void **state) {
    (void)state;
    clip_config c = cfg;
    c.vision.patch_dropout = 0.5;
    clip_model *m = clip_model_init(&c, 1);
    int64_t G = c.vision.image_size / c.vision.patch_size, N = G * G, K = N / 2;
    uint64_t seeds[3] = {11, 12, 11};
    int64_t *keep = malloc(3 * (size_t)(N + 1) * sizeof(int64_t));
    assert_int_equal(clip_patch_dropout_keep(m, seeds, 3, keep), K + 1);
    for (int b = 0; b < 3; b++) {
        const int64_t *row = keep + b * (K + 1);
        assert_int_equal(row[0], 0);
        for (int64_t i = 1; i <= K; i++) assert_true(row[i] > row[i - 1] && row[i] <= N);
    }
    assert_memory_equal(keep, keep + 2 * (K + 1), (size_t)(K + 1) * sizeof(int64_t));
    assert_memory_not_equal(keep, keep + (K + 1), (size_t)(K + 1) * sizeof(int64_t));
    // The features on every token in order equal the tower's; on the kept ones they differ.
    int64_t S = c.vision.image_size, shape[4] = {2, 3, S, S};
    tensor_generator *g = tensor_generator_new(5, TENSOR_CPU);
    tensor *images = tensor_normal(shape, 4, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    int64_t *all = malloc(2 * (size_t)(N + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < 2 * (N + 1); i++) all[i] = i % (N + 1);
    tensor *full = clip_encode_image(m, images, true), *same = clip_encode_image_keep(m, images, all, N + 1, true);
    tensor *dropped = clip_encode_image_keep(m, images, keep, K + 1, true);
    double same_diff = 0, dropped_diff = 0;
    assert_int_equal(tensor_item(tensor_norm(tensor_sub(full, same)), &same_diff), 0);
    assert_int_equal(tensor_item(tensor_norm(tensor_sub(full, dropped)), &dropped_diff), 0);
    assert_true(same_diff < 1e-6 && dropped_diff > 1e-3);
    c.vision.patch_dropout = 0.999;  // at least one patch stays
    clip_model *few = clip_model_init(&c, 1);
    assert_int_equal(clip_patch_dropout_keep(few, seeds, 1, keep), 2);
    tensor_generator_free(g);
    free(keep), free(all);
    clip_model_free(m), clip_model_free(few);
}

// uint8 images normalized on the device give exactly OpenCLIP's (x / 255 - mean) / std in float32,
// as the loader's float output does.
static void test_uint8_images_normalized_on_device(void **state) {
    (void)state;
    clip_model *m = clip_model_init(&cfg, 1);
    int64_t S = cfg.vision.image_size, n = 2 * 3 * S * S;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f}, std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    uint8_t *bytes = tensor_host_alloc((size_t)n);
    float *got = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) bytes[i] = (uint8_t)(i * 7 + i / 5);
    tensor *x = clip_images_u8_to_device(m, bytes, 2, mean, std);
    assert_non_null(x);
    assert_int_equal(tensor_to_host(x, got, (size_t)n * sizeof(float)), 0);
    for (int64_t i = 0; i < n; i++) {
        int c = (int)(i / (S * S) % 3);
        float want = ((float)bytes[i] / 255.0f - mean[c]) / std[c];
        if (memcmp(&want, &got[i], sizeof want))
            fail_msg("element %lld: got %.9g, expected %.9g", (long long)i, got[i], want);
    }
    tensor_free(x);
    tensor_host_free(bytes);
    free(got);
    clip_model_free(m);
}

// bf16 weights (pure_bf16): every handle is kept, the towers compute in bf16 close to float32,
// and weights are saved and loaded as float32.
static void test_bf16_weights(void **state) {
    (void)state;
    clip_model *m = fixture_model(), *back = clip_model_init(&cfg, 2);
    tensor *conv = m->conv1_w;
    int64_t S = cfg.vision.image_size, shape[4] = {2, 3, S, S};
    tensor_generator *g = tensor_generator_new(5, TENSOR_CPU);
    tensor *images = tensor_normal(shape, 4, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    tensor *f32 = clip_encode_image(m, images, true);
    // Outside any scope, like every change to a model's parameters.
    assert_int_equal(clip_model_to_dtype(m, TENSOR_BF16), 0);
    assert_int_equal(clip_model_to_dtype(back, TENSOR_BF16), 0);
    assert_ptr_equal(m->conv1_w, conv);
    tensor_scope_begin();
    for (int i = 0; i < m->params.n; i++) assert_int_equal(tensor_get_dtype(m->params.items[i].value), TENSOR_BF16);
    tensor *bf16 = clip_encode_image(m, images, true);  // float32 images into bf16 weights
    assert_int_equal(tensor_get_dtype(bf16), TENSOR_BF16);
    double diff;
    assert_int_equal(tensor_item(tensor_norm(tensor_sub(tensor_to_dtype(bf16, TENSOR_F32), f32)), &diff), 0);
    assert_true(diff > 0 && diff < 0.05 * 2);  // two unit rows, bf16 rounding only
    char path[] = "/tmp/clipc_test_model_XXXXXX";
    close(mkstemp(path));
    assert_int_equal(clip_model_save(m, path, NULL), 0);
    st_file *f = st_open(path);
    assert_int_equal(st_find(f, "visual.proj")->dtype, ST_DTYPE_F32);
    st_close(f);
    assert_int_equal(clip_model_load(back, path), 0);
    for (int i = 0; i < m->params.n; i++) {
        tensor *d = tensor_sub(m->params.items[i].value, back->params.items[i].value);
        assert_int_equal(tensor_item(tensor_norm(tensor_to_dtype(d, TENSOR_F32)), &diff), 0);
        assert_true(diff == 0);
    }
    unlink(path);
    tensor_scope_end();
    tensor_free(images);
    tensor_free(f32);
    tensor_generator_free(g);
    clip_model_free(m);
    clip_model_free(back);
}

// The gradients (into grad) of a loss over both towers' features of B samples, and the growth of
// the process's resident peak over the forward and backward (bytes).
static int64_t clip_gradients(clip_model *m, const float *images, const int64_t *tokens, int64_t B, float *grad) {
    int64_t E = m->cfg.embed_dim, fshape[2] = {B, E};
    assert_int_equal(param_list_zero_grad(&m->params), 0);
    assert_int_equal(tensor_memory_peak_reset(TENSOR_CPU), 0);
    int64_t base = tensor_memory_peak(TENSOR_CPU);
    tensor_scope_begin();
    tensor *img = clip_encode_image(m, clip_images_to_device(m, images, B), true);
    tensor *txt = clip_encode_text_host(m, tokens, B, true);
    tensor *w = tensor_reshape(tensor_arange(B * E, TENSOR_F32, TENSOR_CPU), fshape, 2);
    tensor *loss = tensor_sum(tensor_mul(tensor_mul(img, txt), w));
    assert_int_equal(tensor_backward(loss, NULL), 0);
    tensor_scope_end();
    int64_t growth = tensor_memory_peak(TENSOR_CPU) - base;
    assert_int_equal(tensor_to_host(m->params.grad, grad, (size_t)m->params.n_trainable * sizeof(float)), 0);
    return growth;
}

// --grad-checkpointing (clip_model.grad_checkpointing) gives both towers' gradients of the plain
// graph, bit for bit on the CPU, while the peak memory of the step shrinks: a model of 8 blocks a
// tower keeps each block's input instead of its activations. (Checkpointed first, so that memory
// the plain run freed is not reused.)
static void test_grad_checkpointing(void **state) {
    (void)state;
    clip_config c = cfg;
    c.vision.layers = c.text.layers = 8;
    clip_model *m = clip_model_init(&c, 3);
    assert_non_null(m);
    int64_t B = 256, C = c.text.context_length, S = c.vision.image_size;
    float *images = malloc((size_t)(B * 3 * S * S) * sizeof(float));
    for (int64_t i = 0; i < B * 3 * S * S; i++) images[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    int64_t *tokens = calloc((size_t)(B * C), sizeof(int64_t));
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 4 + b % 12;
        tokens[b * C] = 49406, tokens[b * C + len - 1] = 49407;
        for (int64_t i = 1; i < len - 1; i++) tokens[b * C + i] = 1 + (b * 13 + i * 7) % 40000;
    }
    size_t n = (size_t)m->params.n_trainable;
    float *plain = malloc(n * sizeof(float)), *ckpt = malloc(n * sizeof(float));
    m->grad_checkpointing = true;
    int64_t ckpt_growth = clip_gradients(m, images, tokens, B, ckpt);
    m->grad_checkpointing = false;
    int64_t plain_growth = clip_gradients(m, images, tokens, B, plain);
    printf("  peak growth: %.1f MB plain, %.1f MB checkpointed\n", plain_growth / 1e6, ckpt_growth / 1e6);
    assert_memory_equal(plain, ckpt, n * sizeof(float));
    assert_true(ckpt_growth < plain_growth / 2);
    free(plain), free(ckpt), free(images), free(tokens);
    clip_model_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]), 2;
    fixture_dir = argv[1];
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", fixture_dir);
    if (clip_config_load(path, &cfg) != 0) return fprintf(stderr, "%s\n", err_msg()), 1;
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_match_openclip_state_dict),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_strict_load_names_the_key),
        cmocka_unit_test(test_duplicate_captions_encoded_once),
        cmocka_unit_test(test_text_tower_at_each_caption_length),
        cmocka_unit_test(test_text_groups),
        cmocka_unit_test(test_openclip_initialisation),
        cmocka_unit_test(test_lock_image_freezes_visual_only),
        cmocka_unit_test(test_lock_groups),
        cmocka_unit_test(test_patch_dropout),
        cmocka_unit_test(test_uint8_images_normalized_on_device),
        cmocka_unit_test(test_bf16_weights),
        cmocka_unit_test(test_grad_checkpointing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
