// train: contrastive training of a CLIP model on clipc shards, OpenCLIP's loop in C.
//
// Per step: the loader's batch goes to the device, both towers run (bf16 autocast on GPU with
// --precision amp_bf16), the CLIP or SigLIP loss and its backward follow, gradients are clipped,
// AdamW updates the weights with the scheduled learning rate and the logit scale is clamped to
// [0, ln 100]. With distillation (train/distill.h) the objective adds the teacher's terms. A
// non-finite loss skips the step; --nonfinite-limit of them in a row stop the run,
// leaving the last checkpoint as it was. Checkpoints (train/checkpoint.h) hold everything needed
// to continue bit for bit: weights, optimizer moments, step, epoch and the loader's position.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/datafiles.h"
#include "common/error.h"
#include "data/loader.h"
#include "eval/zeroshot.h"
#include "loss/loss.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "session/session.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/log.h"
#include "train/step.h"
#include "train/train.h"

#define DEFAULT_TEMPLATES "zeroshot/imagenet-templates.txt"  // common/datafiles.h
#define ZEROSHOT_BATCH 256

typedef struct {
    train_options o;
    session s;                // model, tokenizer, device
    clip_model *model;        // s.model
    adamw *optim;
    schedule sched;
    loader *data;
    bool distilling;
    distill distill;          // teacher targets and projections when distilling
    param_list *lists[2];     // what the optimizer updates: the model, then the projections if any
    int n_lists;
    bool bf16;
    loss_kind loss;
    char run_dir[2048], ckpt_dir[2100];
    metrics_log *metrics;     // metrics.jsonl
    int64_t steps_per_epoch;
    int64_t step, epoch;      // optimizer steps done; epoch of the next batch
    int64_t saved_step;       // step of the last checkpoint written (-1: none)
    int nonfinite_run;        // non-finite losses in a row
} trainer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return err_errno(path);
    return 0;
}

// ---- setup -----------------------------------------------------------------------------------

static void default_run_name(const train_options *o, char *out, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char date[64];
    strftime(date, sizeof date, "%Y_%m_%d-%H_%M_%S", &tm);
    const char *model = strrchr(o->model, '/') ? strrchr(o->model, '/') + 1 : o->model;
    snprintf(out, cap, "%s-model_%s-lr_%g-b_%ld-j_%ld-p_%s", date, model, o->lr, o->batch_size, o->workers,
             o->precision);
}

static int setup_run_dir(trainer *t) {
    char name[512];
    if (t->o.name) snprintf(name, sizeof name, "%s", t->o.name);
    else default_run_name(&t->o, name, sizeof name);
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", t->o.logs, name);
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s/checkpoints", t->run_dir);
    struct stat st;
    if (!t->o.resume && stat(t->run_dir, &st) == 0)
        return err_set("%s: experiment already exists; use --name for a new one or --resume latest", t->run_dir);
    if (make_dir(t->o.logs) || make_dir(t->run_dir) || make_dir(t->ckpt_dir)) return -1;
    char path[2200];
    snprintf(path, sizeof path, "%s/params.json", t->run_dir);
    FILE *f = fopen_checked(path, "w");
    if (!f) return -1;
    train_options_print(&t->o, f, true);
    fclose(f);
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->run_dir);
    t->metrics = metrics_log_open(path);
    return t->metrics ? 0 : -1;
}

static session_options student_options(const train_options *o) {
    return (session_options){.model = o->model, .model_configs = o->model_configs, .pretrained = o->pretrained,
                             .vocab = o->vocab, .device = o->device, .threads = (int)o->threads,
                             .seed = (uint64_t)o->seed, .siglip = o->siglip, .lock_image = o->lock_image,
                             .lock_text = o->lock_text};
}

static distill_options distill_options_of(const train_options *o) {
    return (distill_options){.model = o->distill_model, .pretrained = o->distill_pretrained, .cache = o->distill_cache,
                             .weight = o->distill_weight, .feature_weight = o->distill_feature_weight};
}

static int setup_session(trainer *t) {
    const train_options *o = &t->o;
    if (!o->vocab)
        return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB (CLIP's bpe_simple_vocab_16e6.txt.gz, or one "
                       "made by 'clipc tokenizer train')");
    session_options so = student_options(o);
    if (session_open(&so, &t->s) != 0) return -1;
    t->model = t->s.model;
    t->loss = o->siglip ? LOSS_KIND_SIGLIP : LOSS_KIND_CLIP;
    t->bf16 = strcmp(o->precision, "fp32") != 0;
    if (t->bf16 && t->s.device.type != TENSOR_DEVICE_CUDA)
        return err_set("--precision %s needs a GPU (bf16 autocast); use fp32 on the CPU", o->precision);
    return 0;
}

