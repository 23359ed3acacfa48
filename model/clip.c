#include "model/clip.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"
#include "model/safetensors.h"
#include "model/weights.h"

#define LAYER_NORM_EPS 1e-5

// ---- parameter registry and initialisation ---------------------------------------------------

static tensor *add_param(clip_model *m, tensor *value, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static tensor *add_param(clip_model *m, tensor *value, const char *fmt, ...) {
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    size_t len = (size_t)vsnprintf(NULL, 0, fmt, ap) + 1;
    char *name = xmalloc(len);
    vsnprintf(name, len, fmt, again);
    va_end(again);
    va_end(ap);
    tensor *t = param_list_add(&m->params, name, value)->value;
    free(name);
    return t;
}

static tensor *normal(tensor_generator *g, double std, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return tensor_normal(shape, d1 ? 2 : 1, 0.0, std, TENSOR_F32, TENSOR_CPU, g);
}

static tensor *constant(double value, int64_t d0) {
    int64_t shape[1] = {d0};
    return tensor_full(shape, 1, value, TENSOR_F32, TENSOR_CPU);
}

// PyTorch's nn.Linear default weight: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)).
static tensor *linear_default(tensor_generator *g, int64_t out, int64_t in) {
    int64_t shape[2] = {out, in};
    double bound = 1.0 / sqrt((double)in);
    return tensor_uniform(shape, 2, -bound, bound, TENSOR_F32, TENSOR_CPU, g);
}

static tensor *xavier_uniform(tensor_generator *g, int64_t out, int64_t in) {
    int64_t shape[2] = {out, in};
    double bound = sqrt(6.0 / (double)(in + out));
    return tensor_uniform(shape, 2, -bound, bound, TENSOR_F32, TENSOR_CPU, g);
}

typedef struct {
    double attn_std, proj_std, fc_std;  // > 0: OpenCLIP's text-tower normal init; 0: PyTorch defaults
} block_init;

// A weight initialised as OpenCLIP's text tower does (normal with std) or, with std 0, as
// PyTorch's module defaults do (the image tower), drawn by `fallback`.
static tensor *weight(tensor_generator *g, double std, int64_t out, int64_t in,
                      tensor *(*fallback)(tensor_generator *, int64_t, int64_t)) {
    return std > 0 ? normal(g, std, out, in) : fallback(g, out, in);
}

static tensor *bias_default(tensor_generator *g, int64_t out, int64_t fan_in) {
    int64_t shape[1] = {out};
    double bound = 1.0 / sqrt((double)fan_in);
    return tensor_uniform(shape, 1, -bound, bound, TENSOR_F32, TENSOR_CPU, g);
}

static void init_block(clip_model *m, clip_block *b, const char *pre, int i, int64_t width,
                       int64_t hidden, block_init init, tensor_generator *g) {
    b->ln_1_w = add_param(m, constant(1, width), "%sresblocks.%d.ln_1.weight", pre, i);
    b->ln_1_b = add_param(m, constant(0, width), "%sresblocks.%d.ln_1.bias", pre, i);
    b->in_proj_w = add_param(m, weight(g, init.attn_std, 3 * width, width, xavier_uniform),
                             "%sresblocks.%d.attn.in_proj_weight", pre, i);
    b->in_proj_b = add_param(m, constant(0, 3 * width), "%sresblocks.%d.attn.in_proj_bias", pre, i);
    b->out_proj_w = add_param(m, weight(g, init.proj_std, width, width, linear_default),
                              "%sresblocks.%d.attn.out_proj.weight", pre, i);
    b->out_proj_b = add_param(m, constant(0, width), "%sresblocks.%d.attn.out_proj.bias", pre, i);
    b->ln_2_w = add_param(m, constant(1, width), "%sresblocks.%d.ln_2.weight", pre, i);
    b->ln_2_b = add_param(m, constant(0, width), "%sresblocks.%d.ln_2.bias", pre, i);
    b->fc_w = add_param(m, weight(g, init.fc_std, hidden, width, linear_default), "%sresblocks.%d.mlp.c_fc.weight", pre, i);
    b->fc_b = add_param(m, bias_default(g, hidden, width), "%sresblocks.%d.mlp.c_fc.bias", pre, i);
    b->proj_w = add_param(m, weight(g, init.proj_std, width, hidden, linear_default),
                          "%sresblocks.%d.mlp.c_proj.weight", pre, i);
    b->proj_b = add_param(m, bias_default(g, width, hidden), "%sresblocks.%d.mlp.c_proj.bias", pre, i);
}

static void init_image_tower(clip_model *m, tensor_generator *g) {
    const clip_config *c = &m->cfg;
    int W = c->vision.width, P = c->vision.patch_size, G = c->vision.image_size / P;
    double scale = 1.0 / sqrt((double)W);
    m->class_embedding = add_param(m, normal(g, scale, W, 0), "visual.class_embedding");
    m->visual_pos = add_param(m, normal(g, scale, (int64_t)G * G + 1, W), "visual.positional_embedding");
    m->visual_proj = add_param(m, normal(g, scale, W, c->embed_dim), "visual.proj");
    int64_t conv_shape[4] = {W, 3, P, P};
    double conv_bound = 1.0 / sqrt(3.0 * P * P);
    m->conv1_w = add_param(m, tensor_uniform(conv_shape, 4, -conv_bound, conv_bound, TENSOR_F32, TENSOR_CPU, g),
                           "visual.conv1.weight");
    m->ln_pre_w = add_param(m, constant(1, W), "visual.ln_pre.weight");
    m->ln_pre_b = add_param(m, constant(0, W), "visual.ln_pre.bias");
    int mlp = (int)(W * c->vision.mlp_ratio);
    m->visual_blocks = xcalloc((size_t)c->vision.layers, sizeof(clip_block));
    for (int i = 0; i < c->vision.layers; i++)
        init_block(m, &m->visual_blocks[i], "visual.transformer.", i, W, mlp, (block_init){0, 0, 0}, g);
    m->ln_post_w = add_param(m, constant(1, W), "visual.ln_post.weight");
    m->ln_post_b = add_param(m, constant(0, W), "visual.ln_post.bias");
}

static void init_text_tower(clip_model *m, tensor_generator *g) {
    const clip_config *c = &m->cfg;
    int W = c->text.width, L = c->text.layers;
    block_init init = {
        .attn_std = 1.0 / sqrt((double)W),
        .proj_std = 1.0 / sqrt((double)W) / sqrt(2.0 * L),
        .fc_std = 1.0 / sqrt(2.0 * W),
    };
    m->text_blocks = xcalloc((size_t)L, sizeof(clip_block));
    for (int i = 0; i < L; i++) init_block(m, &m->text_blocks[i], "transformer.", i, W, 4 * W, init, g);
    m->token_embedding = add_param(m, normal(g, 0.02, c->text.vocab_size, W), "token_embedding.weight");
    m->ln_final_w = add_param(m, constant(1, W), "ln_final.weight");
    m->ln_final_b = add_param(m, constant(0, W), "ln_final.bias");
}

static int pack_buffers(clip_model *m, tensor_device dev) {
    return m->buffers.n > 0 ? param_list_pack(&m->buffers, dev) : 0;
}

clip_model *clip_model_init(const clip_config *cfg, uint64_t seed) {
    clip_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->device = TENSOR_CPU;
    param_list_init(&m->params);
    tensor_generator *g = tensor_generator_new(seed, TENSOR_CPU);
    int W = cfg->text.width;
    // CLIP's own parameters come first in OpenCLIP's state dict, then the towers.
    m->text_pos = add_param(m, normal(g, 0.01, cfg->text.context_length, W), "positional_embedding");
    m->text_projection = add_param(m, normal(g, 1.0 / sqrt((double)W), W, cfg->embed_dim), "text_projection");
    m->logit_scale = add_param(m, tensor_scalar(cfg->init_logit_scale, TENSOR_F32, TENSOR_CPU), "logit_scale");
    if (cfg->init_logit_bias_set)
        m->logit_bias = add_param(m, tensor_scalar(cfg->init_logit_bias, TENSOR_F32, TENSOR_CPU), "logit_bias");
    param_list_init(&m->buffers);
    if (clip_config_is_resnet(cfg))
        m->resnet = resnet_tower_init(cfg, &m->params, &m->buffers, g);
    else
        init_image_tower(m, g);
    init_text_tower(m, g);
    tensor_generator_free(g);
    if (param_list_pack(&m->params, TENSOR_CPU) != 0 || pack_buffers(m, TENSOR_CPU) != 0) {
        err_prefix("initialising %s", cfg->name);
        clip_model_free(m);
        return NULL;
    }
    return m;
}

void clip_model_free(clip_model *m) {
    if (!m) return;
    param_list_free(&m->params);
    param_list_free(&m->buffers);
    resnet_tower_free(m->resnet);
    free(m->visual_blocks);
    free(m->text_blocks);
    free(m);
}

param *clip_model_find_param(clip_model *m, const char *name) { return param_list_find(&m->params, name); }

int clip_model_to_device(clip_model *m, tensor_device dev) {
    if (param_list_pack(&m->params, dev) != 0 || pack_buffers(m, dev) != 0) return -1;
    m->device = dev;
    return 0;
}

void clip_model_set_training(const clip_model *m, bool training) {
    if (m->resnet) m->resnet->training = training;
}

void clip_model_set_update_stats(const clip_model *m, bool update) {
    if (m->resnet) m->resnet->update_stats = update;
}

void clip_model_set_bn_sync(const clip_model *m, tensor_reduce_fn reduce, void *ctx) {
    if (m->resnet) m->resnet->sync = (resnet_sync){reduce, ctx};
}

// The BatchNorm buffers follow (as OpenCLIP's model.to(dtype) converts floating buffers).
int clip_model_to_dtype(clip_model *m, tensor_dtype dtype) {
    if (param_list_pack_as(&m->params, m->device, dtype) != 0) return -1;
    return m->buffers.n > 0 ? param_list_pack_as(&m->buffers, m->device, dtype) : 0;
}

static int lock_prefix(clip_model *m, bool image) {
    for (int i = 0; i < m->params.n; i++) {
        param *p = &m->params.items[i];
        bool is_image = strncmp(p->name, "visual.", 7) == 0;
        bool shared = !strcmp(p->name, "logit_scale") || !strcmp(p->name, "logit_bias");
        if (!shared && is_image == image && param_set_frozen(p, true) != 0) return -1;
    }
    return clip_model_to_device(m, m->device);
}

int clip_model_lock_image(clip_model *m) { return lock_prefix(m, true); }
int clip_model_lock_text(clip_model *m) { return lock_prefix(m, false); }

// ---- partial locks (--lock-image-unlocked-groups, --lock-text-unlocked-layers) ----------------

static bool named(const char *name, const char *prefix) { return strncmp(name, prefix, strlen(prefix)) == 0; }

// The block number of "<blocks>N.<...>", or -1.
static int block_of(const char *name, const char *blocks) {
    if (!named(name, blocks)) return -1;
    char *end = NULL;
    long i = strtol(name + strlen(blocks), &end, 10);
    return end && *end == '.' ? (int)i : -1;
}

// The lock group of an image-tower parameter (OpenCLIP's VisionTransformer.lock: [conv1,
// class_embedding, positional_embedding, ln_pre], each block but the last, [last block, ln_post],
// [proj]); -1 for a parameter of no group, -2 for one outside the tower.
static int image_group(const clip_model *m, const char *name) {
    int L = m->cfg.vision.layers, b = block_of(name, "visual.transformer.resblocks.");
    if (!named(name, "visual.")) return -2;
    if (named(name, "visual.conv1.") || !strcmp(name, "visual.class_embedding") ||
        !strcmp(name, "visual.positional_embedding") || named(name, "visual.ln_pre.")) return 0;
    if (b >= 0) return 1 + b;
    if (named(name, "visual.ln_post.")) return L;
    return !strcmp(name, "visual.proj") ? L + 1 : -1;
}

// The same for the text tower (OpenCLIP's TextTransformer lock: [token_embedding,
// positional_embedding], each block but the last, [last block, ln_final], [text_projection]).
static int text_group(const clip_model *m, const char *name) {
    int L = m->cfg.text.layers, b = block_of(name, "transformer.resblocks.");
    if (named(name, "token_embedding.") || !strcmp(name, "positional_embedding")) return 0;
    if (b >= 0) return 1 + b;
    if (named(name, "ln_final.")) return L;
    return !strcmp(name, "text_projection") ? L + 1 : -2;
}

// Freezes every parameter of a tower's groups but the last `unlocked` of its n_groups, and repacks
// (frozen parameters move to the frozen part of the flat buffer).
static int lock_groups(clip_model *m, const char *tower, int (*group)(const clip_model *, const char *), int n_groups,
                       int unlocked) {
    for (int i = 0; i < m->params.n; i++) {
        param *p = &m->params.items[i];
        int g = group(m, p->name);
        if (g == -1) return err_set("%s lock: parameter '%s' belongs to no layer group of a ViT tower", tower, p->name);
        if (g >= 0 && param_set_frozen(p, g < n_groups - unlocked) != 0) return -1;
    }
    return clip_model_to_device(m, m->device);
}

int clip_model_lock_image_groups(clip_model *m, int unlocked_groups, bool freeze_bn_stats) {
    if (unlocked_groups < 0) return err_set("image tower lock: %d unlocked groups", unlocked_groups);
    if (m->resnet) return resnet_lock(m->resnet, &m->params, unlocked_groups, freeze_bn_stats);
    // A ViT has no BatchNorm: freeze_bn_stats does nothing (OpenCLIP's VisionTransformer.lock ignores it too).
    if (unlocked_groups == 0) return clip_model_lock_image(m);  // any tower
    return lock_groups(m, "image tower", image_group, m->cfg.vision.layers + 2, unlocked_groups);
}

int clip_model_lock_text_groups(clip_model *m, int unlocked_layers, bool freeze_layer_norm) {
    (void)freeze_layer_norm;  // LayerNorms are frozen with their group, as OpenCLIP's TextTransformer.lock
    if (unlocked_layers < 0) return err_set("text tower lock: %d unlocked layers", unlocked_layers);
    if (unlocked_layers == 0) return clip_model_lock_text(m);
    return lock_groups(m, "text tower", text_group, m->cfg.text.layers + 2, unlocked_layers);
}

// ---- forward ---------------------------------------------------------------------------------

static tensor *activation(const clip_model *m, const tensor *x) {
    return m->cfg.quick_gelu ? tensor_quick_gelu(x) : tensor_gelu(x);
}

// Multi-head self-attention on x (B, L, W) with q|k|v packed in in_proj. q, k, v are views of the
// one projection (B, L, 3, H, Dh) with the heads moved forward: strides (3LW, Dh, 3W, 1), cuDNN's
// packed QKV layout, which the fused attention kernels take as it is (shim/tensor.h,
// tensor_attention). unbind, not three selects: the backward stacks the three gradients into
// the projection's layout in one kernel, where each select would fill and copy a zeroed (B, L, 3W).
static tensor *self_attention(const clip_block *b, const tensor *x, int heads, bool causal) {
    int64_t B = tensor_size(x, 0), L = tensor_size(x, 1), W = tensor_size(x, 2), Dh = W / heads;
    tensor *qkv = tensor_linear(x, b->in_proj_w, b->in_proj_b);  // (B, L, 3W)
    int64_t split[5] = {B, L, 3, heads, Dh};
    tensor *part[3] = {NULL, NULL, NULL};  // q, k, v: (B, L, H, Dh)
    if (tensor_unbind(tensor_reshape(qkv, split, 5), 2, part, 3) != 0) return NULL;
    tensor *out = tensor_attention(tensor_transpose(part[0], 1, 2), tensor_transpose(part[1], 1, 2),
                                   tensor_transpose(part[2], 1, 2), causal);  // (B, H, L, Dh)
    int64_t merged[3] = {B, L, W};
    out = tensor_reshape(tensor_transpose(out, 1, 2), merged, 3);  // (B, L, W)
    return tensor_linear(out, b->out_proj_w, b->out_proj_b);
}

static tensor *residual_block(const clip_model *m, const clip_block *b, const tensor *x, int heads, bool causal) {
    tensor *h = tensor_layer_norm(x, b->ln_1_w, b->ln_1_b, LAYER_NORM_EPS);
    x = tensor_add(x, self_attention(b, h, heads, causal));
    h = tensor_layer_norm(x, b->ln_2_w, b->ln_2_b, LAYER_NORM_EPS);
    h = tensor_linear(activation(m, tensor_linear(h, b->fc_w, b->fc_b)), b->proj_w, b->proj_b);
    return tensor_add(x, h);
}

typedef struct {
    const clip_model *m;
    const clip_block *b;
    int heads;
    bool causal;
} block_call;

static tensor *block_call_run(const void *ctx, const tensor *x) {
    const block_call *c = ctx;
    return residual_block(c->m, c->b, x, c->heads, c->causal);
}

// One residual block of either tower; under grad checkpointing only its input x is kept for the
// backward, which recomputes the block (shim/tensor.h, tensor_checkpoint).
static tensor *run_block(const clip_model *m, const clip_block *b, const tensor *x, int heads, bool causal) {
    if (!m->grad_checkpointing) return residual_block(m, b, x, heads, causal);
    block_call c = {m, b, heads, causal};
    return tensor_checkpoint(block_call_run, &c, sizeof c, x);
}

// Runs f inside its own scope and keeps only the result.
#define SCOPED_RESULT(expr)              \
    do {                                 \
        tensor_scope_begin();            \
        tensor *result_ = (expr);        \
        tensor_keep(result_);            \
        tensor_scope_end();              \
        return result_;                  \
    } while (0)

static tensor_dtype model_dtype(const clip_model *m) { return tensor_get_dtype(m->params.data); }

tensor *clip_images_to_device(const clip_model *m, const float *images, int64_t B) {
    int64_t shape[4] = {B, 3, m->cfg.vision.image_size, m->cfg.vision.image_size};
    tensor_scope_begin();
    tensor *x = tensor_keep(tensor_to_device(tensor_from_host(images, shape, 4, TENSOR_F32, false), m->device, true));
    tensor_scope_end();
    return x;
}

tensor *clip_images_u8_to_device(const clip_model *m, const uint8_t *images, int64_t B, const float mean[3],
                                 const float std[3]) {
    int64_t shape[4] = {B, 3, m->cfg.vision.image_size, m->cfg.vision.image_size};
    int64_t n_stats = 7, channel[4] = {1, 3, 1, 1};
    float stats[7] = {255, mean[0], mean[1], mean[2], std[0], std[1], std[2]};
    tensor_scope_begin();
    tensor *x = tensor_to_device(tensor_from_host_memory((void *)images, shape, 4, TENSOR_U8), m->device, true);
    tensor *s = tensor_to_device(tensor_from_host(stats, &n_stats, 1, TENSOR_F32, true), m->device, true);
    tensor *mu = tensor_reshape(tensor_slice(s, 0, 1, 4), channel, 4);
    tensor *sd = tensor_reshape(tensor_slice(s, 0, 4, 7), channel, 4);
    x = tensor_div(tensor_to_dtype(x, TENSOR_F32), tensor_select(s, 0, 0));
    tensor *result = tensor_keep(tensor_div(tensor_sub(x, mu), sd));
    tensor_scope_end();
    return result;
}

// Keeps the tokens keep (B, K) int64 of x (B, T, W): (B, K, W).
static tensor *keep_tokens(const tensor *x, const tensor *keep) {
    int64_t B = tensor_size(keep, 0), K = tensor_size(keep, 1), W = tensor_size(x, 2);
    int64_t col[3] = {B, K, 1}, shape[3] = {B, K, W};
    return tensor_gather(x, 1, tensor_expand(tensor_reshape(keep, col, 3), shape, 3));
}

// The image tower; keep (B, K) int64 or NULL: the tokens (class token first) kept by patch dropout.
static tensor *image_features(const clip_model *m, const tensor *images, const tensor *keep) {
    if (m->resnet) return resnet_tower_forward(m->resnet, tensor_to_dtype(images, model_dtype(m)));
    const clip_config *c = &m->cfg;
    int P = c->vision.patch_size, W = c->vision.width;
    // Images in the weights' dtype (bf16 weights take float32 images, as OpenCLIP casts its input).
    tensor *x = tensor_conv2d(tensor_to_dtype(images, model_dtype(m)), m->conv1_w, NULL, P, 0);  // (B, W, G, G)
    int64_t B = tensor_size(x, 0);
    int64_t flat[3] = {B, W, -1};
    x = tensor_transpose(tensor_reshape(x, flat, 3), 1, 2);  // (B, G*G, W)
    int64_t cls_shape[3] = {B, 1, W};
    int64_t one_row[3] = {1, 1, W};
    tensor *cls = tensor_expand(tensor_reshape(m->class_embedding, one_row, 3), cls_shape, 3);
    const tensor *parts[2] = {cls, x};
    x = tensor_add(tensor_cat(parts, 2, 1), m->visual_pos);  // (B, G*G+1, W)
    if (keep) x = keep_tokens(x, keep);                       // (B, K, W)
    x = tensor_layer_norm(x, m->ln_pre_w, m->ln_pre_b, LAYER_NORM_EPS);
    int heads = W / c->vision.head_width;
    for (int i = 0; i < c->vision.layers; i++) x = run_block(m, &m->visual_blocks[i], x, heads, false);
    x = tensor_layer_norm(tensor_select(x, 1, 0), m->ln_post_w, m->ln_post_b, LAYER_NORM_EPS);
    return tensor_matmul(x, m->visual_proj);  // (B, E)
}

tensor *clip_encode_image(const clip_model *m, const tensor *images, bool normalize) {
    if (!images) return NULL;
    SCOPED_RESULT(normalize ? tensor_l2_normalize(image_features(m, images, NULL), -1) : image_features(m, images, NULL));
}

int64_t clip_patch_dropout_keep(const clip_model *m, const uint64_t *seeds, int64_t B, int64_t *keep) {
    int64_t G = m->cfg.vision.image_size / m->cfg.vision.patch_size, N = G * G;
    int64_t K = (int64_t)((double)N * (1.0 - m->cfg.vision.patch_dropout));  // OpenCLIP: max(1, int(N * keep))
    if (K < 1) K = 1;
    int64_t *order = xmalloc((size_t)N * sizeof(int64_t));
    bool *chosen = xmalloc((size_t)N * sizeof(bool));
    for (int64_t b = 0; b < B; b++) {
        rng r = {seeds[b]};
        for (int64_t i = 0; i < N; i++) order[i] = i, chosen[i] = false;
        for (int64_t i = 0; i < K; i++) {  // the first K of a Fisher-Yates shuffle: a uniform K-subset
            int64_t j = i + (int64_t)rng_below(&r, (uint64_t)(N - i)), swap = order[i];
            order[i] = order[j], order[j] = swap;
            chosen[order[i]] = true;
        }
        int64_t *row = keep + b * (K + 1), n = 0;
        row[n++] = 0;  // the class token
        for (int64_t t = 0; t < N; t++)
            if (chosen[t]) row[n++] = t + 1;
    }
    free(order);
    free(chosen);
    return K + 1;
}

tensor *clip_encode_image_keep(const clip_model *m, const tensor *images, const int64_t *keep, int64_t K, bool normalize) {
    if (!images) return NULL;
    int64_t shape[2] = {tensor_size(images, 0), K};
    tensor_scope_begin();
    tensor *idx = tensor_to_device(tensor_from_host(keep, shape, 2, TENSOR_I64, false), m->device, false);
    tensor *f = image_features(m, images, idx);
    tensor *result = tensor_keep(normalize ? tensor_l2_normalize(f, -1) : f);
    tensor_scope_end();
    return result;
}

// The text tower on tokens (n, L) whose first EOTs sit at eot (n, int64): (n, E).
static tensor *text_features(const clip_model *m, const tensor *tokens, const tensor *eot) {
    const clip_config *c = &m->cfg;
    int64_t L = tensor_size(tokens, 1);
    tensor *x = tensor_embedding(m->token_embedding, tokens);  // (n, L, W)
    x = tensor_add(x, tensor_slice(m->text_pos, 0, 0, L));
    for (int i = 0; i < c->text.layers; i++) x = run_block(m, &m->text_blocks[i], x, c->text.heads, true);
    x = tensor_layer_norm(x, m->ln_final_w, m->ln_final_b, LAYER_NORM_EPS);
    int64_t B = tensor_size(x, 0), W = c->text.width;
    int64_t idx_shape[3] = {B, 1, W}, col[3] = {B, 1, 1};
    tensor *index = tensor_expand(tensor_reshape(eot, col, 3), idx_shape, 3);
    int64_t pooled[2] = {B, W};
    x = tensor_reshape(tensor_gather(x, 1, index), pooled, 2);  // (n, W)
    return tensor_matmul(x, m->text_projection);                // (n, E)
}

static tensor *text_output(const clip_model *m, const tensor *tokens, const tensor *eot, bool normalize) {
    tensor *f = text_features(m, tokens, eot);
    return normalize ? tensor_l2_normalize(f, -1) : f;
}

// The prefix length comes from the device here: one host read.
tensor *clip_encode_text(const clip_model *m, const tensor *tokens, bool normalize) {
    if (!tokens) return NULL;
    tensor_scope_begin();
    tensor *eot = tensor_argmax(tokens, -1, false);  // (B) first EOT: the largest id
    double last = 0;
    tensor *result = NULL;
    if (tensor_item(tensor_max_dim(tensor_unsqueeze(eot, 0), 1, false), &last) == 0)
        result = tensor_keep(text_output(m, tensor_slice(tokens, 1, 0, (int64_t)last + 1), eot, normalize));
    tensor_scope_end();
    return result;
}

static uint64_t row_hash(const int64_t *row, int64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < n; i++) h = (h ^ (uint64_t)row[i]) * 1099511628211ull;
    return h;
}

