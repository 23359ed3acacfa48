// `clipc eval`: zero-shot classification and image-text retrieval of a checkpoint on one or more
// datasets of shards, printed as a table and written as JSON (--output) with confusion-matrix PNGs.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/args.h"
#include "common/atomic_file.h"
#include "common/datafiles.h"
#include "common/error.h"
#include "plot/plot.h"
#include "common/fsutil.h"
#include "shards/manifest.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"
#include "cli/eval_args.h"
#include "eval/embed.h"
#include "eval/zeroshot.h"
#include "cli/commands.h"

#define DEFAULT_TEMPLATES "zeroshot/imagenet-templates.txt"  // shipped: common/datafiles.h
#define CONFUSION_PNG_MAX_CLASSES 100
#define PER_CLASS_PRINT_MAX 100

static const char USAGE[] =
    "clipc eval --pretrained CKPT [--model CONFIG] [--zeroshot DATA[::DATA]] [--retrieval DATA[::DATA]]\n"
    "           [--classnames FILE] [--templates FILE] [--output results.json] [--plots DIR]\n\n"
    "Zero-shot classification (top-1, top-5, per-class accuracy, confusion matrix) on labelled shards and\n"
    "image<->text retrieval (recall@1/5/10, mean and median rank) on captioned shards; samples with the\n"
    "same key are one image with several captions. '::' separates datasets, each evaluated on its own;\n"
    "--classnames and --templates take one file for all zero-shot sets or one per set ('a::b').";

typedef struct {
    eval_options common;
    char *zeroshot, *retrieval, *classnames, *templates, *output, *plots;
    long chunk_size;
} eval_cmd_options;

// ---- zero-shot ----------------------------------------------------------------------------------

typedef struct {
    char *name, *path;
    char **class_names;
    int n_classes;
    metrics_classes counts;
    char *png;  // confusion matrix written, or NULL
} zeroshot_report;

static int write_confusion_png(const char *dir, zeroshot_report *r) {
    int C = r->n_classes;
    double *rows = xmalloc((size_t)C * (size_t)C * sizeof(double));
    for (int t = 0; t < C; t++) {
        int64_t total = 0;
        for (int p = 0; p < C; p++) total += r->counts.confusion[(int64_t)t * C + p];
        for (int p = 0; p < C; p++)
            rows[t * C + p] = total ? (double)r->counts.confusion[(int64_t)t * C + p] / (double)total : 0.0;
    }
    char title[256], file[300];
    snprintf(title, sizeof title, "%s: top-1 %.2f%% (rows: true class, fraction predicted)", r->name,
             100 * metrics_classes_topk(&r->counts, 1));
    snprintf(file, sizeof file, "confusion-%s.png", r->name);
    r->png = fs_join(dir, file);
    plot_chart *c = plot_chart_init(title, "predicted class", "true class");
    plot_chart_set_matrix(c, rows, C, C, (const char *const *)r->class_names, (const char *const *)r->class_names, C <= 20);
    plot_chart_set_range(c, 0.0, 1.0);
    int side = C <= 20 ? 900 : 1400;
    int rc = fs_mkdirs(dir) ? -1 : plot_chart_write_png(c, r->png, side, side);
    plot_chart_free(c);
    free(rows);
    return rc;
}

// Classifies every image of dataset i with a classifier made from its class names and templates.
static int run_zeroshot(const eval_cmd_options *o, const session *s, const char *plots, int i, int n,
                        zeroshot_report *r) {
    loader *l = eval_loader_open(s, r->path, (int)o->common.batch_size, (int)o->common.workers, false);
    if (!l) return -1;
    char *names_file = NULL, *templates_file = NULL;
    int rc = o->classnames ? args_list_item("classnames", o->classnames, i, n, &names_file) : 0;
    if (rc == 0) rc = args_list_item("templates", o->templates, i, n, &templates_file);
    int C = rc == 0 ? zeroshot_evaluate_set(s->model, s->tok, l, r->path, names_file, templates_file, &r->class_names,
                                            &r->counts, NULL)
                    : -1;
    if (C < 0) rc = -1;
    else r->n_classes = C;
    if (rc == 0 && r->counts.n == 0) rc = err_set("the dataset gave no images");
    if (rc == 0 && plots && r->n_classes <= CONFUSION_PNG_MAX_CLASSES) rc = write_confusion_png(plots, r);
    if (rc != 0) err_prefix("%s", r->path);
    free(names_file);
    free(templates_file);
    loader_free(l);
    return rc;
}

static cJSON *zeroshot_json(const zeroshot_report *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset", r->path);
    cJSON_AddStringToObject(j, "name", r->name);
    zeroshot_counts_json(j, &r->counts, (const char *const *)r->class_names);
    if (r->png) cJSON_AddStringToObject(j, "confusion_png", r->png);
    return j;
}

static void zeroshot_print(const zeroshot_report *r) {
    printf("zero-shot  %-24s %8lld images %5d classes   top-1 %6.2f%%   top-5 %6.2f%%   mean per-class %6.2f%%\n",
           r->name, (long long)r->counts.n, r->n_classes, 100 * metrics_classes_topk(&r->counts, 1),
           100 * metrics_classes_topk(&r->counts, 5), 100 * metrics_classes_mean_per_class(&r->counts));
    if (r->n_classes > PER_CLASS_PRINT_MAX) return;
    double *acc = xmalloc((size_t)r->n_classes * sizeof(double));
    metrics_classes_per_class(&r->counts, acc);
    for (int c = 0; c < r->n_classes; c++) printf("    %-32s %6.2f%%\n", r->class_names[c], 100 * acc[c]);
    free(acc);
    if (r->png) printf("    confusion matrix: %s\n", r->png);
}

