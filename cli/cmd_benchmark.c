// `clipc benchmark`: zero-shot classification and retrieval of several models on several datasets
// (eval/benchmark.h): one JSON per run, finished runs skipped, a merged table printed and written as
// CSV and Markdown. With torchrun-style RANK and WORLD_SIZE in the environment the runs are shared.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "shards/manifest.h"
#include "eval/benchmark.h"
#include "cli/eval_args.h"
#include "common/datafiles.h"
#include "eval/embed.h"
#include "shim/tensor.h"

#define PROGRESS_EVERY_SECONDS 10.0

static const char USAGE[] =
    "clipc benchmark --pretrained [NAME=]CKPT[::...] [--model CONFIG[::...]]\n"
    "                [--zeroshot [NAME=]DATA[::...]] [--retrieval [NAME=]DATA[::...]] --output DIR\n\n"
    "Runs every model on every dataset: zero-shot classification (top-1, top-5, mean per-class recall)\n"
    "on labelled shards, image<->text retrieval (recall@1/5/10) on captioned shards. Each run writes\n"
    "DIR/<model>/<dataset>.json and is skipped when that file is already there; the merged table goes\n"
    "to stdout and to DIR/results.csv and DIR/results.md. --model, --classnames and --templates take\n"
    "one entry for all or one per model / zero-shot set. A zero-shot set named NAME uses\n"
    "<zeroshot-configs>/NAME-classnames.txt and NAME-templates.txt when present, else the shards'\n"
    "class names and OpenAI's ImageNet templates. With RANK and WORLD_SIZE set (torchrun) each\n"
    "process does its share of the runs.";

typedef struct {
    eval_options common;  // pretrained and model hold the '::' lists
    char *zeroshot, *retrieval, *classnames, *templates, *zeroshot_configs, *output;
    long chunk_size;
    char local_device[32];  // "cuda:LOCAL_RANK" under torchrun
} bench_options;

// The command's side of the hooks: the eval session of the model being run.
typedef struct {
    eval_options common;
    session session;
} bench_ctx;

static int hook_open_model(void *ctx, const benchmark_model *m, const clip_model **model, const tokenizer **tok) {
    bench_ctx *c = ctx;
    eval_options o = c->common;
    o.pretrained = (char *)m->pretrained, o.model = (char *)m->config;
    if (eval_session_open(&o, true, &c->session)) return -1;
    *model = c->session.model, *tok = c->session.tok;
    return 0;
}

static void hook_close_model(void *ctx) { session_close(&((bench_ctx *)ctx)->session); }

static loader *hook_open_loader(void *ctx, const char *data, bool with_tokens) {
    bench_ctx *c = ctx;
    return eval_loader_open(&c->session, data, (int)c->common.batch_size, (int)c->common.workers, with_tokens);
}

// ---- models and datasets from the options ----------------------------------------------------------

// "NAME=PATH" (NAME without '/') or "PATH", whose name is then made by default_name.
static void split_named(const char *item, char *(*default_name)(const char *), char **name, char **path) {
    const char *eq = strchr(item, '=');
    if (eq && eq > item && !memchr(item, '/', (size_t)(eq - item))) {
        *name = strndup(item, (size_t)(eq - item));
        *path = xstrdup(eq + 1);
    } else {
        *name = default_name(item);
        *path = xstrdup(item);
    }
}

// "ckpt/ViT-B-32.safetensors" -> "ViT-B-32"; a clipc checkpoint's weights,
// "logs/run/checkpoints/epoch_10/model.safetensors", -> "epoch_10".
static char *file_stem(const char *path) {
    const char *slash = strrchr(path, '/');
    char *stem = xstrdup(slash ? slash + 1 : path), *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = '\0';
    if (strcmp(stem, "model") != 0 || !slash || slash == path) return stem;
    const char *start = slash - 1;
    while (start > path && start[-1] != '/') start--;
    free(stem);
    return strndup(start, (size_t)(slash - start));
}

typedef struct {
    benchmark_model *models;
    benchmark_dataset *datasets;
    int n_models, n_datasets;
    char **owned;  // every string the plan points to
    int n_owned, cap_owned;
} bench_lists;

static char *own(bench_lists *b, char *s) {
    if (b->n_owned == b->cap_owned) b->owned = xrealloc(b->owned, (size_t)(b->cap_owned = 2 * b->cap_owned + 16) * sizeof(char *));
    return b->owned[b->n_owned++] = s;
}

static int add_models(const bench_options *o, bench_lists *b) {
    char **items = NULL;
    int n = args_split_list(o->common.pretrained, &items), rc = 0;
    b->models = xcalloc((size_t)n, sizeof(benchmark_model));
    for (int i = 0; i < n && rc == 0; i++, b->n_models++) {
        char *name, *path, *config = NULL;
        split_named(items[i], file_stem, &name, &path);
        rc = o->common.model ? args_list_item("model", o->common.model, i, n, &config) : 0;
        if (config && !config[0]) {  // an empty entry: the checkpoint's own config
            free(config);
            config = NULL;
        }
        b->models[i] = (benchmark_model){own(b, name), own(b, path), config ? own(b, config) : NULL};
    }
    args_free_list(items, n);
    return rc;
}

