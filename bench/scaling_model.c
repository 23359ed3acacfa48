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
// Usage: scaling_model [MODEL[:BATCH] ...] [--batch-size 256] [--ranks 8,64,512]
//          [--bandwidths 300,50,12.5] [--anchor-model ViT-B-32] [--anchor-batch 256]
//          [--anchor-samples-per-s 850] [--anchor-ranks 128] [--feature-bytes 4] [--text-len 77]
//          [--configs DIR] [--check]
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
static double step_flops(const setup *s, const model *m, double R) {
    double B = m->batch;
    return clip_cost_step_flops(&m->cfg, B, s->text_len) + 12 * B * R * B * m->cfg.embed_dim;
}

// Bytes one GPU sends per step: the gradient all-reduce's (ring) and the features' gather and scatter.
static double wire_grads(const model *m, double R) { return 2 * (R - 1) / R * 4 * m->params; }
static double wire_features(const setup *s, const model *m, double R) {
    return 2 * 2 * (R - 1) * m->batch * m->cfg.embed_dim * s->feature_bytes;
}

// Predicted efficiency at R GPUs and bw bytes/s, without (overlap false) or with overlap.
static double efficiency(const setup *s, const model *m, double R, double bw, bool overlap) {
    double t1 = step_flops(s, m, 1) / s->flop_rate, compute = step_flops(s, m, R) / s->flop_rate;
    double all_reduce = wire_grads(m, R) / bw, features = wire_features(s, m, R) / bw;
    if (overlap) {
        double backward = 2.0 / 3.0 * clip_cost_step_flops(&m->cfg, m->batch, s->text_len) / s->flop_rate;
        double last_bucket = all_reduce * fmin(1.0, BUCKET_ELEMENTS / m->params);
        all_reduce = fmax(last_bucket, all_reduce - backward);
    }
    return t1 / (compute + features + all_reduce);
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
        printf(" %.0f%% / %.0f%% (%.3f s) |", 100 * efficiency(s, m, R, bw, false), 100 * efficiency(s, m, R, bw, true),
               comm);
    }
    printf("\n");
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
    bool check = false;
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
    };
    int n_specs = sizeof specs / sizeof specs[0], n_names = 0;
    char *names[MAX_MODELS];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, names, MAX_MODELS, &n_names);
    if (rc > 0) args_print_help(specs, n_specs, "scaling_model [MODEL[:BATCH] ...] [options]");
    if (rc) return rc > 0 ? 0 : (fprintf(stderr, "scaling_model: %s\n", err_msg()), 2);
    if (n_names == 0) n_names = 2, names[0] = "ViT-B-32", names[1] = "ViT-L-14";
    setup s = {.feature_bytes = feature_bytes, .text_len = text_len};
    model models[MAX_MODELS], anchor;
    rc = (s.n_ranks = parse_list(ranks, "ranks", s.ranks)) < 0 ||
         (s.n_bandwidths = parse_list(bandwidths, "bandwidths", s.bandwidths)) < 0 ||
         load_model(anchor_name, configs, (double)anchor_batch, &anchor);
    for (int i = 0; i < n_names && rc == 0; i++) rc = load_model(names[i], configs, (double)batch, &models[i]);
    for (int i = 0; i < n_names && rc == 0 && check; i++) rc = check_params(&models[i]);
    if (rc) return fprintf(stderr, "scaling_model: %s\n", err_msg()), 1;
    s.flop_rate = step_flops(&s, &anchor, (double)anchor_ranks) * anchor_sps / anchor.batch;
    printf("anchor: %s, batch %g per GPU, %g samples/s per GPU on %ld GPUs: %.3g TFLOP/s per GPU "
           "(%.3g GFLOP per sample at %g text positions)\n\n", anchor.cfg.name, anchor.batch, anchor_sps, anchor_ranks,
           s.flop_rate / 1e12, clip_cost_step_flops(&anchor.cfg, 1, text_len) / 1e9, text_len);
    print_header(&s);
    for (int i = 0; i < n_names; i++)
        for (int r = 0; r < s.n_ranks; r++) print_row(&s, &models[i], s.ranks[r]);
    printf("\nall-reduced and gathered: payloads per step (gradients fp32; image and text features);\n"
           "cells: efficiency without / with overlap of the all-reduce (communication time per step)\n");
    return 0;
}