// Distinct rows of tokens (B, C) in first-seen order into unique, and each row's index into it.
static int64_t distinct_rows(const int64_t *tokens, int64_t B, int64_t C, int64_t *unique, int64_t *index) {
    int64_t cap = 1;
    while (cap < 2 * B) cap <<= 1;
    int64_t *slots = xmalloc((size_t)cap * sizeof(int64_t));  // unique row number + 1, 0 = empty
    memset(slots, 0, (size_t)cap * sizeof(int64_t));
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *row = tokens + b * C;
        int64_t s = (int64_t)(row_hash(row, C) & (uint64_t)(cap - 1));
        while (slots[s] && memcmp(unique + (slots[s] - 1) * C, row, (size_t)C * sizeof(int64_t)) != 0) s = (s + 1) & (cap - 1);
        if (!slots[s]) {
            memcpy(unique + n * C, row, (size_t)C * sizeof(int64_t));
            slots[s] = ++n;
        }
        index[b] = slots[s] - 1;
    }
    free(slots);
    return n;
}

// The first EOT of each of the n rows (the largest id, the first of equals: OpenCLIP's argmax).
static void eot_positions(const int64_t *tokens, int64_t n, int64_t C, int64_t *eot) {
    for (int64_t r = 0; r < n; r++) {
        const int64_t *row = tokens + r * C;
        int64_t first = 0;
        for (int64_t i = 1; i < C; i++)
            if (row[i] > row[first]) first = i;
        eot[r] = first;
    }
}

