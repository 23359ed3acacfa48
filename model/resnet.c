#include "model/resnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

// ---- construction ----------------------------------------------------------------------------

typedef struct {
    resnet_tower *t;
    param_list *params, *buffers;
    tensor_generator *g;
    int bn_cap;
} builder;

static tensor *add(param_list *l, const char *prefix, const char *suffix, tensor *value) {
    char name[256];
    CLIPC_ASSERT(snprintf(name, sizeof name, "%s%s", prefix, suffix) < (int)sizeof name);
    return param_list_add(l, name, value)->value;
}

// PyTorch's Conv2d default: kaiming_uniform(a=sqrt(5)), i.e. U(+-1/sqrt(fan_in)).
static tensor *conv_weight(builder *b, const char *name, int64_t out, int64_t in, int64_t k) {
    int64_t shape[4] = {out, in, k, k};
    double bound = 1.0 / sqrt((double)(in * k * k));
    return add(b->params, name, ".weight", tensor_uniform(shape, 4, -bound, bound, TENSOR_F32, TENSOR_CPU, b->g));
}

static tensor *filled(int64_t n, double value) {
    return tensor_full(&n, 1, value, TENSOR_F32, TENSOR_CPU);
}

// A BatchNorm2d of c channels under key (weight 1, or 0 for the blocks' bn3 as OpenCLIP sets).
static void bn_init(builder *b, resnet_bn *bn, const char *key, int64_t c, double weight) {
    bn->key = xstrdup(key);
    bn->weight = add(b->params, key, ".weight", filled(c, weight));
    bn->bias = add(b->params, key, ".bias", filled(c, 0));
    bn->running_mean = add(b->buffers, key, ".running_mean", filled(c, 0));
    bn->running_var = add(b->buffers, key, ".running_var", filled(c, 1));
    param_set_frozen(&b->buffers->items[b->buffers->n - 2], true);
    param_set_frozen(&b->buffers->items[b->buffers->n - 1], true);
    if (b->t->n_bns == b->bn_cap) {
        b->bn_cap = b->bn_cap ? 2 * b->bn_cap : 64;
        b->t->bns = xrealloc(b->t->bns, (size_t)b->bn_cap * sizeof *b->t->bns);
    }
    b->t->bns[b->t->n_bns++] = bn;
}

static void conv_bn(builder *b, tensor **conv, resnet_bn *bn, const char *pre, const char *conv_name,
                    const char *bn_name, int64_t out, int64_t in, int64_t k, double bn_weight) {
    char key[128];
    CLIPC_ASSERT(snprintf(key, sizeof key, "%s%s", pre, conv_name) < (int)sizeof key);
    *conv = conv_weight(b, key, out, in, k);
    CLIPC_ASSERT(snprintf(key, sizeof key, "%s%s", pre, bn_name) < (int)sizeof key);
    bn_init(b, bn, key, out, bn_weight);
}

static void block_init(builder *b, resnet_block *blk, const char *pre, int64_t in, int64_t planes, int stride) {
    blk->stride = stride;
    conv_bn(b, &blk->conv1, &blk->bn1, pre, "conv1", "bn1", planes, in, 1, 1);
    conv_bn(b, &blk->conv2, &blk->bn2, pre, "conv2", "bn2", planes, planes, 3, 1);
    conv_bn(b, &blk->conv3, &blk->bn3, pre, "conv3", "bn3", 4 * planes, planes, 1, 0);
    if (stride > 1 || in != 4 * planes)
        conv_bn(b, &blk->down_conv, &blk->down_bn, pre, "downsample.0", "downsample.1", 4 * planes, in, 1, 1);
}

// A Linear(in, out) with OpenCLIP's normal(std) weight and PyTorch's default bias.
static void projection(builder *b, tensor **w, tensor **bias, const char *key, int64_t out, int64_t in, double std) {
    int64_t shape[2] = {out, in};
    double bound = 1.0 / sqrt((double)in);
    *w = add(b->params, key, ".weight", tensor_normal(shape, 2, 0.0, std, TENSOR_F32, TENSOR_CPU, b->g));
    *bias = add(b->params, key, ".bias", tensor_uniform(&out, 1, -bound, bound, TENSOR_F32, TENSOR_CPU, b->g));
}

static void attnpool_init(builder *b, const clip_config *cfg, int64_t C) {
    resnet_tower *t = b->t;
    int64_t grid = cfg->vision.image_size / 32, shape[2] = {grid * grid + 1, C};
    double std = 1.0 / sqrt((double)C);
    t->attn_pos = add(b->params, "visual.attnpool.positional_embedding", "",
                      tensor_normal(shape, 2, 0.0, std, TENSOR_F32, TENSOR_CPU, b->g));
    projection(b, &t->k_w, &t->k_b, "visual.attnpool.k_proj", C, C, std);
    projection(b, &t->q_w, &t->q_b, "visual.attnpool.q_proj", C, C, std);
    projection(b, &t->v_w, &t->v_b, "visual.attnpool.v_proj", C, C, std);
    projection(b, &t->c_w, &t->c_b, "visual.attnpool.c_proj", cfg->embed_dim, C, std);
    t->heads = (int)(C / cfg->vision.head_width);
}

