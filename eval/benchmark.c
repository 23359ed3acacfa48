#include "eval/benchmark.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "shards/manifest.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"
#include "eval/zeroshot.h"

static const char *const task_names[] = {"zeroshot_classification", "zeroshot_retrieval"};

// The inputs that make a run what it is: a JSON file made from other ones is not this run's.
static const char *const identity_keys[] = {"model", "pretrained", "model_config", "dataset",
                                            "data",  "task",       "classnames",   "templates"};
#define N_IDENTITY_KEYS (int)(sizeof identity_keys / sizeof identity_keys[0])

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *benchmark_run_path(const benchmark_plan *p, int model, int dataset) {
    char *dir = fs_join(p->out_dir, p->models[model].name);
    size_t len = strlen(p->datasets[dataset].name) + 6;
    char *file = xmalloc(len);
    snprintf(file, len, "%s.json", p->datasets[dataset].name);
    char *path = fs_join(dir, file);
    free(dir);
    free(file);
    return path;
}

// ---- checks ---------------------------------------------------------------------------------------

static bool valid_name(const char *s) {
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, "..")) return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *s)) return false;
    return true;
}

// Checks n names at names[i * stride] (valid, distinct); what is "model" or "dataset".
static int check_names(const char *what, const char *const *first, size_t stride, int n) {
    for (int i = 0; i < n; i++) {
        const char *a = *(const char *const *)((const char *)first + (size_t)i * stride);
        if (!valid_name(a))
            return err_set("%s name '%s': use letters, digits, '.', '_' and '-' (give NAME=PATH)", what, a);
        for (int j = 0; j < i; j++)
            if (!strcmp(a, *(const char *const *)((const char *)first + (size_t)j * stride)))
                return err_set("two %ss are named '%s': name them with NAME=PATH", what, a);
    }
    return 0;
}

int benchmark_check(const benchmark_plan *p) {
    if (p->world_size < 1 || p->rank < 0 || p->rank >= p->world_size)
        return err_set("RANK %d is not within WORLD_SIZE %d", p->rank, p->world_size);
    if (p->n_models < 1 || p->n_datasets < 1) return err_set("nothing to run: give at least one model and one dataset");
    if (check_names("model", &p->models[0].name, sizeof p->models[0], p->n_models) ||
        check_names("dataset", &p->datasets[0].name, sizeof p->datasets[0], p->n_datasets))
        return -1;
    for (int d = 0; d < p->n_datasets; d++)
        if (p->datasets[d].task == BENCHMARK_ZEROSHOT && !p->datasets[d].templates)
            return err_set("dataset %s: zero-shot classification needs a templates file", p->datasets[d].name);
    return 0;
}

// ---- run identity and skipping --------------------------------------------------------------------

static void add_string_or_null(cJSON *o, const char *key, const char *value) {
    cJSON_AddItemToObject(o, key, value ? cJSON_CreateString(value) : cJSON_CreateNull());
}

static cJSON *run_identity(const benchmark_model *m, const benchmark_dataset *d) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", m->name);
    cJSON_AddStringToObject(j, "pretrained", m->pretrained);
    add_string_or_null(j, "model_config", m->config);
    cJSON_AddStringToObject(j, "dataset", d->name);
    cJSON_AddStringToObject(j, "data", d->data);
    cJSON_AddStringToObject(j, "task", task_names[d->task]);
    add_string_or_null(j, "classnames", d->task == BENCHMARK_ZEROSHOT ? d->classnames : NULL);
    add_string_or_null(j, "templates", d->task == BENCHMARK_ZEROSHOT ? d->templates : NULL);
    return j;
}

// 1: finished from the same inputs (skip it), 0: to run (absent or unreadable: made again),
// -1: made from other inputs (err_msg() says which).
static int finished_state(const char *path, const cJSON *identity) {
    if (access(path, F_OK) != 0) return 0;
    char *text = (char *)fs_read_all(path, NULL);
    cJSON *old = text ? cJSON_Parse(text) : NULL;
    free(text);
    int state = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(old, "metrics")) ? 1 : 0;
    for (int k = 0; state == 1 && k < N_IDENTITY_KEYS; k++) {
        const cJSON *was = cJSON_GetObjectItemCaseSensitive(old, identity_keys[k]);
        const cJSON *now = cJSON_GetObjectItemCaseSensitive(identity, identity_keys[k]);
        if (!was || !cJSON_Compare(was, now, true)) {
            char *a = was ? cJSON_PrintUnformatted(was) : NULL, *b = cJSON_PrintUnformatted(now);
            state = err_set("%s: made from other inputs (%s %s, now %s); delete it or use another --output", path,
                            identity_keys[k], a ? a : "missing", b);
            free(a), free(b);
        }
    }
    cJSON_Delete(old);
    return state;
}

