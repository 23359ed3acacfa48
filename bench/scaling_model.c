// scaling_model: the data-parallel scaling model of docs/scaling.md as a program, so that its
// tables can be recomputed. For each model (config from configs/models) at a batch per GPU, and
// each world size R and bandwidth, it prints the bytes one step moves and the predicted
// efficiency (per-GPU throughput at R GPUs over that of one GPU at the same batch per GPU),
// without and with overlap of the gradient all-reduce with the backward.
//
// Per step and per GPU (P parameters, fp32 gradients; B samples per GPU; E the embedding width;
// f bytes per feature value; BW the bandwidth of the ring's slowest hop, in bytes/s):
//   gradient all-reduce   payload 4P          wire 2(R-1)/R x 4P        (ring)
//   feature all-gather    payload 2 x R B E f wire (R-1)/R x payload    (image and text)
//   feature reduce-scatter payload 2 x R B E f wire (R-1)/R x payload   (their gradients)
//   time = wire / BW (latency neglected)
//   compute = (towers' FLOPs of B samples + the loss's 12 B (R B) E) / the anchor's FLOP rate
// The anchor is a measured step: MODEL at BATCH per GPU ran SAMPLES_PER_S per GPU on RANKS GPUs;
// its FLOP rate is taken as the rate of every step (communication in the anchor assumed hidden).
// Without overlap (clipc today) a step is compute + gather/scatter + all-reduce; with overlap
// the all-reduce hides behind the backward (2/3 of the towers' compute) except its last bucket.
//
// --sharding adds the efficiency with overlap under DDP, ZeRO-1 (plus an all-gather of the
// updated weights, (R-1)/R x 4P, which no overlap hides) and ZeRO-2 (a reduce-scatter, hidden like
// the all-reduce, and the all-gather). --grad-checkpointing counts the towers' forward twice.
// --memory adds the memory per GPU: fp32 weights and flat gradient buffer, AdamW's moments (1/R
// under ZeRO), ZeRO-2's reduced shard, and the activations by formula (amp_bf16 with fused
// attention, or fp32 with libtorch 1.13's explicit attention), without and with checkpointing.
//
// Usage: scaling_model [MODEL[:BATCH] ...] [--batch-size 256] [--ranks 8,64,512]
//          [--bandwidths 300,50,12.5] [--anchor-model ViT-B-32] [--anchor-batch 256]
//          [--anchor-samples-per-s 850] [--anchor-ranks 128] [--feature-bytes 4] [--text-len 77]
//          [--configs DIR] [--check] [--sharding] [--grad-checkpointing] [--memory]
//          [--precision amp_bf16|fp32] [--gpu-gib 80] [--reserve-gib 4]
// Models default to ViT-B-32 and ViT-L-14. --check also builds each model as clipc does and
// compares its parameter count with the formula.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/clip_cost.h"
#include "common/args.h"
#include "common/error.h"
#include "model/clip.h"

#define MAX_MODELS 8
#define MAX_VALUES 8
#define BUCKET_ELEMENTS 8388608.0  // train/step.c's gradient bucket

typedef struct {
    double ranks[MAX_VALUES], bandwidths[MAX_VALUES];  // bandwidths in GB/s
    int n_ranks, n_bandwidths;
    double feature_bytes, text_len;
    double flop_rate;  // FLOP/s per GPU, from the anchor
    bool ckpt;         // --grad-checkpointing: the towers' forward runs twice (4/3 the FLOPs)
    bool amp;          // activations as under amp_bf16 with fused attention (else fp32, explicit attention)
    double gpu_bytes, reserve_bytes;  // the memory of a GPU, and what the CUDA context etc. take of it
} setup;

typedef struct {
    clip_config cfg;
    double batch, params;
} model;

// "8,64,512" into values. Returns the count, or -1 with a message.
static int parse_list(const char *text, const char *name, double *values) {
    int n = 0;
    for (const char *p = text; *p;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0) || n == MAX_VALUES || (*end && *end != ','))
            return err_set("--%s: '%s' is not a list of up to %d positive numbers", name, text, MAX_VALUES);
        values[n++] = v;
        p = *end ? end + 1 : end;
    }
    return n > 0 ? n : err_set("--%s is empty", name);
}

