// `clipc finetune`: few-shot adaptation of a CLIP checkpoint to a labelled set (docs/fewshot.md).
// K shots per class are drawn from --train-data (shards/shots.h) and written to OUT/shots; then
// the zero-shot accuracy on --test-data, a linear probe on frozen features (probe), and end-to-end
// fine-tuning from the zero-shot head with WiSE-FT interpolation (finetune), each with its
// accuracy, saved heads and weights in --out-dir and a JSON report (--output).
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "shards/shots.h"
#include "finetune/fewshot.h"
#include "eval/zeroshot.h"
#include "cli/commands.h"
#include "session/session.h"
#include "finetune/finetune.h"

#define TEST_BATCH 256
#define DEFAULT_TEMPLATE "a photo of a {}."
#define N_ALPHAS 5
static const double alphas[N_ALPHAS] = {0, 0.25, 0.5, 0.75, 1};

typedef struct {
    char *train_data, *test_data, *checkpoint, *model, *model_configs, *vocab, *method, *out_dir, *output;
    char *templates, *classnames, *device;
    long shots, seed, epochs, batch_size, warmup, workers, threads, test_num_samples, log_every;
    double probe_lambda, lr, wd, wiseft_alpha;
} finetune_cli;

typedef struct {
    finetune_cli o;
    bool do_probe, do_finetune;
    session sess;       // model, tokenizer, device
    char *config_json;  // the model config as JSON, for head files
    manifest *train_set;
    char **class_names, **templates;
    int n_classes, n_templates;
    char *shots_dir;
    zs_classifier clf;
    feature_set test;  // features of the test images under the initial model
    double zeroshot_top1;
    cJSON *report;
} finetune_state;

// ---- options ---------------------------------------------------------------------------------

static int parse_options(finetune_cli *o, int argc, char **argv) {
    *o = (finetune_cli){.vocab = getenv("CLIPC_VOCAB"), .method = "all",
                        .shots = 16, .epochs = 20, .batch_size = 32, .warmup = -1, .workers = 2, .log_every = 10,
                        .probe_lambda = -1, .lr = 1e-5, .wd = 0.1, .wiseft_alpha = 0.5};
    arg_spec specs[] = {
        {"train-data", ARG_STR, &o->train_data, "labelled manifest the shots are drawn from", false},
        {"test-data", ARG_STR, &o->test_data, "labelled manifest for the test accuracy", false},
        {"checkpoint", ARG_STR, &o->checkpoint, "model weights (OpenCLIP state dict in safetensors)", false},
        {"model", ARG_STR, &o->model, "model config name or JSON (default: the checkpoint's clipc.config)", false},
        {"model-configs", ARG_STR, &o->model_configs, "folder of model configs (default: the shipped ones)", false},
        {"vocab", ARG_STR, &o->vocab, "BPE merges file (default: $CLIPC_VOCAB)", false},
        {"shots", ARG_INT, &o->shots, "training samples per class, K (16)", false},
        {"seed", ARG_INT, &o->seed, "seed of the shot draw and of fine-tuning's data order (0)", false},
        {"method", ARG_STR, &o->method, "probe, finetune or all (all)", false},
        {"out-dir", ARG_STR, &o->out_dir, "folder for the shots, heads and weights (required)", false},
        {"output", ARG_STR, &o->output, "JSON file of the results", false},
        {"zeroshot-templates", ARG_STR, &o->templates, "templates file, one per line with {} (default: '" DEFAULT_TEMPLATE "')", false},
        {"zeroshot-classnames", ARG_STR, &o->classnames, "class names file (default: the training set's)", false},
        {"probe-lambda", ARG_FLOAT, &o->probe_lambda, "fixed L2 strength of the probe (default: chosen on held-out shots)", false},
        {"epochs", ARG_INT, &o->epochs, "fine-tuning epochs over the shots (20)", false},
        {"batch-size", ARG_INT, &o->batch_size, "fine-tuning batch size, at most the number of shots (32)", false},
        {"lr", ARG_FLOAT, &o->lr, "fine-tuning peak learning rate (1e-5)", false},
        {"wd", ARG_FLOAT, &o->wd, "fine-tuning weight decay (0.1)", false},
        {"warmup", ARG_INT, &o->warmup, "fine-tuning warmup steps (default: a tenth of the steps)", false},
        {"wiseft-alpha", ARG_FLOAT, &o->wiseft_alpha, "alpha of the interpolated model saved (0.5)", false},
        {"test-num-samples", ARG_INT, &o->test_num_samples, "test on the first N test samples only (0: all)", false},
        {"workers", ARG_INT, &o->workers, "data loading threads (2)", false},
        {"device", ARG_STR, &o->device, "cpu, cuda or cuda:N (default: cuda when a GPU is present)", false},
        {"threads", ARG_INT, &o->threads, "intra-op threads (0: one per core)", false},
        {"log-every-n-steps", ARG_INT, &o->log_every, "fine-tuning progress line every N steps (10)", false},
    };
    int n = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(specs, n, argc, argv, NULL, 0, NULL);
    if (rc == 1) args_print_help(specs, n, "clipc finetune --train-data M --test-data M --checkpoint F --out-dir D [options]");
    if (rc != 0) return rc;
    if (!o->train_data || !o->test_data || !o->checkpoint || !o->out_dir)
        return err_set("--train-data, --test-data, --checkpoint and --out-dir are required");
    if (strcmp(o->method, "probe") && strcmp(o->method, "finetune") && strcmp(o->method, "all"))
        return err_set("--method must be probe, finetune or all, got '%s'", o->method);
    if (o->shots < 1 || o->shots > 1000000) return err_set("--shots must be between 1 and 1000000, got %ld", o->shots);
    if (o->epochs < 1 || o->batch_size < 1) return err_set("--epochs and --batch-size must be positive");
    if (!(o->wiseft_alpha >= 0 && o->wiseft_alpha <= 1)) return err_set("--wiseft-alpha must be in [0, 1]");
    if (o->log_every < 1) o->log_every = 1;
    return 0;
}