// The teacher and/or stored targets (after the training loader, whose shards the cache covers).
static int setup_distill(trainer *t) {
    t->lists[0] = &t->model->params;
    t->n_lists = 1;
    distill_options d = distill_options_of(&t->o);
    t->distilling = distill_enabled(&d);
    if (!t->distilling) return 0;
    session_options so = student_options(&t->o);
    if (distill_open(&t->distill, &d, &so, &t->s, t->data) != 0) return -1;
    if (t->distill.proj.n > 0) t->lists[t->n_lists++] = &t->distill.proj;
    return 0;
}

static int setup_optimizer(trainer *t) {
    const train_options *o = &t->o;
    adamw_config ac = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->wd};
    t->optim = adamw_init(t->lists, t->n_lists, ac);
    return t->optim ? 0 : -1;
}

static loader *open_loader(const trainer *t, const char *data, bool train, int batch_size, const tokenizer *tok) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, t->s.cfg.vision.image_size, train);
    lc.seed = (uint64_t)t->o.seed;
    lc.workers = (int)t->o.workers;
    lc.tok = tok;
    lc.context_length = t->s.cfg.text.context_length;
    if (train) {
        lc.upsampling_factors = t->o.train_data_upsampling_factors;
        lc.resampled = t->o.dataset_resampled;
        lc.samples_per_epoch = t->o.dataset_resampled ? t->o.train_num_samples : 0;
        distill_options d = distill_options_of(&t->o);
        if (distill_view_size(&d, t->o.model_configs, &t->s.cfg, &lc.teacher_image_size) != 0) return NULL;
    }
    return loader_init(&lc);
}

static int setup_schedule(trainer *t) {
    t->steps_per_epoch = loader_num_batches(t->data);
    if (t->o.train_num_samples > 0 && !t->o.dataset_resampled) {
        int64_t cap = t->o.train_num_samples / t->o.batch_size;
        if (cap < t->steps_per_epoch) t->steps_per_epoch = cap;
    }
    if (t->steps_per_epoch <= 0)
        return err_set("%s: fewer samples than one batch of %ld", t->o.train_data, t->o.batch_size);
    t->sched = (schedule){.base_lr = t->o.lr, .warmup_steps = t->o.warmup,
                          .total_steps = t->steps_per_epoch * t->o.epochs,
                          .cooldown_steps = t->steps_per_epoch * t->o.epochs_cooldown,
                          .cooldown_power = t->o.lr_cooldown_power, .cooldown_end_lr = t->o.lr_cooldown_end};
    if (schedule_kind_parse(t->o.lr_scheduler, &t->sched.kind)) return -1;
    return schedule_check(&t->sched);
}

static int resume(trainer *t) {
    char path[4096];
    if (!strcmp(t->o.resume, "latest")) {
        if (checkpoint_find_latest(t->ckpt_dir, path, sizeof path) != 0) {
            printf("resume latest: no checkpoint in %s yet, starting from scratch\n", t->ckpt_dir);
            return 0;
        }
    } else {
        snprintf(path, sizeof path, "%s", t->o.resume);
    }
    train_position pos = {.extra = t->n_lists > 1 ? t->lists[1] : NULL};
    int rc = checkpoint_load(path, t->model, t->optim, &pos);
    if (rc == 0) rc = loader_state_restore(t->data, pos.loader_state, pos.loader_state_size);
    if (rc == 0) {
        t->step = pos.step;
        t->epoch = pos.epoch;
        printf("resumed from %s at step %" PRId64 ", epoch %" PRId64 "\n", path, t->step, t->epoch);
    }
    free(pos.loader_state);
    return rc;
}

// ---- checkpoints and evaluation --------------------------------------------------------------

static int save_checkpoint(trainer *t, const char *stem) {
    train_position pos = {.step = t->step, .epoch = t->epoch, .extra = t->n_lists > 1 ? t->lists[1] : NULL};
    if (loader_state_save(t->data, &pos.loader_state, &pos.loader_state_size) != 0) return -1;
    int rc = checkpoint_save(t->ckpt_dir, stem, t->model, t->optim, &pos);
    free(pos.loader_state);
    if (rc == 0) t->saved_step = t->step;
    if (rc == 0 && strcmp(stem, "epoch_latest") != 0) checkpoint_prune(t->ckpt_dir, (int)t->o.keep_checkpoints);
    return rc;
}