// "ViT-L-14:96" (or "ViT-L-14", batch default_batch) into m.
static int load_model(const char *spec, const char *configs, double default_batch, model *m) {
    char name[256], path[1024];
    snprintf(name, sizeof name, "%s", spec);
    char *colon = strrchr(name, ':');
    m->batch = default_batch;
    if (colon) {
        *colon = '\0';
        m->batch = atof(colon + 1);
        if (!(m->batch >= 1)) return err_set("%s: the batch after ':' must be a positive number", spec);
    }
    if (clip_config_find(name, configs, path, sizeof path) || clip_config_load(path, &m->cfg)) return -1;
    m->params = clip_cost_params(&m->cfg);
    return 0;
}

// FLOPs of one step on one GPU of R: the towers over B samples, and its B rows of the loss
// against all R B samples, both directions, forward and backward.
static double towers_flops(const setup *s, const model *m) {
    return clip_cost_step_flops(&m->cfg, m->batch, s->text_len) * (s->ckpt ? 4.0 / 3.0 : 1.0);
}

static double step_flops(const setup *s, const model *m, double R) {
    double B = m->batch;
    return towers_flops(s, m) + 12 * B * R * B * m->cfg.embed_dim;
}

// Bytes one GPU sends per step: the gradient all-reduce's (ring) and the features' gather and scatter.
static double wire_grads(const model *m, double R) { return 2 * (R - 1) / R * 4 * m->params; }
static double wire_features(const setup *s, const model *m, double R) {
    return 2 * 2 * (R - 1) * m->batch * m->cfg.embed_dim * s->feature_bytes;
}

// How the gradients and weights travel: DDP (an all-reduce of the gradients), ZeRO-1 (the same,
// then an all-gather of the updated weights) or ZeRO-2 (a reduce-scatter of the gradients, then
// the all-gather). Only the gradient part can overlap the backward.
typedef enum { SHARDING_NONE, SHARDING_ZERO1, SHARDING_ZERO2 } sharding;

// Predicted efficiency at R GPUs and bw bytes/s, without (overlap false) or with overlap.
static double efficiency(const setup *s, const model *m, double R, double bw, bool overlap, sharding z) {
    double t1 = step_flops(s, m, 1) / s->flop_rate, compute = step_flops(s, m, R) / s->flop_rate;
    double shard = (R - 1) / R * 4 * m->params / bw;  // a reduce-scatter's or an all-gather's time
    double grads = z == SHARDING_ZERO2 ? shard : wire_grads(m, R) / bw, features = wire_features(s, m, R) / bw;
    double gather = z == SHARDING_NONE ? 0 : shard;
    if (overlap) {  // the backward: 2/3 of the towers' compute, 3/4 when it recomputes the forward
        double backward = (s->ckpt ? 0.75 : 2.0 / 3.0) * towers_flops(s, m) / s->flop_rate;
        double last_bucket = grads * fmin(1.0, BUCKET_ELEMENTS / m->params);
        grads = fmax(last_bucket, grads - backward);
    }
    return t1 / (compute + features + grads + gather);
}

static void print_header(const setup *s) {
    printf("| model | batch per GPU | GPUs | all-reduced | gathered | sent per GPU: gradients + features | compute |");
    for (int b = 0; b < s->n_bandwidths; b++) printf(" %g GB/s |", s->bandwidths[b]);
    printf("\n|---|---|---|---|---|---|---|");
    for (int b = 0; b < s->n_bandwidths; b++) printf("---|");
    printf("\n");
}

static void print_row(const setup *s, const model *m, double R) {
    double gathered = 2 * R * m->batch * m->cfg.embed_dim * s->feature_bytes;
    printf("| %s (%.1f M) | %g | %g | %.0f MB | %.1f MB | %.0f + %.1f MB | %.3f s |", m->cfg.name, m->params / 1e6,
           m->batch, R, 4 * m->params / 1e6, gathered / 1e6, wire_grads(m, R) / 1e6, wire_features(s, m, R) / 1e6,
           step_flops(s, m, R) / s->flop_rate);
    for (int b = 0; b < s->n_bandwidths; b++) {
        double bw = s->bandwidths[b] * 1e9;
        double comm = (wire_grads(m, R) + wire_features(s, m, R)) / bw;
        printf(" %.0f%% / %.0f%% (%.3f s) |", 100 * efficiency(s, m, R, bw, false, SHARDING_NONE),
               100 * efficiency(s, m, R, bw, true, SHARDING_NONE),
               comm);
    }
    printf("\n");
}