resnet_tower *resnet_tower_init(const clip_config *cfg, param_list *params, param_list *buffers, tensor_generator *g) {
    resnet_tower *t = xcalloc(1, sizeof *t);
    builder b = {t, params, buffers, g, 0};
    int64_t W = cfg->vision.width;
    conv_bn(&b, &t->conv1, &t->bn1, "visual.", "conv1", "bn1", W / 2, 3, 3, 1);
    conv_bn(&b, &t->conv2, &t->bn2, "visual.", "conv2", "bn2", W / 2, W / 2, 3, 1);
    conv_bn(&b, &t->conv3, &t->bn3, "visual.", "conv3", "bn3", W, W / 2, 3, 1);
    for (int s = 0; s < 4; s++) t->n_blocks += t->stage_blocks[s] = cfg->vision.resnet_layers[s];
    t->blocks = xcalloc((size_t)t->n_blocks, sizeof *t->blocks);
    int64_t in = W;
    for (int s = 0, i = 0; s < 4; s++) {
        for (int j = 0; j < t->stage_blocks[s]; j++, i++) {
            char pre[64];
            snprintf(pre, sizeof pre, "visual.layer%d.%d.", s + 1, j);
            int64_t planes = W << s;
            block_init(&b, &t->blocks[i], pre, in, planes, s > 0 && j == 0 ? 2 : 1);
            in = 4 * planes;
        }
    }
    attnpool_init(&b, cfg, in);
    t->update_stats = true;
    return t;
}

void resnet_tower_free(resnet_tower *t) {
    if (!t) return;
    for (int i = 0; i < t->n_bns; i++) free(t->bns[i]->key);
    free(t->bns);
    free(t->blocks);
    free(t);
}

// ---- forward ---------------------------------------------------------------------------------

// x (B, C, H, W) -> (C, B*H*W)
static tensor *channel_rows(const tensor *x) {
    int64_t rows[2] = {tensor_size(x, 1), -1};
    return tensor_reshape(tensor_transpose(x, 0, 1), rows, 2);
}

// (C) -> (1, C, 1, 1)
static tensor *per_channel(const tensor *v) {
    int64_t shape[4] = {1, tensor_size(v, 0), 1, 1};
    return tensor_reshape(v, shape, 4);
}

static int update_running(resnet_bn *bn, const tensor *mean, const tensor *unbiased_var) {
    double m = RESNET_BN_MOMENTUM;
    if (tensor_mul_scalar_(bn->running_mean, 1 - m) || tensor_add_(bn->running_mean, mean, m) ||
        tensor_mul_scalar_(bn->running_var, 1 - m) || tensor_add_(bn->running_var, unbiased_var, m))
        return -1;
    bn->num_batches_tracked++;
    return 0;
}

// SyncBatchNorm: the mean and (biased) variance over the global batch, each a differentiable sum
// over the ranks (two passes: the variance of the centred values, as exact as a local one).
static tensor *bn_synced(resnet_tower *t, resnet_bn *bn, const tensor *x) {
    if (!x) return NULL;
    int64_t C = tensor_size(x, 1);
    tensor *rows = channel_rows(x);  // (C, n)
    tensor *count = tensor_full(&(int64_t){1}, 1, (double)tensor_size(rows, 1), tensor_get_dtype(x), tensor_get_device(x));
    const tensor *parts[2] = {tensor_sum_dim(rows, 1, false), count};
    tensor *sums = tensor_all_reduce_grad(tensor_cat(parts, 2, 0), t->sync.reduce, t->sync.ctx);  // (C + 1)
    tensor *n = tensor_slice(sums, 0, C, C + 1);
    tensor *mean = tensor_div(tensor_slice(sums, 0, 0, C), n);
    tensor *centred = tensor_sub(x, per_channel(mean));
    tensor *sq = tensor_sum_dim(channel_rows(tensor_mul(centred, centred)), 1, false);
    tensor *var = tensor_div(tensor_all_reduce_grad(sq, t->sync.reduce, t->sync.ctx), n);  // (C)
    if (!var) return NULL;
    if (t->update_stats) {
        tensor_no_grad_begin();
        tensor *unbiased = tensor_div(tensor_mul(var, n), tensor_add_scalar(n, -1));
        int rc = update_running(bn, mean, unbiased);
        tensor_no_grad_end();
        if (rc != 0) return NULL;
    }
    tensor *scale = tensor_mul(tensor_pow_scalar(tensor_add_scalar(var, RESNET_BN_EPS), -0.5), bn->weight);
    return tensor_add(tensor_mul(centred, per_channel(scale)), per_channel(bn->bias));
}

