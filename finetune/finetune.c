#include "finetune/finetune.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "eval/zeroshot.h"
#include "finetune/tune.h"
#include "shards/shots.h"

#define TEST_BATCH 256
#define N_ALPHAS 5
static const double alphas[N_ALPHAS] = {0, 0.25, 0.5, 0.75, 1};

typedef struct {
    const finetune_options *o;
    finetune_result *res;
    session sess;       // model, tokenizer, device
    char *config_json;  // the model config as JSON, for head files
    manifest *train_set;
    char **class_names, **templates;
    int n_classes, n_templates;
    char *shots_dir;
    zs_classifier clf;
    feature_set test;  // features of the test images under the initial model
    cJSON *report;
} run_state;

finetune_options finetune_options_default(void) {
    return (finetune_options){.probe = true, .finetune = true, .shots = 16, .epochs = 20, .batch_size = 32,
                              .warmup = -1, .probe_lambda = -1, .lr = 1e-5, .wd = 0.1, .wiseft_alpha = 0.5,
                              .workers = 2};
}

int finetune_options_check(const finetune_options *o) {
    if (!o->train_data || !o->test_data || !o->session.pretrained || !o->out_dir)
        return err_set("--train-data, --test-data, --checkpoint and --out-dir are required");
    if (o->shots < 1 || o->shots > 1000000) return err_set("--shots must be between 1 and 1000000, got %d", o->shots);
    if (o->epochs < 1 || o->batch_size < 1) return err_set("--epochs and --batch-size must be positive");
    if (!(o->wiseft_alpha >= 0 && o->wiseft_alpha <= 1)) return err_set("--wiseft-alpha must be in [0, 1]");
    return 0;
}

static void emit(const run_state *s, finetune_event e) {
    if (s->o->on_event) s->o->on_event(s->o->ctx, &e);
}

// ---- setup -----------------------------------------------------------------------------------

static int setup_model(run_state *s) {
    if (!s->o->session.vocab) return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB");
    if (session_open(&s->o->session, &s->sess) != 0) return -1;
    s->config_json = clip_config_to_json(&s->sess.cfg);
    return 0;
}

static int setup_text(run_state *s) {
    const finetune_options *o = s->o;
    if (!(s->train_set = manifest_load(o->train_data))) return -1;
    if (o->classnames) {
        s->n_classes = zeroshot_read_lines(o->classnames, &s->class_names);
        if (s->n_classes < 0) return -1;
        if (s->n_classes != s->train_set->n_classes)
            return err_set("%s: %d class names, but %s has %d classes", o->classnames, s->n_classes, o->train_data,
                           s->train_set->n_classes);
    } else {
        s->n_classes = s->train_set->n_classes;
        if (s->n_classes <= 0) return err_set("%s: an unlabelled set; few-shot needs labels", o->train_data);
        s->class_names = xmalloc((size_t)s->n_classes * sizeof(char *));
        for (int c = 0; c < s->n_classes; c++) s->class_names[c] = xstrdup(s->train_set->class_names[c]);
    }
    if (o->templates) {
        s->n_templates = zeroshot_read_lines(o->templates, &s->templates);
        return s->n_templates < 0 ? -1 : 0;
    }
    s->n_templates = 1;
    s->templates = xmalloc(sizeof(char *));
    s->templates[0] = xstrdup(ZEROSHOT_DEFAULT_TEMPLATE);
    return 0;
}

static int draw_shots(run_state *s) {
    shot_set shots;
    if (shots_draw(s->train_set, s->o->shots, (uint64_t)s->o->seed, &shots) != 0) return -1;
    s->shots_dir = fs_join(s->o->out_dir, "shots");
    int rc = shots_write(s->train_set, &shots, s->shots_dir);
    shots_free(&shots);
    if (rc == 0) emit(s, (finetune_event){.kind = FINETUNE_EVENT_SHOTS, .n_classes = s->n_classes, .path = s->shots_dir});
    return rc;
}

static loader *open_loader(const run_state *s, const char *data, bool train, int batch_size) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, s->sess.cfg.vision.image_size, train);
    lc.preprocess = s->sess.cfg.preprocess;  // the model's mean and std (and evaluation transform)
    lc.seed = (uint64_t)s->o->seed;
    lc.workers = s->o->workers;
    return loader_init(&lc);
}