// What one more group costs beyond its tokens, in forward FLOPs a layer: its share of the ops'
// fixed costs (about 40 ops a layer forward and backward). The CPU figure: the median of
// `bench_step --captions web` was lowest near it (1e6, 3e8, 2e9 and one group tried, clip-tiny b256
// and ViT-B-32 b32); launch-bound devices merge more.
#define TEXT_GROUP_OVERHEAD_CPU 3e8
#define TEXT_GROUP_OVERHEAD_GPU 1e11

// Forward FLOPs a layer of n captions run at length L: the linear layers (24 W^2 a token) and
// attention's two products (4 L W a token), plus the group's fixed cost.
static double group_cost(int64_t n, int64_t L, int64_t W, double overhead) {
    return (double)n * (double)L * (24.0 * (double)W * (double)W + 4.0 * (double)L * (double)W) + overhead;
}

int64_t clip_text_groups(const int64_t *len, int64_t n, int64_t width, bool gpu, int64_t *ends) {
    double overhead = gpu ? TEXT_GROUP_OVERHEAD_GPU : TEXT_GROUP_OVERHEAD_CPU;
    int64_t *cut = xmalloc((size_t)(n + 1) * sizeof(int64_t)), *from = xmalloc((size_t)(n + 1) * sizeof(int64_t));
    double *best = xmalloc((size_t)(n + 1) * sizeof(double));
    int64_t k = 0;
    cut[k++] = 0;  // candidate group boundaries: where the length changes, and the end
    for (int64_t i = 1; i <= n; i++)
        if (i == n || len[i] != len[i - 1]) cut[k++] = i;
    best[0] = 0;
    for (int64_t j = 1; j < k; j++) {  // best[j]: the cheapest split of rows [0, cut[j])
        best[j] = INFINITY;
        for (int64_t i = 0; i < j; i++) {
            double c = best[i] + group_cost(cut[j] - cut[i], len[cut[j] - 1], width, overhead);
            if (c < best[j]) best[j] = c, from[j] = i;
        }
    }
    int64_t groups = 0;
    for (int64_t j = k - 1; j > 0; j = from[j]) groups++;
    for (int64_t j = k - 1, g = groups; j > 0; j = from[j]) ends[--g] = cut[j];
    free(cut), free(from), free(best);
    return groups;
}