// ---- evaluating one run -------------------------------------------------------------------------

typedef struct {
    const benchmark_plan *p;
    benchmark_progress pr;
    double start;
} runner;

static void report(runner *r, benchmark_event event) {
    r->pr.event = event;
    r->pr.elapsed = now_seconds() - r->start;
    int64_t done = r->pr.samples_done, left = r->pr.samples_total - done;
    r->pr.eta = done > 0 ? r->pr.elapsed * (double)(left > 0 ? left : 0) / (double)done : -1;
    if (r->p->progress) r->p->progress(r->p->progress_ctx, &r->pr);
}

static void on_batch(void *ctx, int64_t samples) {
    runner *r = ctx;
    r->pr.samples_done += samples;
    report(r, BENCHMARK_EVENT_BATCH);
}

static int evaluate_zeroshot(runner *r, const clip_model *m, const tokenizer *tok, cJSON *metrics, cJSON *details) {
    const benchmark_dataset *d = r->pr.dataset;
    loader *l = r->p->hooks.open_loader(r->p->hooks.ctx, d->data, false);
    if (!l) return -1;
    char **names = NULL;
    metrics_classes counts;
    metrics_progress progress = {on_batch, r};
    int n = zeroshot_evaluate_set(m, tok, l, d->data, d->classnames, d->templates, &names, &counts, &progress);
    if (n > 0) {
        cJSON_AddNumberToObject(metrics, "acc1", metrics_classes_topk(&counts, 1));
        cJSON_AddNumberToObject(metrics, "acc5", metrics_classes_topk(&counts, 5));
        cJSON_AddNumberToObject(metrics, "mean_per_class_recall", metrics_classes_mean_per_class(&counts));
        zeroshot_counts_json(details, &counts, (const char *const *)names);
        metrics_classes_free(&counts);
        zeroshot_free_lines(names, n);
    }
    loader_free(l);
    return n > 0 ? 0 : -1;
}

static int evaluate_retrieval(runner *r, const clip_model *m, cJSON *metrics, cJSON *details) {
    loader *l = r->p->hooks.open_loader(r->p->hooks.ctx, r->pr.dataset->data, true);
    if (!l) return -1;
    retrieval_result res;
    metrics_progress progress = {on_batch, r};
    int rc = retrieval_evaluate_loader(m, l, r->p->chunk_rows, &res, &progress);
    loader_free(l);
    if (rc != 0) return -1;
    // CLIP_benchmark's names: image retrieval = text->image queries, text retrieval = image->text.
    for (int k = 0; k < RETRIEVAL_N_K; k++) {
        char key[48];
        snprintf(key, sizeof key, "image_retrieval_recall@%lld", (long long)RETRIEVAL_K[k]);
        cJSON_AddNumberToObject(metrics, key, res.text_to_image.recall[k]);
        snprintf(key, sizeof key, "text_retrieval_recall@%lld", (long long)RETRIEVAL_K[k]);
        cJSON_AddNumberToObject(metrics, key, res.image_to_text.recall[k]);
    }
    retrieval_result_json(details, &res);
    return 0;
}

static int run_one(runner *r, const clip_model *m, const tokenizer *tok) {
    const benchmark_dataset *d = r->pr.dataset;
    cJSON *root = run_identity(r->pr.model, d);
    cJSON *metrics = cJSON_AddObjectToObject(root, "metrics"), *details = cJSON_AddObjectToObject(root, "details");
    double t0 = now_seconds();
    int rc = d->task == BENCHMARK_ZEROSHOT ? evaluate_zeroshot(r, m, tok, metrics, details)
                                           : evaluate_retrieval(r, m, metrics, details);
    cJSON_AddNumberToObject(root, "seconds", now_seconds() - t0);
    if (rc == 0) rc = fs_write_json(r->pr.path, root);
    cJSON_Delete(root);
    return rc;
}