static int read_features(const run_state *s, const char *data, int64_t max_n, feature_set *out) {
    loader *l = open_loader(s, data, false, TEST_BATCH);
    if (!l) return -1;
    int rc = loader_num_classes(l) == s->n_classes
                 ? fewshot_features(s->sess.model, l, max_n, out)
                 : err_set("%s: %d classes, but the training set has %d", data, loader_num_classes(l), s->n_classes);
    loader_free(l);
    return rc;
}

// ---- zero-shot and the probe -----------------------------------------------------------------

static int score_head(const feature_set *f, const linear_head *h, double *top1) {
    return linear_head_score(h, f->x, f->y, f->n, top1, NULL);
}

static char *out_path(const run_state *s, const char *name) { return fs_join(s->o->out_dir, name); }

static int run_zeroshot(run_state *s) {
    tensor *zs = zeroshot_classifier(s->sess.model, s->sess.tok, (const char *const *)s->class_names, s->n_classes,
                                     (const char *const *)s->templates, s->n_templates);
    int rc = zs ? zs_classifier_init(&s->clf, s->sess.model, zs) : -1;
    tensor_free(zs);
    if (rc == 0) rc = read_features(s, s->o->test_data, s->o->test_num_samples, &s->test);
    linear_head head = {0};
    if (rc == 0) rc = zs_classifier_get_head(&s->clf, &head);
    if (rc == 0) rc = score_head(&s->test, &head, &s->res->zeroshot_top1);
    linear_head_free(&head);
    if (rc != 0) return -1;
    s->res->n_test = s->test.n;
    emit(s, (finetune_event){.kind = FINETUNE_EVENT_ZEROSHOT, .top1 = s->res->zeroshot_top1, .n_test = s->test.n,
                             .n_templates = s->n_templates});
    cJSON *z = cJSON_AddObjectToObject(s->report, "zeroshot");
    cJSON_AddNumberToObject(z, "top1", s->res->zeroshot_top1);
    cJSON_AddNumberToObject(z, "templates", s->n_templates);
    cJSON_AddNumberToObject(s->report, "test_images", (double)s->test.n);
    return 0;
}

static void report_probe(run_state *s, const probe_report *r, double top1, const char *head_path) {
    cJSON *p = cJSON_AddObjectToObject(s->report, "linear_probe");
    cJSON_AddNumberToObject(p, "top1", top1);
    cJSON_AddNumberToObject(p, "lambda", r->lambda);
    cJSON_AddStringToObject(p, "lambda_selection", r->swept ? "held-out" : "fixed");
    cJSON_AddNumberToObject(p, "iterations", r->fit.iterations);
    cJSON_AddBoolToObject(p, "converged", r->fit.converged);
    cJSON_AddStringToObject(p, "head", head_path);
    if (!r->swept) return;
    cJSON_AddNumberToObject(p, "sweep_train", (double)r->n_train);
    cJSON_AddNumberToObject(p, "sweep_heldout", (double)r->n_val);
    cJSON *sweep = cJSON_AddArrayToObject(p, "sweep");
    for (int i = 0; i < r->sweep.n; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "lambda", r->sweep.lambdas[i]);
        cJSON_AddNumberToObject(e, "heldout_top1", r->sweep.val_accuracy[i]);
        cJSON_AddNumberToObject(e, "heldout_log_loss", r->sweep.val_log_loss[i]);
        cJSON_AddItemToArray(sweep, e);
    }
}

static int run_probe(run_state *s) {
    feature_set shots = {0};
    linear_head head = {0};
    probe_report r = {0};
    linprobe_options opt = linprobe_options_default();
    double top1 = 0;
    int rc = read_features(s, s->shots_dir, 0, &shots);
    if (rc == 0) rc = fewshot_train_probe(&shots, s->n_classes, s->o->shots, s->o->probe_lambda, &opt, &head, &r);
    if (rc == 0) rc = score_head(&s->test, &head, &top1);
    char *path = out_path(s, "probe.safetensors"), lambda[32], shots_text[32];
    snprintf(lambda, sizeof lambda, "%.17g", r.lambda);
    snprintf(shots_text, sizeof shots_text, "%d", s->o->shots);
    const char *meta[] = {"clipc.lambda", lambda, "clipc.shots", shots_text, NULL};
    if (rc == 0)
        rc = linear_head_save(&head, path, HEAD_KIND_PROBE, (const char *const *)s->class_names, s->config_json, meta);
    if (rc == 0) {
        s->res->probe_top1 = top1, s->res->probe_lambda = r.lambda;
        emit(s, (finetune_event){.kind = FINETUNE_EVENT_PROBE, .top1 = top1, .path = path, .probe = &r});
        report_probe(s, &r, top1, path);
    }
    free(path);
    probe_report_free(&r);
    linear_head_free(&head);
    feature_set_free(&shots);
    return rc;
}