// The distinct rows' order by caption length (eot + 1), shortest first (stable: a counting sort).
static int64_t *order_by_length(const int64_t *eot, int64_t n) {
    int64_t *order = xmalloc((size_t)n * sizeof(int64_t));
    int64_t longest = 0;
    for (int64_t r = 0; r < n; r++) longest = eot[r] > longest ? eot[r] : longest;
    int64_t *start = xcalloc((size_t)longest + 2, sizeof(int64_t));
    for (int64_t r = 0; r < n; r++) start[eot[r] + 1]++;
    for (int64_t e = 1; e <= longest + 1; e++) start[e] += start[e - 1];
    for (int64_t r = 0; r < n; r++) order[start[eot[r]]++] = r;
    free(start);
    return order;
}

// Everything the text tower needs goes to the device in one non-blocking copy from pinned memory.
// The distinct captions, shortest first, are split into groups (clip_text_groups); each group runs
// at its longest caption's length. Laid out as [each group's prefixes (n_g, L_g) | the EOT
// positions (n) | each batch row's place among the groups' outputs (B)].
typedef struct {
    int64_t *packed, total, n, groups, *ends, *lengths;  // ends and lengths: (groups)
} text_plan;

static void text_plan_init(text_plan *p, const clip_model *m, const int64_t *tokens, int64_t B) {
    int64_t C = m->cfg.text.context_length;
    int64_t *unique = xmalloc((size_t)(B * C) * sizeof(int64_t)), *index = xmalloc((size_t)B * sizeof(int64_t));
    int64_t n = distinct_rows(tokens, B, C, unique, index);
    int64_t *eot = xmalloc((size_t)n * sizeof(int64_t)), *len = xmalloc((size_t)n * sizeof(int64_t));
    eot_positions(unique, n, C, eot);
    int64_t *order = order_by_length(eot, n), *place = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t r = 0; r < n; r++) len[r] = eot[order[r]] + 1, place[order[r]] = r;
    p->n = n;
    p->ends = xmalloc((size_t)n * sizeof(int64_t));
    p->groups = clip_text_groups(len, n, m->cfg.text.width, m->device.type != TENSOR_DEVICE_CPU, p->ends);
    p->lengths = xmalloc((size_t)p->groups * sizeof(int64_t));
    int64_t tokens_total = 0;
    for (int64_t g = 0, begin = 0; g < p->groups; begin = p->ends[g++]) {
        p->lengths[g] = len[p->ends[g] - 1];
        tokens_total += (p->ends[g] - begin) * p->lengths[g];
    }
    p->total = tokens_total + n + B;
    p->packed = xmalloc((size_t)p->total * sizeof(int64_t));
    int64_t *at = p->packed;
    for (int64_t g = 0, r = 0; g < p->groups; g++)
        for (; r < p->ends[g]; r++, at += p->lengths[g]) memcpy(at, unique + order[r] * C, (size_t)p->lengths[g] * sizeof(int64_t));
    for (int64_t r = 0; r < n; r++) *at++ = eot[order[r]];
    for (int64_t b = 0; b < B; b++) *at++ = place[index[b]];
    free(unique), free(index), free(eot), free(len), free(order), free(place);
}