static int load_class_names(const trainer *t, const loader *l, char ***names) {
    if (t->o.zeroshot_classnames) return zeroshot_read_lines(t->o.zeroshot_classnames, names);
    int n = loader_num_classes(l);
    if (n <= 0) return err_set("%s: no class names in the shards; pass --zeroshot-classnames", t->o.zeroshot_data);
    *names = xmalloc((size_t)n * sizeof(char *));
    for (int c = 0; c < n; c++) (*names)[c] = xstrdup(loader_class_name(l, c));
    return n;
}

static int run_zeroshot(trainer *t) {
    loader *l = open_loader(t, t->o.zeroshot_data, false, ZEROSHOT_BATCH, NULL);
    if (!l) return -1;
    char **names = NULL, **templates = NULL;
    int n_names = load_class_names(t, l, &names);
    char templ_path[4096];
    int n_templates = -1;
    if (n_names > 0 && (t->o.zeroshot_templates || datafile_path(DEFAULT_TEMPLATES, templ_path, sizeof templ_path) == 0))
        n_templates = zeroshot_read_lines(t->o.zeroshot_templates ? t->o.zeroshot_templates : templ_path, &templates);
    int rc = -1;
    if (n_templates > 0) {
        double t0 = now_s();
        tensor *classifier = zeroshot_classifier(t->model, t->s.tok, (const char *const *)names, n_names,
                                                 (const char *const *)templates, n_templates);
        zeroshot_result r;
        rc = classifier ? zeroshot_evaluate(t->model, classifier, l, &r) : -1;
        if (rc == 0) {
            printf("Eval Epoch: %" PRId64 " zero-shot %s: top1 %.4f top5 %.4f (%" PRId64 " images, %.1f s)\n", t->epoch,
                   t->o.zeroshot_data, r.top1, r.top5, r.n, now_s() - t0);
            cJSON *line = metrics_line("zeroshot", t->step, t->epoch);
            cJSON_AddStringToObject(line, "dataset", t->o.zeroshot_data);
            cJSON_AddNumberToObject(line, "top1", r.top1);
            cJSON_AddNumberToObject(line, "top5", r.top5);
            cJSON_AddNumberToObject(line, "n", (double)r.n);
            rc = metrics_log_write(t->metrics, line, true);
            zeroshot_result_free(&r);
        }
        tensor_free(classifier);
    }
    if (n_names > 0) zeroshot_free_lines(names, n_names);
    if (n_templates > 0) zeroshot_free_lines(templates, n_templates);
    loader_free(l);
    return rc;
}

static tensor *contrastive_loss(void *ctx, const void *batch);

// Mean contrastive loss over the validation set (OpenCLIP's val_loss), logged as a "val" line.
static int run_validation(trainer *t) {
    loader *l = open_loader(t, t->o.val_data, false, (int)t->o.batch_size, t->s.tok);
    if (!l) return -1;
    double sum = 0;
    int64_t n = 0;
    loader_batch b;
    int rc;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        double value = 0;
        tensor_scope_begin();
        tensor *loss = contrastive_loss(t, &b);
        rc = loss ? tensor_item(loss, &value) : -1;
        tensor_scope_end();
        if (rc != 0) break;
        sum += value * b.n;
        n += b.n;
    }
    tensor_no_grad_end();
    loader_free(l);
    if (rc < 0) return -1;
    if (n == 0) return err_set("%s: the validation set gave no samples", t->o.val_data);
    printf("Eval Epoch: %" PRId64 " val loss %.5f (%" PRId64 " samples)\n", t->epoch, sum / (double)n, n);
    cJSON *line = metrics_line("val", t->step, t->epoch);
    cJSON_AddNumberToObject(line, "loss", sum / (double)n);
    cJSON_AddNumberToObject(line, "n", (double)n);
    return metrics_log_write(t->metrics, line, true);
}

// ---- the step --------------------------------------------------------------------------------