// ---- fine-tuning and WiSE-FT -----------------------------------------------------------------

static void on_step(void *ctx, int64_t step, int64_t total, int64_t epoch, double loss, double lr) {
    emit(ctx, (finetune_event){.kind = FINETUNE_EVENT_STEP, .step = step, .total = total, .epoch = epoch, .loss = loss,
                               .lr = lr});
}

static int train_classifier(run_state *s) {
    const finetune_options *o = s->o;
    int64_t n_shots = (int64_t)s->n_classes * o->shots;
    int batch = o->batch_size < n_shots ? o->batch_size : (int)n_shots;
    loader *l = open_loader(s, s->shots_dir, true, batch);
    if (!l) return -1;
    int64_t total = loader_num_batches(l) * o->epochs;
    tune_options to = {.epochs = o->epochs, .lr = o->lr, .wd = o->wd, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                       .warmup = o->warmup >= 0 ? o->warmup : total / 10, .on_step = on_step, .ctx = s};
    emit(s, (finetune_event){.kind = FINETUNE_EVENT_TRAIN, .total = total, .batch = batch, .warmup = to.warmup,
                             .lr = o->lr});
    int rc = tune_run(&s->clf, l, &to);
    loader_free(l);
    return rc;
}

// Saves the model and its head as <stem>.safetensors and <stem>.head.safetensors.
static int save_classifier(run_state *s, const char *stem, double alpha, cJSON *entry) {
    char name[64], alpha_text[32];
    snprintf(alpha_text, sizeof alpha_text, "%g", alpha);
    const char *meta[] = {"clipc.wiseft_alpha", alpha_text, NULL};
    snprintf(name, sizeof name, "%s.safetensors", stem);
    char *model_path = out_path(s, name);
    snprintf(name, sizeof name, "%s.head.safetensors", stem);
    char *head_path = out_path(s, name);
    linear_head head = {0};
    int rc = clip_model_save(s->sess.model, model_path, meta);
    if (rc == 0) rc = zs_classifier_get_head(&s->clf, &head);
    if (rc == 0)
        rc = linear_head_save(&head, head_path, HEAD_KIND_FINETUNED, (const char *const *)s->class_names, s->config_json, meta);
    if (rc == 0) {
        cJSON_AddStringToObject(entry, "model", model_path);
        cJSON_AddStringToObject(entry, "head", head_path);
    }
    linear_head_free(&head);
    free(model_path);
    free(head_path);
    return rc;
}

// The test accuracy of the classifier as it is now (alpha 0 is the zero-shot head on the initial
// features, computed already).
static int score_classifier(run_state *s, double alpha, double *top1) {
    if (alpha == 0) {
        *top1 = s->res->zeroshot_top1;
        return 0;
    }
    feature_set f = {0};
    linear_head head = {0};
    int rc = read_features(s, s->o->test_data, s->o->test_num_samples, &f);
    if (rc == 0) rc = zs_classifier_get_head(&s->clf, &head);
    if (rc == 0) rc = score_head(&f, &head, top1);
    linear_head_free(&head);
    feature_set_free(&f);
    return rc;
}

// The alphas evaluated: the grid, and o->wiseft_alpha when it is not on it. Returns the count.
static int alpha_list(const finetune_options *o, double list[N_ALPHAS + 1]) {
    int n = N_ALPHAS;
    memcpy(list, alphas, sizeof alphas);
    bool listed = false;
    for (int i = 0; i < N_ALPHAS; i++) listed |= alphas[i] == o->wiseft_alpha;
    if (!listed) list[n++] = o->wiseft_alpha;
    return n;
}