static void text_plan_free(text_plan *p) { free(p->packed), free(p->ends), free(p->lengths); }

tensor *clip_encode_text_host(const clip_model *m, const int64_t *tokens, int64_t B, bool normalize) {
    text_plan p;
    text_plan_init(&p, m, tokens, B);
    tensor_scope_begin();
    tensor *all = tensor_to_device(tensor_from_host(p.packed, &p.total, 1, TENSOR_I64, true), m->device, true);
    tensor *eots = tensor_slice(all, 0, p.total - B - p.n, p.total - B), *place = tensor_slice(all, 0, p.total - B, p.total);
    const tensor **parts = xmalloc((size_t)p.groups * sizeof *parts);
    for (int64_t g = 0, begin = 0, at = 0; g < p.groups; at += (p.ends[g] - begin) * p.lengths[g], begin = p.ends[g++]) {
        int64_t rows = p.ends[g] - begin, shape[2] = {rows, p.lengths[g]};
        tensor *u = tensor_reshape(tensor_slice(all, 0, at, at + rows * p.lengths[g]), shape, 2);
        parts[g] = text_output(m, u, tensor_slice(eots, 0, begin, p.ends[g]), normalize);  // (rows, E)
    }
    tensor *features = p.groups == 1 ? (tensor *)parts[0] : tensor_cat(parts, (int)p.groups, 0);
    features = tensor_keep(tensor_index_select(features, 0, place));
    tensor_scope_end();
    free(parts);
    text_plan_free(&p);
    return features;
}