// <configs>/<name>-<what>.txt when it exists, else NULL.
static char *shipped_list(const bench_options *o, const char *name, const char *what) {
    size_t len = strlen(name) + strlen(what) + 8;
    char *file = xmalloc(len);
    snprintf(file, len, "%s-%s.txt", name, what);
    char *path = fs_join(o->zeroshot_configs, file);
    free(file);
    if (access(path, R_OK) == 0) return path;
    free(path);
    return NULL;
}

// The list file of zero-shot set i of n for --what ("classnames" or "templates"): the given entry,
// else (no option, or an empty entry) <configs>/<name>-<what>.txt when present, else the default:
// the shards' class names (NULL), OpenAI's ImageNet templates.
static int zeroshot_list(const bench_options *o, const char *what, const char *given, int i, int n, const char *name,
                         char **out) {
    *out = NULL;
    if (given && args_list_item(what, given, i, n, out)) return -1;
    if (*out && (*out)[0]) return access(*out, R_OK) == 0 ? 0 : err_errno(*out);
    free(*out);
    *out = shipped_list(o, name, what);
    if (*out || strcmp(what, "templates")) return 0;
    *out = shipped_list(o, "imagenet", "templates");
    return *out ? 0 : err_set("%s: no templates for %s and no imagenet-templates.txt (pass --templates or --zeroshot-configs)",
                              o->zeroshot_configs, name);
}

static int add_datasets(const bench_options *o, const char *list, benchmark_task task, bench_lists *b) {
    char **items = NULL;
    int n = args_split_list(list, &items), rc = 0;
    b->datasets = xrealloc(b->datasets, (size_t)(b->n_datasets + n) * sizeof(benchmark_dataset));
    for (int i = 0; i < n && rc == 0; i++) {
        char *name, *path, *classnames = NULL, *templates = NULL;
        split_named(items[i], manifest_dataset_name, &name, &path);
        if (task == BENCHMARK_ZEROSHOT)
            rc = zeroshot_list(o, "classnames", o->classnames, i, n, name, &classnames) ||
                 zeroshot_list(o, "templates", o->templates, i, n, name, &templates) ? -1 : 0;
        b->datasets[b->n_datasets++] = (benchmark_dataset){own(b, name), own(b, path), task,
                                                           classnames ? own(b, classnames) : NULL,
                                                           templates ? own(b, templates) : NULL};
    }
    args_free_list(items, n);
    return rc;
}

static void free_lists(bench_lists *b) {
    for (int i = 0; i < b->n_owned; i++) free(b->owned[i]);
    free(b->owned), free(b->models), free(b->datasets);
}

// An integer environment variable (fallback when unset). Returns 0, or -1 naming it.
static int env_int(const char *name, int fallback, int *out) {
    const char *v = getenv(name);
    char *end = NULL;
    *out = v ? (int)strtol(v, &end, 10) : fallback;
    return v && (!*v || *end) ? err_set("%s '%s' must be an integer", name, v) : 0;
}

// torchrun's RANK and WORLD_SIZE (0 and 1 when unset); with LOCAL_RANK on a GPU machine, the
// process's GPU is cuda:LOCAL_RANK unless --device says otherwise.
static int read_ranks(bench_options *o, int *rank, int *world_size) {
    int local = -1;
    if (env_int("RANK", 0, rank) || env_int("WORLD_SIZE", 1, world_size) || env_int("LOCAL_RANK", -1, &local)) return -1;
    bool cuda = o->common.device ? !strcmp(o->common.device, "cuda") : tensor_cuda_device_count() > 0;
    if (local >= 0 && cuda) {
        snprintf(o->local_device, sizeof o->local_device, "cuda:%d", local);
        o->common.device = o->local_device;
    }
    return 0;
}

// ---- progress -------------------------------------------------------------------------------------

static void format_duration(double s, char *out, size_t cap) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(out, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(out, cap, "%lds", t);
}

static void print_progress(void *ctx, const benchmark_progress *p) {
    double *last = ctx;
    char eta[32] = "?";
    if (p->eta >= 0) format_duration(p->eta, eta, sizeof eta);
    const char *task = p->dataset->task == BENCHMARK_ZEROSHOT ? "zero-shot classification" : "retrieval";
    switch (p->event) {
    case BENCHMARK_EVENT_SKIPPED:
        fprintf(stderr, "clipc benchmark: [%d/%d] %s on %s: already done (%s)\n", p->run, p->n_runs, p->model->name,
                p->dataset->name, p->path);
        break;
    case BENCHMARK_EVENT_START:
        fprintf(stderr, "clipc benchmark: [%d/%d] %s on %s (%s)\n", p->run, p->n_runs, p->model->name, p->dataset->name, task);
        *last = p->elapsed;
        break;
    case BENCHMARK_EVENT_BATCH:
        if (p->elapsed - *last < PROGRESS_EVERY_SECONDS) break;
        *last = p->elapsed;
        fprintf(stderr, "clipc benchmark:   %lld of %lld samples, %.0f samples/s, ETA %s\n", (long long)p->samples_done,
                (long long)p->samples_total, (double)p->samples_done / (p->elapsed + 1e-9), eta);
        break;
    case BENCHMARK_EVENT_DONE:
        fprintf(stderr, "clipc benchmark: [%d/%d] %s on %s: done -> %s (ETA %s)\n", p->run, p->n_runs, p->model->name,
                p->dataset->name, p->path, eta);
        break;
    case BENCHMARK_EVENT_FAILED:
        fprintf(stderr, "clipc benchmark: [%d/%d] FAILED: %s\n", p->run, p->n_runs, p->error);
        break;
    }
}