// ---- setup -----------------------------------------------------------------------------------

static int setup_model(finetune_state *s) {
    const finetune_cli *o = &s->o;
    if (!o->vocab) return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB");
    session_options so = {.model = o->model, .model_configs = o->model_configs, .pretrained = o->checkpoint,
                          .vocab = o->vocab, .device = o->device, .threads = (int)o->threads};
    if (session_open(&so, &s->sess) != 0) return -1;
    s->config_json = clip_config_to_json(&s->sess.cfg);
    return 0;
}

static int setup_text(finetune_state *s) {
    if (!(s->train_set = manifest_load(s->o.train_data))) return -1;
    if (s->o.classnames) {
        s->n_classes = zeroshot_read_lines(s->o.classnames, &s->class_names);
        if (s->n_classes < 0) return -1;
        if (s->n_classes != s->train_set->n_classes)
            return err_set("%s: %d class names, but %s has %d classes", s->o.classnames, s->n_classes, s->o.train_data,
                           s->train_set->n_classes);
    } else {
        s->n_classes = s->train_set->n_classes;
        if (s->n_classes <= 0) return err_set("%s: an unlabelled set; few-shot needs labels", s->o.train_data);
        s->class_names = xmalloc((size_t)s->n_classes * sizeof(char *));
        for (int c = 0; c < s->n_classes; c++) s->class_names[c] = xstrdup(s->train_set->class_names[c]);
    }
    if (s->o.templates) {
        s->n_templates = zeroshot_read_lines(s->o.templates, &s->templates);
        return s->n_templates < 0 ? -1 : 0;
    }
    s->n_templates = 1;
    s->templates = xmalloc(sizeof(char *));
    s->templates[0] = xstrdup(DEFAULT_TEMPLATE);
    return 0;
}

static int draw_shots(finetune_state *s) {
    shot_set shots;
    if (shots_draw(s->train_set, (int)s->o.shots, (uint64_t)s->o.seed, &shots) != 0) return -1;
    s->shots_dir = fs_join(s->o.out_dir, "shots");
    int rc = shots_write(s->train_set, &shots, s->shots_dir);
    shots_free(&shots);
    if (rc == 0) printf("shots: %ld per class x %d classes drawn from %s (seed %ld) -> %s\n", s->o.shots, s->n_classes,
                        s->o.train_data, s->o.seed, s->shots_dir);
    return rc;
}