// ---- weights I/O -----------------------------------------------------------------------------

static int load_param(param *p, const st_tensor *t, const char *path) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(p->value, shape);
    bool same = ndim == t->ndim;
    for (int d = 0; same && d < ndim; d++) same = shape[d] == t->shape[d];
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)shape[d]);
        for (int d = 0; d < t->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        return err_set("%s: %s: shape [%s] does not match the model's [%s]", path, p->name, got, want);
    }
    float *buf = t->dtype == ST_DTYPE_F32 ? NULL : xmalloc((size_t)t->numel * sizeof(float));
    int rc = buf ? st_convert(t->data, t->dtype, buf, ST_DTYPE_F32, (size_t)t->numel) : 0;
    if (rc != 0) err_set("%s: %s: dtype %s is not a floating type", path, p->name, st_dtype_name(t->dtype));
    tensor_scope_begin();  // float32 values into the parameter, whatever its dtype
    if (rc == 0) rc = tensor_copy_(p->value, tensor_from_host(buf ? buf : t->data, shape, ndim, TENSOR_F32, false));
    tensor_scope_end();
    free(buf);
    return rc;
}

static int load_list(param_list *l, st_file *f, const char *path) {
    int rc = 0;
    for (int i = 0; i < l->n && rc == 0; i++) {
        param *p = &l->items[i];
        const st_tensor *t = st_find(f, p->name);
        if (!t) rc = err_set("%s: missing key '%s'", path, p->name);
        else rc = load_param(p, t, path);
    }
    return rc;
}

