// `clipc distill-cache`: runs a distillation teacher once over a shard set and stores its
// normalized image and text features beside the shards, one side file per shard
// (train/distill_cache.h), for `clipc train --distill-cache DIR`.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/commands.h"
#include "cli/eval_args.h"
#include "common/args.h"
#include "common/error.h"
#include "train/distill_cache.h"

static const char USAGE[] =
    "clipc distill-cache --pretrained TEACHER [--model CONFIG] --vocab VOCAB --data MANIFEST [--out DIR]\n"
    "                    [--augmentations K --aug-cfg KEY=VALUE... --seed S]\n\n"
    "Runs the teacher over every sample of the shards (evaluation transform: resize and centre crop at the\n"
    "teacher's image size; captions at its context length) and writes DIR/<shard>" DISTILL_CACHE_SUFFIX "\n"
    "per shard: the normalized image and text features, the teacher's logit scale and identity, and the\n"
    "shard's identity. DIR defaults to the manifest's folder (beside the shards). Train against them with\n"
    "'clipc train --distill-cache DIR': no teacher forward at all, but the targets are those of the\n"
    "evaluation crop, not of each random training crop, unless --augmentations K also stores K random\n"
    "training views per sample (--aug-cfg, drawn from --seed) with the teacher's features of each: training\n"
    "then shows each sample one of its stored views. Teacher ensembles: --pretrained A::B [--model CA::CB]\n"
    "--out DA::DB, one folder per teacher, the same views in each (docs/distillation.md).";

typedef struct {
    eval_options common;
    char *data, *out, *precision, *aug_cfg;
    long augmentations, seed;
} cache_options;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// The folder of the manifest: the data argument itself when it is a folder.
static int default_out(const char *data, char *out, size_t cap) {
    if (strstr(data, "::")) return err_set("--out is required with several data sources ('%s')", data);
    struct stat st;
    snprintf(out, cap, "%s", data);
    if (stat(data, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    char *slash = strrchr(out, '/');
    if (slash) *slash = '\0';
    else snprintf(out, cap, ".");
    return 0;
}

static void print_shard(void *ctx, const char *path, int64_t samples) {
    int64_t *total = ctx;
    *total += samples;
    printf("wrote %s (%lld samples)\n", path, (long long)samples);
    fflush(stdout);
}

static int run_one(const cache_options *o, const eval_options *common, const char *dir, bool bf16);

// The stored targets of teacher i of n (its weights, config and folder from the '::' lists).
static int run_teacher(const cache_options *o, int i, int n, bool bf16) {
    eval_options common = o->common;
    char *weights = NULL, *model = NULL, *out = NULL, dir[4096];
    int rc = args_list_item("pretrained", o->common.pretrained, i, n, &weights);
    if (rc == 0 && o->common.model) rc = args_list_item("model", o->common.model, i, n, &model);
    if (rc == 0 && o->out) rc = args_list_item("out", o->out, i, n, &out);
    if (rc == 0 && n > 1 && (!o->out || strstr(o->out, "::") == NULL))
        rc = err_set("--out: %d teachers need one folder each ('DA::DB'): one folder holds one teacher's targets", n);
    if (rc == 0 && out) snprintf(dir, sizeof dir, "%s", out);
    else if (rc == 0) rc = default_out(o->data, dir, sizeof dir);
    common.pretrained = weights, common.model = model;
    if (rc == 0) rc = run_one(o, &common, dir, bf16);
    free(weights), free(model), free(out);
    return rc;
}

static int run(const cache_options *o) {
    if (!o->data) return err_set("--data: the shards whose teacher targets to store (a manifest)");
    bool bf16 = !strcmp(o->precision, "amp_bf16");
    if (!bf16 && strcmp(o->precision, "fp32")) return err_set("--precision must be fp32 or amp_bf16, got '%s'", o->precision);
    if (!o->common.pretrained) return err_set("--pretrained: the teacher's weights");
    char **items;
    int n = args_split_list(o->common.pretrained, &items);
    args_free_list(items, n);
    for (int i = 0; i < n; i++)
        if (run_teacher(o, i, n, bf16) != 0) return -1;
    return 0;
}

static int run_one(const cache_options *o, const eval_options *common, const char *dir, bool bf16) {
    session s;
    if (eval_session_open(common, true, &s) != 0) return -1;
    distill_teacher_id id;
    int rc = distill_teacher_id_init(&id, &s.cfg, s.weights.path);
    int64_t samples = 0;
    double t0 = now_s();
    distill_cache_build_options bo = {.data = o->data, .dir = dir, .batch_size = (int)o->common.batch_size,
                                      .workers = (int)o->common.workers, .bf16 = bf16, .on_shard = print_shard,
                                      .ctx = &samples, .views = (int)o->augmentations, .aug_cfg = o->aug_cfg,
                                      .seed = (uint64_t)o->seed};
    if (rc == 0 && bf16 && s.device.type != TENSOR_DEVICE_CUDA) rc = err_set("--precision amp_bf16 needs a GPU");
    if (rc == 0) rc = distill_cache_build(&s, &id, &bo);
    if (rc == 0)
        printf("clipc distill-cache: %lld samples, teacher '%s' (%s, CRC-32 %08x) -> %s (%.1f s)\n", (long long)samples,
               id.name, id.weights, (unsigned)id.weights_crc32, dir, now_s() - t0);
    distill_teacher_id_free(&id);
    session_close(&s);
    return rc;
}

int cmd_distill_cache(int argc, char **argv) {
    cache_options o = {.precision = "fp32"};
    eval_options_default(&o.common);
    arg_spec specs[EVAL_N_COMMON_SPECS + 6] = {
        {"data", ARG_STR, &o.data, "manifest of the shards (or a folder holding manifest.json)", false},
        {"out", ARG_STR, &o.out, "folder of the side files (default: the manifest's folder)", false},
        {"precision", ARG_STR, &o.precision, "fp32, or amp_bf16 (bf16 autocast, GPU only)", false},
        {"augmentations", ARG_INT, &o.augmentations, "K random training views stored per sample (0: evaluation crops only)", false},
        {"aug-cfg", ARG_STR, &o.aug_cfg, "their augmentation, OpenCLIP's --aug-cfg as one argument: \"scale=(0.5,1) color_jitter=0.4\"", false},
        {"seed", ARG_INT, &o.seed, "seed of their draws", false},
    };
    eval_options_specs(&o.common, specs + 6);
    int rc = args_parse_command("distill-cache", USAGE, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, NULL, 0,
                                NULL);
    if (rc < 0) rc = run(&o) == 0 ? 0 : eval_fail("distill-cache");
    return rc;
}