static loader *open_loader(const finetune_state *s, const char *data, bool train, int batch_size) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, s->sess.cfg.vision.image_size, train);
    lc.preprocess = s->sess.cfg.preprocess;  // the model's mean and std (and evaluation transform)
    lc.seed = (uint64_t)s->o.seed;
    lc.workers = (int)s->o.workers;
    return loader_init(&lc);
}

static int read_features(const finetune_state *s, const char *data, int64_t max_n, feature_set *out) {
    loader *l = open_loader(s, data, false, TEST_BATCH);
    if (!l) return -1;
    int rc = loader_num_classes(l) == s->n_classes
                 ? fewshot_features(s->sess.model, l, max_n, out)
                 : err_set("%s: %d classes, but the training set has %d", data, loader_num_classes(l), s->n_classes);
    loader_free(l);
    return rc;
}

// ---- evaluation and output -------------------------------------------------------------------

static int score_head(const feature_set *f, const linear_head *h, double *top1) {
    return linear_head_score(h, f->x, f->y, f->n, top1, NULL);
}

static char *out_path(const finetune_state *s, const char *name) { return fs_join(s->o.out_dir, name); }

static int run_zeroshot(finetune_state *s) {
    tensor *zs = zeroshot_classifier(s->sess.model, s->sess.tok, (const char *const *)s->class_names, s->n_classes,
                                     (const char *const *)s->templates, s->n_templates);
    int rc = zs ? zs_classifier_init(&s->clf, s->sess.model, zs) : -1;
    tensor_free(zs);
    if (rc == 0) rc = read_features(s, s->o.test_data, s->o.test_num_samples, &s->test);
    linear_head head = {0};
    if (rc == 0) rc = zs_classifier_get_head(&s->clf, &head);
    if (rc == 0) rc = score_head(&s->test, &head, &s->zeroshot_top1);
    linear_head_free(&head);
    if (rc != 0) return -1;
    printf("zero-shot: top1 %.4f on %lld test images (%d templates)\n", s->zeroshot_top1, (long long)s->test.n,
           s->n_templates);
    cJSON *z = cJSON_AddObjectToObject(s->report, "zeroshot");
    cJSON_AddNumberToObject(z, "top1", s->zeroshot_top1);
    cJSON_AddNumberToObject(z, "templates", s->n_templates);
    cJSON_AddNumberToObject(s->report, "test_images", (double)s->test.n);
    return 0;
}