static tensor *bn_forward(resnet_tower *t, resnet_bn *bn, const tensor *x) {
    if (!t->training || t->frozen_stats)
        return tensor_batch_norm(x, bn->weight, bn->bias, bn->running_mean, bn->running_var, false, 0, RESNET_BN_EPS);
    if (t->sync.reduce) return bn_synced(t, bn, x);
    bool update = t->update_stats;
    tensor *y = tensor_batch_norm(x, bn->weight, bn->bias, update ? bn->running_mean : NULL,
                                  update ? bn->running_var : NULL, true, RESNET_BN_MOMENTUM, RESNET_BN_EPS);
    if (y && update) bn->num_batches_tracked++;
    return y;
}

static tensor *conv_bn_relu(resnet_tower *t, const tensor *x, const tensor *w, resnet_bn *bn, int stride,
                            int padding) {
    return tensor_relu(bn_forward(t, bn, tensor_conv2d(x, w, NULL, stride, padding)));
}

static tensor *bottleneck(resnet_tower *t, resnet_block *b, const tensor *x) {
    tensor *out = conv_bn_relu(t, x, b->conv1, &b->bn1, 1, 0);
    out = conv_bn_relu(t, out, b->conv2, &b->bn2, 1, 1);
    if (b->stride > 1) out = tensor_avg_pool2d(out, b->stride);
    out = bn_forward(t, &b->bn3, tensor_conv2d(out, b->conv3, NULL, 1, 0));
    const tensor *identity = x;
    if (b->down_conv) {
        tensor *pooled = b->stride > 1 ? tensor_avg_pool2d(x, b->stride) : (tensor *)x;
        identity = bn_forward(t, &b->down_bn, tensor_conv2d(pooled, b->down_conv, NULL, 1, 0));
    }
    return tensor_relu(tensor_add(out, identity));
}

// (B, L, C) -> (B, H, L, C/H)
static tensor *split_heads(const tensor *x, int heads) {
    int64_t shape[4] = {tensor_size(x, 0), tensor_size(x, 1), heads, tensor_size(x, 2) / heads};
    return tensor_transpose(tensor_reshape(x, shape, 4), 1, 2);
}

// x (B, C, h, w) -> (B, E): only the mean token's query is computed, the one OpenCLIP returns.
static tensor *attnpool(resnet_tower *t, const tensor *x) {
    int64_t B = tensor_size(x, 0), C = tensor_size(x, 1), flat[3] = {B, C, -1};
    tensor *tokens = tensor_transpose(tensor_reshape(x, flat, 3), 1, 2);  // (B, hw, C)
    const tensor *parts[2] = {tensor_mean_dim(tokens, 1, true), tokens};
    tokens = tensor_add(tensor_cat(parts, 2, 1), t->attn_pos);  // (B, hw + 1, C)
    tensor *q = tensor_linear(tensor_slice(tokens, 1, 0, 1), t->q_w, t->q_b);  // (B, 1, C)
    tensor *k = tensor_linear(tokens, t->k_w, t->k_b), *v = tensor_linear(tokens, t->v_w, t->v_b);
    tensor *out = tensor_attention(split_heads(q, t->heads), split_heads(k, t->heads), split_heads(v, t->heads), false);
    int64_t pooled[2] = {B, C};
    out = tensor_reshape(tensor_transpose(out, 1, 2), pooled, 2);  // (B, C)
    return tensor_linear(out, t->c_w, t->c_b);
}

tensor *resnet_tower_forward(resnet_tower *t, const tensor *images) {
    tensor *x = conv_bn_relu(t, images, t->conv1, &t->bn1, 2, 1);
    x = conv_bn_relu(t, x, t->conv2, &t->bn2, 1, 1);
    x = tensor_avg_pool2d(conv_bn_relu(t, x, t->conv3, &t->bn3, 1, 1), 2);
    for (int i = 0; i < t->n_blocks; i++) x = bottleneck(t, &t->blocks[i], x);
    return attnpool(t, x);
}

// ---- locking ---------------------------------------------------------------------------------

int resnet_lock(resnet_tower *t, param_list *params, int unlocked_groups, bool freeze_bn_stats) {
    if (unlocked_groups != 0)
        return err_set("--lock-image-unlocked-groups %d: a ModifiedResNet tower is locked whole "
                       "(OpenCLIP supports no partial locking of it)", unlocked_groups);
    for (int i = 0; i < params->n; i++)
        if (strncmp(params->items[i].name, "visual.", 7) == 0 && param_set_frozen(&params->items[i], true) != 0) return -1;
    t->frozen_stats = freeze_bn_stats;
    return param_list_pack(params, params->device);
}