// ---- command ----------------------------------------------------------------------------------------

static int check_required(const bench_options *o) {
    if (!o->common.pretrained) return err_set("--pretrained: which weights to benchmark ('::' between models)");
    if (!o->zeroshot && !o->retrieval) return err_set("nothing to run: give --zeroshot DATA and/or --retrieval DATA");
    if (!o->output) return err_set("--output DIR: where the per-run JSON files and the table go");
    return 0;
}

static int build_plan(bench_options *o, bench_lists *b, benchmark_plan *p) {
    if (add_models(o, b) || (o->zeroshot && add_datasets(o, o->zeroshot, BENCHMARK_ZEROSHOT, b)) ||
        (o->retrieval && add_datasets(o, o->retrieval, BENCHMARK_RETRIEVAL, b)))
        return -1;
    *p = (benchmark_plan){.models = b->models, .n_models = b->n_models, .datasets = b->datasets,
                          .n_datasets = b->n_datasets, .out_dir = o->output, .chunk_rows = o->chunk_size};
    return read_ranks(o, &p->rank, &p->world_size) || benchmark_check(p) ? -1 : 0;
}

static int run_benchmark(const bench_options *o, benchmark_plan *p) {
    bench_ctx ctx = {.common = o->common};
    double last = 0;
    p->hooks = (benchmark_hooks){hook_open_model, hook_close_model, hook_open_loader, &ctx};
    p->progress = print_progress, p->progress_ctx = &last;
    if (p->world_size > 1)
        fprintf(stderr, "clipc benchmark: rank %d of %d: its share of the %d runs\n", p->rank, p->world_size,
                p->n_models * p->n_datasets);
    benchmark_summary sum;
    int rc = benchmark_run(p, &sum);
    char *failures = rc ? xstrdup(err_msg()) : NULL;
    char *markdown = NULL;
    int rows = benchmark_write_table(p, &markdown);
    if (rows >= 0) {
        printf("%s", markdown);
        fprintf(stderr, "clipc benchmark: %d runs done, %d already there, %d failed; table of %d runs: %s/results.csv, %s/results.md\n",
                sum.done, sum.skipped, sum.failed, rows, o->output, o->output);
    }
    free(markdown);
    if (failures) err_set("%s", failures);
    free(failures);
    return rc || rows < 0 ? -1 : 0;
}

int cmd_benchmark(int argc, char **argv) {
    bench_options o = {0};
    eval_options_default(&o.common);
    arg_spec specs[EVAL_N_COMMON_SPECS + 7] = {
        {"zeroshot", ARG_STR, &o.zeroshot, "labelled shards for zero-shot classification: [NAME=]DATA, '::' between sets", false},
        {"retrieval", ARG_STR, &o.retrieval, "captioned shards for retrieval: [NAME=]DATA, '::' between sets", false},
        {"classnames", ARG_STR, &o.classnames, "class names files: one for all zero-shot sets or one per set (empty: default)", false},
        {"templates", ARG_STR, &o.templates, "templates files: one for all zero-shot sets or one per set (empty: default)", false},
        {"zeroshot-configs", ARG_STR, &o.zeroshot_configs, "where NAME-classnames.txt, NAME-templates.txt are looked up (default: the shipped zero-shot lists)", false},
        {"output", ARG_STR, &o.output, "folder of the per-run JSON files and the table", false},
        {"chunk-size", ARG_INT, &o.chunk_size, "retrieval: queries scored at a time (0: 64 MiB of scores)", false},
    };
    eval_options_specs(&o.common, specs + 7);  // --pretrained and --model take '::' lists here
    specs[7].help = "the weights: [NAME=]FILE (OpenCLIP state dict or clipc checkpoint), '::' between models";
    specs[8].help = "model config name or JSON path, one for all or one per model (default: the checkpoint's)";
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse_command("benchmark", USAGE, specs, n_specs, argc, argv, NULL, 0, NULL);
    if (rc >= 0) return rc;
    char shipped[4096];
    if (!o.zeroshot_configs && datafile_path("zeroshot", shipped, sizeof shipped) != 0) return eval_fail("benchmark");
    if (!o.zeroshot_configs) o.zeroshot_configs = shipped;
    if (check_required(&o)) {
        fprintf(stderr, "clipc benchmark: %s\n", err_msg());
        return 2;
    }
    bench_lists lists = {0};
    benchmark_plan plan;
    rc = build_plan(&o, &lists, &plan) ? -1 : run_benchmark(&o, &plan);
    free_lists(&lists);
    return rc == 0 ? 0 : eval_fail("benchmark");
}