static void report_probe(finetune_state *s, const probe_report *r, double top1, const char *head_path) {
    printf("linear probe: lambda %g (%s), %d L-BFGS iterations%s, top1 %.4f -> %s\n", r->lambda,
           r->swept ? "chosen on held-out shots" : "fixed", r->fit.iterations, r->fit.converged ? "" : " (not converged)",
           top1, head_path);
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

static int run_probe(finetune_state *s) {
    feature_set shots = {0};
    linear_head head = {0};
    probe_report r = {0};
    linprobe_options opt = linprobe_options_default();
    double top1 = 0;
    int rc = read_features(s, s->shots_dir, 0, &shots);
    if (rc == 0) rc = fewshot_train_probe(&shots, s->n_classes, (int)s->o.shots, s->o.probe_lambda, &opt, &head, &r);
    if (rc == 0) rc = score_head(&s->test, &head, &top1);
    char *path = out_path(s, "probe.safetensors"), lambda[32], shots_text[32];
    snprintf(lambda, sizeof lambda, "%.17g", r.lambda);
    snprintf(shots_text, sizeof shots_text, "%ld", s->o.shots);
    const char *meta[] = {"clipc.lambda", lambda, "clipc.shots", shots_text, NULL};
    if (rc == 0)
        rc = linear_head_save(&head, path, HEAD_KIND_PROBE, (const char *const *)s->class_names, s->config_json, meta);
    if (rc == 0) report_probe(s, &r, top1, path);
    free(path);
    probe_report_free(&r);
    linear_head_free(&head);
    feature_set_free(&shots);
    return rc;
}

static void log_step(void *ctx, int64_t step, int64_t total, int64_t epoch, double loss, double lr) {
    const finetune_state *s = ctx;
    if (step % s->o.log_every == 0 || step == total || step == 1)
        printf("finetune: step %lld/%lld epoch %lld loss %.5f lr %.3g\n", (long long)step, (long long)total,
               (long long)epoch, loss, lr);
    fflush(stdout);
}

static int train_classifier(finetune_state *s) {
    int64_t n_shots = (int64_t)s->n_classes * s->o.shots;
    int batch = s->o.batch_size < n_shots ? (int)s->o.batch_size : (int)n_shots;
    loader *l = open_loader(s, s->shots_dir, true, batch);
    if (!l) return -1;
    int64_t total = loader_num_batches(l) * s->o.epochs;
    finetune_options fo = {.epochs = (int)s->o.epochs, .lr = s->o.lr, .wd = s->o.wd, .beta1 = 0.9, .beta2 = 0.999,
                           .eps = 1e-8, .warmup = s->o.warmup >= 0 ? s->o.warmup : total / 10, .on_step = log_step,
                           .ctx = s};
    printf("finetune: %lld steps (%ld epochs of batch %d), lr %g, wd %g, warmup %lld\n", (long long)total, s->o.epochs,
           batch, fo.lr, fo.wd, (long long)fo.warmup);
    int rc = finetune_run(&s->clf, l, &fo);
    loader_free(l);
    return rc;
}

// Saves the model and its head as <stem>.safetensors and <stem>.head.safetensors.
static int save_classifier(finetune_state *s, const char *stem, double alpha, cJSON *entry) {
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
static int score_classifier(finetune_state *s, double alpha, double *top1) {
    if (alpha == 0) {
        *top1 = s->zeroshot_top1;
        return 0;
    }
    feature_set f = {0};
    linear_head head = {0};
    int rc = read_features(s, s->o.test_data, s->o.test_num_samples, &f);
    if (rc == 0) rc = zs_classifier_get_head(&s->clf, &head);
    if (rc == 0) rc = score_head(&f, &head, top1);
    linear_head_free(&head);
    feature_set_free(&f);
    return rc;
}

// Evaluates the interpolations (the grid and --wiseft-alpha) and saves the fine-tuned (alpha 1)
// and --wiseft-alpha models.
static int run_wiseft(finetune_state *s, tensor **initial, tensor **tuned, cJSON *ft) {
    double list[N_ALPHAS + 1];
    int n = N_ALPHAS;
    memcpy(list, alphas, sizeof alphas);
    bool listed = false;
    for (int i = 0; i < N_ALPHAS; i++) listed |= alphas[i] == s->o.wiseft_alpha;
    if (!listed) list[n++] = s->o.wiseft_alpha;
    cJSON *table = cJSON_AddArrayToObject(ft, "wiseft");
    double best = -1, best_alpha = 0;
    int rc = 0;
    printf("WiSE-FT: alpha  top1\n");
    for (int i = 0; i < n && rc == 0; i++) {
        double top1 = 0;
        rc = wiseft_interpolate(s->clf.lists, 2, initial, tuned, list[i]);
        if (rc == 0) rc = score_classifier(s, list[i], &top1);
        if (rc != 0) break;
        printf("         %5.2f  %.4f\n", list[i], top1);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "alpha", list[i]);
        cJSON_AddNumberToObject(e, "top1", top1);
        cJSON_AddItemToArray(table, e);
        if (top1 > best) best = top1, best_alpha = list[i];
        if (list[i] == 1) rc = save_classifier(s, "finetuned", 1, e);
        if (rc == 0 && list[i] == s->o.wiseft_alpha && list[i] != 1) rc = save_classifier(s, "wiseft", list[i], e);
        if (list[i] == 1) cJSON_AddNumberToObject(ft, "top1", top1);
    }
    cJSON_AddNumberToObject(ft, "best_alpha", best_alpha);
    cJSON_AddNumberToObject(ft, "best_top1", best);
    return rc;
}

static int run_finetune(finetune_state *s) {
    tensor **initial = weights_snapshot(s->clf.lists, 2), **tuned = NULL;
    int rc = initial ? train_classifier(s) : -1;
    if (rc == 0) rc = (tuned = weights_snapshot(s->clf.lists, 2)) ? 0 : -1;
    cJSON *ft = cJSON_AddObjectToObject(s->report, "finetune");
    cJSON_AddNumberToObject(ft, "epochs", (double)s->o.epochs);
    cJSON_AddNumberToObject(ft, "lr", s->o.lr);
    cJSON_AddNumberToObject(ft, "wd", s->o.wd);
    if (rc == 0) rc = run_wiseft(s, initial, tuned, ft);
    weights_snapshot_free(initial, 2);
    weights_snapshot_free(tuned, 2);
    return rc;
}

static double report_number(const cJSON *report, const char *section, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(report, section), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static void print_table(const finetune_state *s) {
    const cJSON *r = s->report;
    printf("\n%-34s top1 (%lld test images, K = %ld)\n", "method", (long long)s->test.n, s->o.shots);
    printf("%-34s %.4f\n", "zero-shot", s->zeroshot_top1);
    char label[64];
    if (s->do_probe) {
        snprintf(label, sizeof label, "linear probe (lambda %g)", report_number(r, "linear_probe", "lambda"));
        printf("%-34s %.4f\n", label, report_number(r, "linear_probe", "top1"));
    }
    if (s->do_finetune) {
        printf("%-34s %.4f\n", "fine-tuned (alpha 1)", report_number(r, "finetune", "top1"));
        snprintf(label, sizeof label, "WiSE-FT best (alpha %g)", report_number(r, "finetune", "best_alpha"));
        printf("%-34s %.4f\n", label, report_number(r, "finetune", "best_top1"));
    }
}

static int write_report(const finetune_state *s) {
    if (!s->o.output) return 0;
    char *text = cJSON_Print(s->report);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    memcpy(text + len, "\n", 2);
    int rc = atomic_file_write_bytes(s->o.output, text, len + 1);
    free(text);
    return rc;
}

static void start_report(finetune_state *s) {
    s->report = cJSON_CreateObject();
    cJSON_AddStringToObject(s->report, "checkpoint", s->o.checkpoint);
    cJSON_AddStringToObject(s->report, "model", s->sess.cfg.name);
    cJSON_AddStringToObject(s->report, "train_data", s->o.train_data);
    cJSON_AddStringToObject(s->report, "test_data", s->o.test_data);
    cJSON_AddNumberToObject(s->report, "shots", (double)s->o.shots);
    cJSON_AddNumberToObject(s->report, "seed", (double)s->o.seed);
    cJSON_AddNumberToObject(s->report, "classes", s->n_classes);
}

static void state_free(finetune_state *s) {
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

int cmd_finetune(int argc, char **argv) {
    finetune_state s = {0};
    int rc = parse_options(&s.o, argc, argv);
    if (rc != 0) {
        if (rc < 0) fprintf(stderr, "clipc finetune: %s\n", err_msg());
        return rc < 0 ? 2 : 0;
    }
    s.do_probe = strcmp(s.o.method, "finetune") != 0;
    s.do_finetune = strcmp(s.o.method, "probe") != 0;
    rc = setup_model(&s);
    if (rc == 0) rc = setup_text(&s);
    if (rc == 0) rc = fs_mkdirs(s.o.out_dir);
    if (rc == 0) rc = draw_shots(&s);
    if (rc == 0) start_report(&s);
    if (rc == 0) rc = run_zeroshot(&s);
    if (rc == 0 && s.do_probe) rc = run_probe(&s);
    if (rc == 0 && s.do_finetune) rc = run_finetune(&s);
    if (rc == 0) print_table(&s);
    if (rc == 0) rc = write_report(&s);
    if (rc != 0) fprintf(stderr, "clipc finetune: %s\n", err_msg());
    state_free(&s);
    return rc == 0 ? 0 : 1;
}