static void zeroshot_report_free(zeroshot_report *r) {
    if (r->class_names) zeroshot_free_lines(r->class_names, r->n_classes);
    metrics_classes_free(&r->counts);
    free(r->name);
    free(r->png);
}

// ---- retrieval ----------------------------------------------------------------------------------

static cJSON *retrieval_json(const char *path, const char *name, const retrieval_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "dataset", path);
    cJSON_AddStringToObject(j, "name", name);
    retrieval_result_json(j, r);
    return j;
}

static void direction_print(const char *label, const retrieval_direction *d) {
    printf("    %-14s", label);
    for (int k = 0; k < RETRIEVAL_N_K; k++) printf(" R@%-2lld %6.2f%%", (long long)RETRIEVAL_K[k], 100 * d->recall[k]);
    printf("   mean rank %9.2f   median rank %7.1f\n", d->mean_rank, d->median_rank);
}

static int run_retrieval(const eval_cmd_options *o, const session *s, const char *path, cJSON *out) {
    loader *l = eval_loader_open(s, path, (int)o->common.batch_size, (int)o->common.workers, true);
    if (!l) return -1;
    retrieval_result r;
    int rc = retrieval_evaluate_loader(s->model, l, o->chunk_size, &r, NULL);
    loader_free(l);
    if (rc != 0) return err_prefix("%s", path);
    char *name = manifest_dataset_name(path);
    printf("retrieval  %-24s %8lld images %8lld texts\n", name, (long long)r.n_images, (long long)r.n_texts);
    direction_print("image->text", &r.image_to_text);
    direction_print("text->image", &r.text_to_image);
    cJSON_AddItemToArray(out, retrieval_json(path, name, &r));
    free(name);
    return 0;
}

// ---- command ------------------------------------------------------------------------------------

static int run_all_zeroshot(const eval_cmd_options *o, const session *s, const char *plots, cJSON *out) {
    char **sets = NULL;
    int n = args_split_list(o->zeroshot, &sets), rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        zeroshot_report r = {.name = manifest_dataset_name(sets[i]), .path = sets[i]};
        rc = run_zeroshot(o, s, plots, i, n, &r);
        if (rc == 0) {
            zeroshot_print(&r);
            cJSON_AddItemToArray(out, zeroshot_json(&r));
        }
        zeroshot_report_free(&r);
    }
    args_free_list(sets, n);
    return rc;
}

static int run_all_retrieval(const eval_cmd_options *o, const session *s, cJSON *out) {
    char **sets = NULL;
    int n = args_split_list(o->retrieval, &sets), rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = run_retrieval(o, s, sets[i], out);
    args_free_list(sets, n);
    return rc;
}

static int evaluate(const eval_cmd_options *o) {
    if (!o->zeroshot && !o->retrieval) return err_set("nothing to evaluate: give --zeroshot DATA and/or --retrieval DATA");
    if (o->zeroshot && access(o->templates, R_OK) != 0 && !strstr(o->templates, "::"))
        return err_set("%s: cannot read the templates file (pass --templates FILE)", o->templates);
    session s;
    int rc = eval_session_open(&o->common, true, &s);
    char *plots = o->plots ? xstrdup(o->plots) : o->output ? fs_dirname(o->output) : NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "pretrained", o->common.pretrained);
    if (rc == 0) {
        char *config = clip_config_to_json(&s.model->cfg);
        cJSON_AddItemToObject(root, "model_config", cJSON_Parse(config));
        free(config);
    }
    cJSON *zs = cJSON_AddArrayToObject(root, "zeroshot"), *ret = cJSON_AddArrayToObject(root, "retrieval");
    if (rc == 0 && o->zeroshot) rc = run_all_zeroshot(o, &s, plots, zs);
    if (rc == 0 && o->retrieval) rc = run_all_retrieval(o, &s, ret);
    if (rc == 0 && o->output) rc = fs_write_json(o->output, root);
    cJSON_Delete(root);
    free(plots);
    session_close(&s);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_cmd_options o = {0};
    eval_options_default(&o.common);
    arg_spec specs[EVAL_N_COMMON_SPECS + 7] = {
        {"zeroshot", ARG_STR, &o.zeroshot, "labelled shards for zero-shot classification, '::'-separated sets", false},
        {"retrieval", ARG_STR, &o.retrieval, "captioned shards for image-text retrieval, '::'-separated sets", false},
        {"classnames", ARG_STR, &o.classnames, "class names, one per line (default: the shards'); one file or one per set", false},
        {"templates", ARG_STR, &o.templates, "templates, one per line with {} for the class (default: the shipped ImageNet ones)", false},
        {"output", ARG_STR, &o.output, "write the results as JSON to this file", false},
        {"plots", ARG_STR, &o.plots, "folder for confusion-matrix PNGs (default: the folder of --output)", false},
        {"chunk-size", ARG_INT, &o.chunk_size, "retrieval: queries scored at a time (0: 64 MiB of scores)", false},
    };
    eval_options_specs(&o.common, specs + 7);
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse_command("eval", USAGE, specs, n_specs, argc, argv, NULL, 0, NULL);
    if (rc >= 0) return rc;
    char shipped[4096];
    if (!o.templates && datafile_path(DEFAULT_TEMPLATES, shipped, sizeof shipped) != 0) return eval_fail("eval");
    if (!o.templates) o.templates = shipped;
    return evaluate(&o) == 0 ? 0 : eval_fail("eval");
}