// The contrastive loss of a batch (under the step's autocast when training in amp_bf16).
static tensor *contrastive_loss(void *ctx, const void *batch) {
    const trainer *t = ctx;
    const loader_batch *b = batch;
    tensor *img = clip_encode_image(t->model, clip_images_to_device(t->model, b->images, b->n), true);
    tensor *txt = clip_encode_text_host(t->model, b->tokens, b->n, true);
    return loss_contrastive(t->loss, img, txt, tensor_exp(t->model->logit_scale), t->model->logit_bias);
}

// One optimizer step through train/step.h. Returns 0 (see r->finite) or -1.
static int train_step(trainer *t, const loader_batch *b, step_result *r) {
    step_config sc = {.lists = t->lists, .n_lists = t->n_lists, .opt = t->optim, .sched = &t->sched,
                      .grad_clip_norm = t->o.grad_clip_norm, .logit_scale = t->model->logit_scale,
                      .autocast_bf16 = t->bf16};
    if (!t->distilling) return step_run(&sc, t->step, contrastive_loss, t, b, r);
    distill_objective objective = {.student = t->model, .d = &t->distill, .kind = t->loss};
    return step_run(&sc, t->step, distill_objective_loss, &objective, b, r);
}

// The metrics line of a step; on printed steps (every --log-every-n-steps, the first and each
// epoch's last) also the logit scale, the only value read from the device for logging, and the
// progress line.
static int log_step(trainer *t, const step_result *r, double batch_time, double data_time, double elapsed, int64_t steps_run) {
    double sps = (double)t->o.batch_size / batch_time;
    int64_t in_epoch = t->step - t->epoch * t->steps_per_epoch;
    bool printed = t->step % t->o.log_every_n_steps == 0 || in_epoch == t->steps_per_epoch || t->step == 1;
    double scale = NAN;
    if (printed) {
        tensor_scope_begin();
        int rc = tensor_item(tensor_exp(t->model->logit_scale), &scale);
        tensor_scope_end();
        if (rc != 0) return -1;
    }
    cJSON *line = metrics_line("train", t->step, t->epoch);
    cJSON_AddNumberToObject(line, "samples", (double)(t->step * t->o.batch_size));
    cJSON_AddNumberToObject(line, "loss", r->loss);
    cJSON_AddNumberToObject(line, "lr", r->lr);
    cJSON_AddNumberToObject(line, "grad_norm", r->grad_norm);
    if (printed) cJSON_AddNumberToObject(line, "logit_scale", scale);
    if (t->distilling && isfinite(t->distill.crop_cosine))
        cJSON_AddNumberToObject(line, "teacher_crop_cosine", t->distill.crop_cosine);
    cJSON_AddNumberToObject(line, "samples_per_s", sps);
    cJSON_AddNumberToObject(line, "data_time", data_time);
    cJSON_AddNumberToObject(line, "batch_time", batch_time);
    if (metrics_log_write(t->metrics, line, printed) != 0 || !printed) return printed ? -1 : 0;
    int64_t remaining = t->sched.total_steps - t->step;
    if (t->o.max_steps > 0 && t->o.max_steps - t->step < remaining) remaining = t->o.max_steps - t->step;
    double eta = steps_run > 0 ? elapsed / (double)steps_run * (double)remaining : 0;
    printf("Train Epoch: %" PRId64 " Step: %" PRId64 " [%7" PRId64 "/%" PRId64 " (%3.0f%%)] Loss: %.5f LR: %.6g "
           "Logit Scale: %.3f %.1f samples/s Data (t): %.3f Batch (t): %.3f ETA %dm%02ds\n",
           t->epoch, t->step, in_epoch * t->o.batch_size, t->steps_per_epoch * t->o.batch_size,
           100.0 * (double)in_epoch / (double)t->steps_per_epoch, r->loss, r->lr, scale, sps, data_time, batch_time,
           (int)(eta / 60), (int)fmod(eta, 60));
    fflush(stdout);
    return 0;
}