// Evaluates the interpolations and saves the fine-tuned (alpha 1) and o->wiseft_alpha models.
static int run_wiseft(run_state *s, tensor **initial, tensor **tuned, cJSON *ft) {
    double list[N_ALPHAS + 1];
    int n = alpha_list(s->o, list), rc = 0;
    cJSON *table = cJSON_AddArrayToObject(ft, "wiseft");
    finetune_result *res = s->res;
    res->best_top1 = -1, res->best_alpha = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        double top1 = 0;
        rc = wiseft_interpolate(s->clf.lists, 2, initial, tuned, list[i]);
        if (rc == 0) rc = score_classifier(s, list[i], &top1);
        if (rc != 0) break;
        emit(s, (finetune_event){.kind = FINETUNE_EVENT_WISEFT, .index = i, .alpha = list[i], .top1 = top1});
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "alpha", list[i]);
        cJSON_AddNumberToObject(e, "top1", top1);
        cJSON_AddItemToArray(table, e);
        if (top1 > res->best_top1) res->best_top1 = top1, res->best_alpha = list[i];
        if (list[i] == 1) rc = save_classifier(s, "finetuned", 1, e);
        if (rc == 0 && list[i] == s->o->wiseft_alpha && list[i] != 1) rc = save_classifier(s, "wiseft", list[i], e);
        if (list[i] == 1) res->finetuned_top1 = top1, cJSON_AddNumberToObject(ft, "top1", top1);
    }
    cJSON_AddNumberToObject(ft, "best_alpha", res->best_alpha);
    cJSON_AddNumberToObject(ft, "best_top1", res->best_top1);
    return rc;
}

static int run_finetune(run_state *s) {
    tensor **initial = weights_snapshot(s->clf.lists, 2), **tuned = NULL;
    int rc = initial ? train_classifier(s) : -1;
    if (rc == 0) rc = (tuned = weights_snapshot(s->clf.lists, 2)) ? 0 : -1;
    cJSON *ft = cJSON_AddObjectToObject(s->report, "finetune");
    cJSON_AddNumberToObject(ft, "epochs", s->o->epochs);
    cJSON_AddNumberToObject(ft, "lr", s->o->lr);
    cJSON_AddNumberToObject(ft, "wd", s->o->wd);
    if (rc == 0) rc = run_wiseft(s, initial, tuned, ft);
    weights_snapshot_free(initial, 2);
    weights_snapshot_free(tuned, 2);
    return rc;
}

// ---- the run ---------------------------------------------------------------------------------

static void start_report(run_state *s) {
    s->report = cJSON_CreateObject();
    cJSON_AddStringToObject(s->report, "checkpoint", s->o->session.pretrained);
    cJSON_AddStringToObject(s->report, "model", s->sess.cfg.name);
    cJSON_AddStringToObject(s->report, "train_data", s->o->train_data);
    cJSON_AddStringToObject(s->report, "test_data", s->o->test_data);
    cJSON_AddNumberToObject(s->report, "shots", s->o->shots);
    cJSON_AddNumberToObject(s->report, "seed", (double)s->o->seed);
    cJSON_AddNumberToObject(s->report, "classes", s->n_classes);
}

static void state_free(run_state *s) {
    zs_classifier_free(&s->clf);
    feature_set_free(&s->test);
    if (s->class_names) zeroshot_free_lines(s->class_names, s->n_classes);
    if (s->templates) zeroshot_free_lines(s->templates, s->n_templates);
    manifest_free(s->train_set);
    session_close(&s->sess);
    free(s->config_json);
    free(s->shots_dir);
    cJSON_Delete(s->report);
}

int finetune_run(const finetune_options *o, finetune_result *out) {
    memset(out, 0, sizeof *out);
    if (finetune_options_check(o) != 0) return -1;
    run_state s = {.o = o, .res = out};
    int rc = setup_model(&s);
    if (rc == 0) rc = setup_text(&s);
    if (rc == 0) rc = fs_mkdirs(o->out_dir);
    if (rc == 0) rc = draw_shots(&s);
    if (rc == 0) start_report(&s);
    if (rc == 0) rc = run_zeroshot(&s);
    if (rc == 0 && o->probe) rc = run_probe(&s);
    if (rc == 0 && o->finetune) rc = run_finetune(&s);
    if (rc == 0 && o->output) rc = fs_write_json(o->output, s.report);
    out->n_classes = s.n_classes;
    state_free(&s);
    return rc;
}