// "<bn>.num_batches_tracked" of a ResNet tower's BatchNorm: OpenCLIP's int64 scalar.
static void counter_key(const resnet_bn *bn, char *out, size_t cap) {
    snprintf(out, cap, "%s.num_batches_tracked", bn->key);
}

static int load_counters(clip_model *m, st_file *f, const char *path) {
    for (int i = 0; m->resnet && i < m->resnet->n_bns; i++) {
        char key[300];
        counter_key(m->resnet->bns[i], key, sizeof key);
        const st_tensor *t = st_find(f, key);
        if (!t) return err_set("%s: missing key '%s'", path, key);
        if (t->dtype != ST_DTYPE_I64 || t->numel != 1)
            return err_set("%s: %s: expected one I64 value, got %s with %lld", path, key, st_dtype_name(t->dtype),
                           (long long)t->numel);
        memcpy(&m->resnet->bns[i]->num_batches_tracked, t->data, sizeof(int64_t));
    }
    return 0;
}

static bool is_counter_key(const clip_model *m, const char *name) {
    for (int i = 0; m->resnet && i < m->resnet->n_bns; i++) {
        char key[300];
        counter_key(m->resnet->bns[i], key, sizeof key);
        if (!strcmp(key, name)) return true;
    }
    return false;
}