// Counts a skipped step (non-finite loss or gradient). Returns -1 (with the message) when the run
// must stop.
static int note_nonfinite(trainer *t, const step_result *r) {
    t->nonfinite_run++;
    char loss[32], norm[32];  // as text: JSON has no NaN or infinity
    snprintf(loss, sizeof loss, "%g", r->loss);
    snprintf(norm, sizeof norm, "%g", r->grad_norm);
    cJSON *line = metrics_line("nonfinite", t->step, t->epoch);
    cJSON_AddStringToObject(line, "loss", loss);
    cJSON_AddStringToObject(line, "grad_norm", norm);
    if (metrics_log_write(t->metrics, line, true) != 0) return -1;
    fprintf(stderr, "clipc train: non-finite %s (loss %g, gradient norm %g) at step %" PRId64 ": step skipped\n",
            isfinite(r->loss) ? "gradient" : "loss", r->loss, r->grad_norm, t->step);
    if (t->nonfinite_run < t->o.nonfinite_limit) return 0;
    return err_set("the loss was non-finite for %d steps in a row (at step %" PRId64 "); stopping. Checkpoints in %s "
                   "are from before; try a lower --lr or --grad-clip-norm", t->nonfinite_run, t->step, t->ckpt_dir);
}

static bool reached_max_steps(const trainer *t) { return t->o.max_steps > 0 && t->step >= t->o.max_steps; }

static int finish_epoch(trainer *t) {
    t->epoch++;
    loader_set_epoch(t->data, t->epoch);
    bool last = t->epoch == t->o.epochs;
    if (t->o.save_frequency > 0 && (t->epoch % t->o.save_frequency == 0 || last)) {
        char stem[64];
        snprintf(stem, sizeof stem, "epoch_%" PRId64, t->epoch);
        if (save_checkpoint(t, stem) != 0) return -1;
    }
    if (t->o.save_most_recent && save_checkpoint(t, "epoch_latest") != 0) return -1;
    if (t->o.val_data && run_validation(t) != 0) return -1;
    if (t->o.zeroshot_data && t->o.zeroshot_frequency > 0 && (t->epoch % t->o.zeroshot_frequency == 0 || last))
        return run_zeroshot(t);
    return 0;
}

static int save_step_checkpoint(trainer *t) {
    char stem[64];
    snprintf(stem, sizeof stem, "step_%" PRId64, t->step);
    return save_checkpoint(t, stem);
}

static int train_loop(trainer *t) {
    double start = now_s();
    int64_t steps_run = 0;
    while (t->epoch < t->o.epochs) {
        // An epoch that ends on the last allowed step is still finished (checkpoint, evaluation).
        bool epoch_done = t->step >= (t->epoch + 1) * t->steps_per_epoch;
        if (!epoch_done && reached_max_steps(t)) break;
        double t0 = now_s();
        loader_batch b;
        int got = epoch_done ? 0 : loader_next(t->data, &b);
        if (got < 0) return -1;
        if (got == 0) {
            if (finish_epoch(t) != 0) return -1;
            continue;
        }
        double t1 = now_s();
        step_result r;
        if (train_step(t, &b, &r) != 0) return -1;
        t->step++;
        steps_run++;
        if (!r.finite) {
            if (note_nonfinite(t, &r) != 0) return -1;
        } else {
            t->nonfinite_run = 0;
            if (log_step(t, &r, now_s() - t0, t1 - t0, now_s() - start, steps_run) != 0) return -1;
        }
        if (t->o.save_steps > 0 && t->step % t->o.save_steps == 0 && save_step_checkpoint(t) != 0) return -1;
    }
    // A run stopped by --max-steps leaves a checkpoint to resume from.
    if (t->o.save_frequency > 0 && t->saved_step != t->step && steps_run > 0 && save_step_checkpoint(t) != 0) return -1;
    loader_stats st = loader_get_stats(t->data);
    printf("done: %" PRId64 " steps in %.1f s, %" PRId64 " corrupt samples skipped; run folder %s\n", steps_run,
           now_s() - start, st.corrupt_skipped, t->run_dir);
    return 0;
}

static void trainer_free(trainer *t) {
    loader_free(t->data);
    adamw_free(t->optim);
    if (t->distilling) distill_close(&t->distill);
    session_close(&t->s);
    metrics_log_close(t->metrics);
}

int train_run(const train_options *o) {
    trainer t = {.o = *o, .saved_step = -1};
    int rc = setup_session(&t);
    if (rc == 0) rc = (t.data = open_loader(&t, t.o.train_data, true, (int)t.o.batch_size, t.s.tok)) ? 0 : -1;
    if (rc == 0) rc = setup_distill(&t);
    if (rc == 0) rc = setup_optimizer(&t);
    if (rc == 0) rc = setup_schedule(&t);
    if (rc == 0) rc = setup_run_dir(&t);
    if (rc == 0 && t.o.resume) rc = resume(&t);
    if (rc == 0) rc = train_loop(&t);
    trainer_free(&t);
    return rc;
}