// ---- memory per GPU ----

// One tower's shape for the activation formulas: L blocks over T tokens of width W, MLP M, H heads.
typedef struct {
    double L, T, W, M, H;
} tower;

static void towers_of(const setup *s, const model *m, tower t[2]) {
    const clip_config *c = &m->cfg;
    double G = c->vision.image_size / c->vision.patch_size, W = c->vision.width, Wt = c->text.width;
    t[0] = (tower){c->vision.layers, G * G + 1, W, (int)(W * c->vision.mlp_ratio), W / c->vision.head_width};
    t[1] = (tower){c->text.layers, s->text_len, Wt, 4 * Wt, c->text.heads};
}

// Bytes one block keeps for its backward per token. amp_bf16 with fused attention (libtorch 2.x
// on a GPU): the block input and ln_2's input in fp32 (4W + 4W), the bf16 casts of the two
// LayerNorms' outputs (2W + 2W), q|k|v (6W), attention's output and its contiguous copy (2W + 2W),
// the MLP's hidden layer before and after GELU (2M + 2M), the log-sum-exp (4H). fp32 with the
// explicit attention of libtorch 1.13 (the CPU here): the same tensors in fp32 with q scaled, k and
// v copied for the batched products (12W), and the softmax's probabilities (4 H T).
static double block_bytes_per_token(const setup *s, const tower *t) {
    return s->amp ? 22 * t->W + 4 * t->M + 4 * t->H : 32 * t->W + 8 * t->M + 4 * t->H * t->T;
}

// The bf16 copies of one block's weight matrices that autocast makes and the products keep.
static double block_weight_copies(const setup *s, const tower *t) {
    return s->amp ? 2 * (4 * t->W * t->W + 2 * t->W * t->M) : 0;
}

// Activation bytes of B samples: the blocks' (with checkpointing: each block's input, plus one
// block recomputed at a time, the largest), the towers' ends (about three (T, W) fp32 tensors
// each: embeddings, positions, final LayerNorm), and the loss over R B columns (logits and their
// log-softmax both ways, fp32).
static double activation_bytes(const setup *s, const model *m, double R) {
    tower t[2];
    towers_of(s, m, t);
    double B = m->batch, kept = 0, recompute = 0;
    for (int i = 0; i < 2; i++) {
        double block = B * t[i].T * block_bytes_per_token(s, &t[i]) + block_weight_copies(s, &t[i]);
        kept += s->ckpt ? t[i].L * B * t[i].T * 4 * t[i].W : t[i].L * block;
        recompute = s->ckpt ? fmax(recompute, block) : 0;
        kept += 3 * B * t[i].T * 4 * t[i].W;
    }
    return kept + recompute + 16 * B * R * B;
}

// Bytes per GPU: fp32 weights and the full flat gradient buffer (which the backward fills whatever
// the sharding), AdamW's two fp32 moments (1/R of them under ZeRO), ZeRO-2's reduced shard of the
// gradients (a buffer of its own unless it is reduced into the flat buffer), and the activations.
static double memory_bytes(const setup *s, const model *m, double R, sharding z) {
    double P = m->params, moments = z == SHARDING_NONE ? 8 * P : 8 * P / R;
    return 4 * P + 4 * P + moments + (z == SHARDING_ZERO2 ? 4 * P / R : 0) + activation_bytes(s, m, R);
}

static void print_memory(setup *s, const model *m, double R) {
    double GiB = 1 << 30, budget = s->gpu_bytes - s->reserve_bytes;
    bool ckpt = s->ckpt;
    double act[2];
    for (int c = 0; c < 2; c++) s->ckpt = c, act[c] = activation_bytes(s, m, R);
    printf("| %s (%.1f M) | %g | %g | %.1f | %.1f / %.1f | %.1f / %.1f |", m->cfg.name, m->params / 1e6, m->batch, R,
           8 * m->params / GiB, 8 * m->params / GiB, 8 * m->params / R / GiB, act[0] / GiB, act[1] / GiB);
    for (int z = 0; z < 3; z++) {
        printf(" ");
        for (int c = 0; c < 2; c++) {
            s->ckpt = c;
            double total = memory_bytes(s, m, R, (sharding)z);
            printf("%s%.1f%s", c ? " / " : "", total / GiB, total <= budget ? "" : " (x)");
        }
        printf(" |");
    }
    s->ckpt = ckpt;
    printf("\n");
}