int clip_model_load(clip_model *m, const char *path) {
    st_file *f = weights_open(path);
    if (!f) return -1;
    int rc = load_list(&m->params, f, path);
    if (rc == 0) rc = load_list(&m->buffers, f, path);
    if (rc == 0) rc = load_counters(m, f, path);
    for (int i = 0; i < st_count(f) && rc == 0; i++) {
        const char *name = st_get(f, i)->name;
        if (!clip_model_find_param(m, name) && !param_list_find(&m->buffers, name) && !is_counter_key(m, name))
            rc = err_set("%s: unexpected key '%s' (not in %s)", path, name, m->cfg.name);
    }
    st_close(f);
    return rc;
}

// Adds the list's values as float32 to w; their host copies go to host[0..l->n).
static int save_list(st_writer *w, const param_list *l, void **host) {
    int rc = 0;
    for (int i = 0; i < l->n && rc == 0; i++) {
        const param *p = &l->items[i];
        int64_t shape[TENSOR_MAX_DIMS];
        int ndim = tensor_shape(p->value, shape);
        size_t nbytes = (size_t)tensor_numel(p->value) * sizeof(float);
        host[i] = xmalloc(nbytes);
        tensor_scope_begin();  // float32 whatever the parameters' dtype
        rc = tensor_to_host(tensor_to_dtype(p->value, TENSOR_F32), host[i], nbytes);
        tensor_scope_end();
        if (rc == 0) rc = st_writer_add(w, p->name, ST_DTYPE_F32, shape, ndim, host[i]);
    }
    return rc;
}

static int save_counters(st_writer *w, const clip_model *m) {
    for (int i = 0; m->resnet && i < m->resnet->n_bns; i++) {
        char key[300];
        counter_key(m->resnet->bns[i], key, sizeof key);
        if (st_writer_add(w, key, ST_DTYPE_I64, NULL, 0, &m->resnet->bns[i]->num_batches_tracked) != 0) return -1;
    }
    return 0;
}

int clip_model_save(const clip_model *m, const char *path, const char *const *extra_metadata) {
    st_writer *w = st_writer_init();
    int n_host = m->params.n + m->buffers.n;
    void **buffers = xcalloc((size_t)n_host, sizeof(void *));
    int rc = save_list(w, &m->params, buffers);
    if (rc == 0) rc = save_list(w, &m->buffers, buffers + m->params.n);
    if (rc == 0) rc = save_counters(w, m);
    char *config = clip_config_to_json(&m->cfg);
    if (rc == 0) rc = st_writer_set_metadata(w, "format", "pt");
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.config", config);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.model", m->cfg.name);
    for (int i = 0; extra_metadata && extra_metadata[i] && rc == 0; i += 2)
        rc = st_writer_set_metadata(w, extra_metadata[i], extra_metadata[i + 1]);
    if (rc == 0) rc = st_writer_write(w, path);
    free(config);
    for (int i = 0; i < n_host; i++) free(buffers[i]);
    free(buffers);
    st_writer_free(w);
    return rc;
}