// ---- this rank's runs ---------------------------------------------------------------------------

static int64_t dataset_samples(const benchmark_dataset *d) {
    manifest *m = manifest_load(d->data);
    int64_t n = m ? m->num_samples : 0;
    manifest_free(m);
    return n;
}

typedef struct {
    int model, dataset;
    char *path;
    int state;     // finished_state()
    char *error;   // state -1: why
    int64_t samples;
} planned_run;

// This rank's block of runs, with what is already done and the samples still to evaluate.
static int plan_runs(const benchmark_plan *p, planned_run **out, int64_t *total) {
    int R = p->n_models * p->n_datasets;
    int first = (int)((int64_t)R * p->rank / p->world_size), end = (int)((int64_t)R * (p->rank + 1) / p->world_size);
    planned_run *runs = xcalloc((size_t)(end - first + 1), sizeof(planned_run));
    *total = 0;
    for (int k = 0; k < end - first; k++) {
        planned_run *run = &runs[k];
        run->model = (first + k) / p->n_datasets, run->dataset = (first + k) % p->n_datasets;
        run->path = benchmark_run_path(p, run->model, run->dataset);
        cJSON *identity = run_identity(&p->models[run->model], &p->datasets[run->dataset]);
        run->state = finished_state(run->path, identity);
        cJSON_Delete(identity);
        if (run->state < 0) run->error = xstrdup(err_msg());
        if (run->state == 0) *total += run->samples = dataset_samples(&p->datasets[run->dataset]);
    }
    *out = runs;
    return end - first;
}

// Opens run's model unless it is the one open; remembers a failure to open for its other runs.
static int ensure_model(const benchmark_plan *p, int model, int *open, char **open_error, const clip_model **m,
                        const tokenizer **tok) {
    if (*open == model) return *open_error ? err_set("%s", *open_error) : 0;
    if (*open >= 0 && !*open_error) p->hooks.close_model(p->hooks.ctx);
    free(*open_error);
    *open_error = NULL;
    *open = model;
    if (p->hooks.open_model(p->hooks.ctx, &p->models[model], m, tok) == 0) return 0;
    *open_error = xstrdup(err_msg());
    return -1;
}

static void finish_run(runner *r, int rc, int64_t done_before, const planned_run *run, benchmark_summary *s) {
    if (rc == 0) {
        s->done++;
        report(r, BENCHMARK_EVENT_DONE);
        return;
    }
    r->pr.samples_total -= run->samples - (r->pr.samples_done - done_before);  // what it will not do
    s->failed++;
    r->pr.error = err_msg();
    report(r, BENCHMARK_EVENT_FAILED);
    r->pr.error = NULL;
}

int benchmark_run(const benchmark_plan *p, benchmark_summary *s) {
    memset(s, 0, sizeof *s);
    if (benchmark_check(p)) return -1;
    runner r = {.p = p, .start = now_seconds()};
    planned_run *runs = NULL;
    int n = plan_runs(p, &runs, &r.pr.samples_total), open = -1;
    char *open_error = NULL;
    const clip_model *m = NULL;
    const tokenizer *tok = NULL;
    s->runs = r.pr.n_runs = n;
    for (int k = 0; k < n; k++) {
        planned_run *run = &runs[k];
        r.pr.run = k + 1, r.pr.path = run->path;
        r.pr.model = &p->models[run->model], r.pr.dataset = &p->datasets[run->dataset];
        if (run->state == 1) {
            s->skipped++;
            report(&r, BENCHMARK_EVENT_SKIPPED);
            continue;
        }
        int64_t done_before = r.pr.samples_done;
        int rc = run->state < 0 ? err_set("%s", run->error) : ensure_model(p, run->model, &open, &open_error, &m, &tok);
        if (rc == 0) report(&r, BENCHMARK_EVENT_START);
        if (rc == 0) rc = run_one(&r, m, tok);
        if (rc != 0) err_prefix("%s on %s", r.pr.model->name, r.pr.dataset->name);
        finish_run(&r, rc, done_before, run, s);
    }
    if (open >= 0 && !open_error) p->hooks.close_model(p->hooks.ctx);
    free(open_error);
    for (int k = 0; k < n; k++) free(runs[k].path), free(runs[k].error);
    free(runs);
    return s->failed ? err_set("%d of %d runs failed (each is reported above)", s->failed, s->runs) : 0;
}