static void print_memory_table(setup *s, const model *models, int n) {
    printf("\nmemory per GPU in GiB, activations as under %s; (x): over %.0f GiB (%.0f GiB GPU less %.0f GiB for the "
           "CUDA context, workspaces and fragmentation)\n\n", s->amp ? "amp_bf16 (fused attention)" : "fp32 (explicit attention)",
           (s->gpu_bytes - s->reserve_bytes) / (1 << 30), s->gpu_bytes / (1 << 30), s->reserve_bytes / (1 << 30));
    printf("| model | batch per GPU | GPUs | weights + gradients | AdamW moments: DDP / ZeRO | activations: all / "
           "checkpointed | DDP: all / checkpointed | ZeRO-1 | ZeRO-2 |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++)
        for (int r = 0; r < s->n_ranks; r++) print_memory(s, &models[i], s->ranks[r]);
}

// Efficiency with overlap under each sharding, at every bandwidth.
static void print_sharding_table(const setup *s, const model *models, int n) {
    printf("\nefficiency with the all-reduce (or reduce-scatter) overlapped: DDP / ZeRO-1 / ZeRO-2%s\n\n",
           s->ckpt ? ", gradient checkpointing" : "");
    printf("| model | batch per GPU | GPUs | compute |");
    for (int b = 0; b < s->n_bandwidths; b++) printf(" %g GB/s |", s->bandwidths[b]);
    printf("\n|---|---|---|---|");
    for (int b = 0; b < s->n_bandwidths; b++) printf("---|");
    printf("\n");
    for (int i = 0; i < n; i++)
        for (int r = 0; r < s->n_ranks; r++) {
            const model *m = &models[i];
            double R = s->ranks[r];
            printf("| %s | %g | %g | %.3f s |", m->cfg.name, m->batch, R, step_flops(s, m, R) / s->flop_rate);
            for (int b = 0; b < s->n_bandwidths; b++) {
                double bw = s->bandwidths[b] * 1e9;
                printf(" %.0f%% / %.0f%% / %.0f%% |", 100 * efficiency(s, m, R, bw, true, SHARDING_NONE),
                       100 * efficiency(s, m, R, bw, true, SHARDING_ZERO1), 100 * efficiency(s, m, R, bw, true, SHARDING_ZERO2));
            }
            printf("\n");
        }
}

// Builds the model as clipc does and compares its parameter count with the formula.
static int check_params(const model *m) {
    clip_model *built = clip_model_init(&m->cfg, 0);
    if (!built) return -1;
    double numel = (double)built->params.numel;
    clip_model_free(built);
    printf("%s: %.0f parameters built, %.0f by formula\n", m->cfg.name, numel, m->params);
    return numel == m->params ? 0 : err_set("%s: the formula misses %.0f parameters", m->cfg.name, numel - m->params);
}

int main(int argc, char **argv) {
    char *configs = NULL, *ranks = "8,64,512", *bandwidths = "300,50,12.5", *anchor_name = "ViT-B-32";
    long batch = 256, anchor_batch = 256, anchor_ranks = 128;
    double anchor_sps = 850, feature_bytes = 4, text_len = 77;
    bool check = false, memory = false, sharded = false, ckpt = false;
    char *precision = "amp_bf16";
    double gpu_gib = 80, reserve_gib = 4;
    arg_spec specs[] = {
        {"batch-size", ARG_INT, &batch, "samples per GPU of a MODEL given without :BATCH", false},
        {"ranks", ARG_STR, &ranks, "world sizes, comma-separated", false},
        {"bandwidths", ARG_STR, &bandwidths, "bandwidths of the ring's slowest hop in GB/s, comma-separated", false},
        {"anchor-model", ARG_STR, &anchor_name, "the measured model", false},
        {"anchor-batch", ARG_INT, &anchor_batch, "its batch per GPU", false},
        {"anchor-samples-per-s", ARG_FLOAT, &anchor_sps, "its samples/s per GPU", false},
        {"anchor-ranks", ARG_INT, &anchor_ranks, "the GPUs it ran on", false},
        {"feature-bytes", ARG_FLOAT, &feature_bytes, "bytes per gathered feature value (4: fp32, 2: bf16)", false},
        {"text-len", ARG_FLOAT, &text_len, "text positions the text tower computes", false},
        {"configs", ARG_STR, &configs, "folder of model configs", false},
        {"check", ARG_FLAG, &check, "build each model and compare its parameter count with the formula", false},
        {"memory", ARG_FLAG, &memory, "also print the memory per GPU (DDP, ZeRO-1, ZeRO-2; with and without checkpointing)", false},
        {"sharding", ARG_FLAG, &sharded, "also print the efficiency with overlap under DDP, ZeRO-1 and ZeRO-2", false},
        {"grad-checkpointing", ARG_FLAG, &ckpt, "the towers' forward runs twice (compute and the overlap's backward)", false},
        {"precision", ARG_STR, &precision, "activations of --memory: amp_bf16 (fused attention) or fp32 (explicit attention)", false},
        {"gpu-gib", ARG_FLOAT, &gpu_gib, "memory of a GPU in GiB (--memory)", false},
        {"reserve-gib", ARG_FLOAT, &reserve_gib, "of which the CUDA context, workspaces and fragmentation take (--memory)", false},
    };
    int n_specs = sizeof specs / sizeof specs[0], n_names = 0;
    char *names[MAX_MODELS];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, names, MAX_MODELS, &n_names);
    if (rc > 0) args_print_help(specs, n_specs, "scaling_model [MODEL[:BATCH] ...] [options]");
    if (rc) return rc > 0 ? 0 : (fprintf(stderr, "scaling_model: %s\n", err_msg()), 2);
    if (n_names == 0) n_names = 2, names[0] = "ViT-B-32", names[1] = "ViT-L-14";
    if (strcmp(precision, "amp_bf16") && strcmp(precision, "fp32"))
        return fprintf(stderr, "scaling_model: --precision must be amp_bf16 or fp32, got '%s'\n", precision), 2;
    setup s = {.feature_bytes = feature_bytes, .text_len = text_len, .amp = !strcmp(precision, "amp_bf16"),
               .gpu_bytes = gpu_gib * (1 << 30), .reserve_bytes = reserve_gib * (1 << 30)};
    model models[MAX_MODELS], anchor;
    rc = (s.n_ranks = parse_list(ranks, "ranks", s.ranks)) < 0 ||
         (s.n_bandwidths = parse_list(bandwidths, "bandwidths", s.bandwidths)) < 0 ||
         load_model(anchor_name, configs, (double)anchor_batch, &anchor);
    for (int i = 0; i < n_names && rc == 0; i++) rc = load_model(names[i], configs, (double)batch, &models[i]);
    for (int i = 0; i < n_names && rc == 0 && check; i++) rc = check_params(&models[i]);
    if (rc) return fprintf(stderr, "scaling_model: %s\n", err_msg()), 1;
    s.flop_rate = step_flops(&s, &anchor, (double)anchor_ranks) * anchor_sps / anchor.batch;
    s.ckpt = ckpt;  // after the anchor, which ran without
    printf("anchor: %s, batch %g per GPU, %g samples/s per GPU on %ld GPUs: %.3g TFLOP/s per GPU "
           "(%.3g GFLOP per sample at %g text positions)\n\n", anchor.cfg.name, anchor.batch, anchor_sps, anchor_ranks,
           s.flop_rate / 1e12, clip_cost_step_flops(&anchor.cfg, 1, text_len) / 1e9, text_len);
    print_header(&s);
    for (int i = 0; i < n_names; i++)
        for (int r = 0; r < s.n_ranks; r++) print_row(&s, &models[i], s.ranks[r]);
    printf("\nall-reduced and gathered: payloads per step (gradients fp32; image and text features);\n"
           "cells: efficiency without / with overlap of the all-reduce (communication time per step)\n");
    if (sharded) print_sharding_table(&s, models, n_names);
    if (memory) print_memory_table(&s, models, n_names);
    return 0;
}
