// train: contrastive training of a CLIP model on clipc shards, OpenCLIP's loop in C.
//
// Per step: the loader's batch goes to the device, both towers run (bf16 autocast on GPU with
// --precision amp_bf16), the CLIP or SigLIP loss and its backward follow, gradients are clipped,
// AdamW updates the weights with the scheduled learning rate and the logit scale is clamped to
// [0, ln 100]. A non-finite loss skips the step; --nonfinite-limit of them in a row stop the run,
// leaving the last checkpoint as it was. Checkpoints (train/checkpoint.h) hold everything needed
// to continue bit for bit: weights, optimizer moments, step, epoch and the loader's position.
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/error.h"
#include "data/loader.h"
#include "eval/zeroshot.h"
#include "loss/loss.h"
#include "optim/adamw.h"
#include "optim/grad.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "train/train.h"

#define DEFAULT_TEMPLATES "configs/zeroshot/imagenet-templates.txt"
#define ZEROSHOT_BATCH 256

typedef struct {
    train_options o;
    clip_config cfg;
    clip_model *model;
    adamw *optim;
    schedule sched;
    tokenizer *tok;
    loader *data;
    tensor_device device;
    bool bf16;
    char run_dir[2048], ckpt_dir[2100];
    FILE *metrics;            // metrics.jsonl
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
    t->metrics = fopen_checked(path, "a");
    return t->metrics ? 0 : -1;
}

static int pick_device(trainer *t) {
    if (tensor_device_parse(t->o.device, &t->device) != 0) return -1;
    bool cuda = t->device.type == TENSOR_DEVICE_CUDA;
    t->bf16 = strcmp(t->o.precision, "fp32") != 0;
    if (t->bf16 && !cuda) return err_set("--precision %s needs a GPU (bf16 autocast); use fp32 on the CPU", t->o.precision);
    return 0;
}

static int setup_model(trainer *t) {
    char path[1024];
    if (clip_config_find(t->o.model, t->o.model_configs, path, sizeof path) || clip_config_load(path, &t->cfg)) return -1;
    if (t->o.siglip) {
        t->cfg.init_logit_scale = log(10.0);
        t->cfg.init_logit_bias_set = true;
        t->cfg.init_logit_bias = -10.0;
    }
    t->model = clip_model_init(&t->cfg, (uint64_t)t->o.seed);
    if (!t->model) return -1;
    if (t->o.pretrained && clip_model_load(t->model, t->o.pretrained)) return -1;
    if (t->o.lock_image) clip_model_lock_image(t->model);
    if (t->o.lock_text) clip_model_lock_text(t->model);
    if (clip_model_to_device(t->model, t->device)) return -1;
    adamw_config ac = adamw_config_default();
    ac.lr = t->o.lr, ac.beta1 = t->o.beta1, ac.beta2 = t->o.beta2, ac.eps = t->o.eps, ac.weight_decay = t->o.wd;
    t->optim = adamw_init(t->model->params, t->model->n_params, ac);
    return t->optim ? 0 : -1;
}

static int setup_tokenizer(trainer *t) {
    if (!t->o.vocab) return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB (CLIP's bpe_simple_vocab_16e6.txt.gz, or one made by 'clipc tokenizer train')");
    t->tok = tokenizer_load(t->o.vocab, 0);
    if (!t->tok) return -1;
    if (tokenizer_vocab_size(t->tok) > t->cfg.text.vocab_size)
        return err_set("%s: the vocabulary has %d tokens but model %s has vocab_size %d", t->o.vocab,
                       tokenizer_vocab_size(t->tok), t->cfg.name, t->cfg.text.vocab_size);
    return 0;
}

static loader *open_loader(const trainer *t, const char *data, bool train, int batch_size, const tokenizer *tok) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, t->cfg.vision.image_size, train);
    lc.seed = (uint64_t)t->o.seed;
    lc.workers = (int)t->o.workers;
    lc.tok = tok;
    lc.context_length = t->cfg.text.context_length;
    if (train) {
        lc.upsampling_factors = t->o.train_data_upsampling_factors;
        lc.resampled = t->o.dataset_resampled;
        lc.samples_per_epoch = t->o.dataset_resampled ? t->o.train_num_samples : 0;
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

// --resume latest: the newest usable checkpoint, naming each one passed over and why.
static int find_latest(const trainer *t, char *path, size_t cap) {
    checkpoint_skipped skipped = {0};
    int rc = checkpoint_find_latest(t->ckpt_dir, path, cap, &skipped);
    for (int i = 0; i < skipped.n; i++) printf("resume latest: skipping %s\n", skipped.lines[i]);
    checkpoint_skipped_free(&skipped);
    if (rc == 1) printf("resume latest: no checkpoint in %s yet, starting from scratch\n", t->ckpt_dir);
    return rc;
}

static int resume(trainer *t) {
    char path[4096];
    if (!strcmp(t->o.resume, "latest")) {
        int rc = find_latest(t, path, sizeof path);
        if (rc != 0) return rc < 0 ? -1 : 0;
    } else {
        snprintf(path, sizeof path, "%s", t->o.resume);
    }
    train_position pos = {0};
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

// Writes checkpoint `name` unless the run is in a non-finite streak (the weights may be poisoned).
// A failed save leaves the earlier checkpoints as they were; it stops the run or, with
// --on-save-error continue, is reported and training goes on.
static int save_checkpoint(trainer *t, const char *name) {
    if (t->nonfinite_run > 0) {
        printf("checkpoint %s not written: the last %d steps were non-finite\n", name, t->nonfinite_run);
        return 0;
    }
    train_position pos = {.step = t->step, .epoch = t->epoch};
    if (loader_state_save(t->data, &pos.loader_state, &pos.loader_state_size) != 0) return -1;
    int rc = checkpoint_save(t->ckpt_dir, name, t->model, t->optim, &pos);
    free(pos.loader_state);
    if (rc != 0 && !strcmp(t->o.on_save_error, "continue")) {
        fprintf(stderr, "clipc train: %s; continuing (--on-save-error continue)\n", err_msg());
        fprintf(t->metrics, "{\"type\":\"save_error\",\"step\":%" PRId64 ",\"checkpoint\":\"%s\"}\n", t->step, name);
        fflush(t->metrics);
        return 0;
    }
    if (rc == 0) t->saved_step = t->step;
    if (rc == 0 && strcmp(name, "epoch_latest") != 0) checkpoint_prune(t->ckpt_dir, (int)t->o.keep_checkpoints);
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
    const char *templ_path = t->o.zeroshot_templates ? t->o.zeroshot_templates : DEFAULT_TEMPLATES;
    int n_templates = n_names > 0 ? zeroshot_read_lines(templ_path, &templates) : -1;
    int rc = -1;
    if (n_templates > 0) {
        double t0 = now_s();
        tensor *classifier = zeroshot_classifier(t->model, t->tok, (const char *const *)names, n_names,
                                                 (const char *const *)templates, n_templates);
        zeroshot_result r;
        rc = classifier ? zeroshot_evaluate(t->model, classifier, l, &r) : -1;
        if (rc == 0) {
            printf("Eval Epoch: %" PRId64 " zero-shot %s: top1 %.4f top5 %.4f (%" PRId64 " images, %.1f s)\n", t->epoch,
                   t->o.zeroshot_data, r.top1, r.top5, r.n, now_s() - t0);
            fprintf(t->metrics, "{\"type\":\"zeroshot\",\"step\":%" PRId64 ",\"epoch\":%" PRId64
                    ",\"dataset\":\"%s\",\"top1\":%.6f,\"top5\":%.6f,\"n\":%" PRId64 "}\n",
                    t->step, t->epoch, t->o.zeroshot_data, r.top1, r.top5, r.n);
            fflush(t->metrics);
            zeroshot_result_free(&r);
        }
        tensor_free(classifier);
    }
    if (n_names > 0) zeroshot_free_lines(names, n_names);
    if (n_templates > 0) zeroshot_free_lines(templates, n_templates);
    loader_free(l);
    return rc;
}

static tensor *batch_loss(trainer *t, const loader_batch *b);

// Mean contrastive loss over the validation set (OpenCLIP's val_loss), logged as a "val" line.
static int run_validation(trainer *t) {
    loader *l = open_loader(t, t->o.val_data, false, (int)t->o.batch_size, t->tok);
    if (!l) return -1;
    double sum = 0;
    int64_t n = 0;
    loader_batch b;
    int rc;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        double value = 0;
        tensor_scope_begin();
        tensor *loss = batch_loss(t, &b);
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
    fprintf(t->metrics, "{\"type\":\"val\",\"step\":%" PRId64 ",\"epoch\":%" PRId64 ",\"loss\":%.9g,\"n\":%" PRId64 "}\n",
            t->step, t->epoch, sum / (double)n, n);
    fflush(t->metrics);
    return 0;
}

// ---- the step --------------------------------------------------------------------------------

static tensor *batch_tensor(const trainer *t, const void *data, const int64_t *shape, int ndim, tensor_dtype dt) {
    return tensor_to_device(tensor_from_host(data, shape, ndim, dt, false), t->device, true);
}

static tensor *batch_loss(trainer *t, const loader_batch *b) {
    int64_t img_shape[4] = {b->n, 3, t->cfg.vision.image_size, t->cfg.vision.image_size};
    tensor *images = batch_tensor(t, b->images, img_shape, 4, TENSOR_F32);
    if (t->bf16 && tensor_autocast_begin(TENSOR_BF16) != 0) return NULL;
    tensor *img = clip_encode_image(t->model, images, true);
    tensor *txt = clip_encode_text_host(t->model, b->tokens, b->n, true);
    if (t->bf16) {
        tensor_autocast_end();
        img = tensor_to_dtype(img, TENSOR_F32);
        txt = tensor_to_dtype(txt, TENSOR_F32);
    }
    tensor *scale = tensor_exp(t->model->logit_scale);
    if (t->o.siglip) return loss_siglip(img, txt, scale, t->model->logit_bias);
    return loss_clip(img, txt, scale);
}

// One optimizer step. Returns 0 (with *loss_value, possibly non-finite: then nothing changed) or -1.
static int train_step(trainer *t, const loader_batch *b, double *loss_value) {
    adamw_set_lr(t->optim, schedule_lr(&t->sched, t->step));
    tensor_scope_begin();
    tensor *loss = batch_loss(t, b);
    int rc = loss ? tensor_item(loss, loss_value) : -1;
    if (rc == 0 && isfinite(*loss_value)) {
        rc = tensor_backward(loss, NULL);
        double norm = 0;
        if (rc == 0 && t->o.grad_clip_norm > 0) norm = optim_clip_grad_norm(t->model->params, t->model->n_params, t->o.grad_clip_norm);
        if (rc == 0 && !isfinite(norm)) *loss_value = norm;  // report the step as non-finite
        else if (rc == 0) rc = adamw_step(t->optim);
        if (rc == 0) rc = optim_clamp_logit_scale(t->model->logit_scale);
    }
    tensor_scope_end();
    for (int i = 0; i < t->model->n_params; i++) tensor_zero_grad(t->model->params[i].value);
    return rc;
}

static void log_step(trainer *t, double loss, double batch_time, double data_time, double elapsed, int64_t steps_run) {
    double scale = 0;
    tensor_scope_begin();
    tensor_item(tensor_exp(t->model->logit_scale), &scale);
    tensor_scope_end();
    double lr = adamw_get_config(t->optim).lr, sps = (double)t->o.batch_size / batch_time;
    int64_t in_epoch = t->step - t->epoch * t->steps_per_epoch;
    fprintf(t->metrics, "{\"type\":\"train\",\"step\":%" PRId64 ",\"epoch\":%" PRId64 ",\"samples\":%" PRId64
            ",\"loss\":%.9g,\"lr\":%.9g,\"logit_scale\":%.6g,\"samples_per_s\":%.2f,\"data_time\":%.5f,\"batch_time\":%.5f}\n",
            t->step, t->epoch, t->step * t->o.batch_size, loss, lr, scale, sps, data_time, batch_time);
    bool last_of_epoch = in_epoch == t->steps_per_epoch;
    if (t->step % t->o.log_every_n_steps != 0 && !last_of_epoch && t->step != 1) return;
    fflush(t->metrics);
    int64_t remaining = t->sched.total_steps - t->step;
    if (t->o.max_steps > 0 && t->o.max_steps - t->step < remaining) remaining = t->o.max_steps - t->step;
    double eta = steps_run > 0 ? elapsed / (double)steps_run * (double)remaining : 0;
    printf("Train Epoch: %" PRId64 " Step: %" PRId64 " [%7" PRId64 "/%" PRId64 " (%3.0f%%)] Loss: %.5f LR: %.6g "
           "Logit Scale: %.3f %.1f samples/s Data (t): %.3f Batch (t): %.3f ETA %dm%02ds\n",
           t->epoch, t->step, in_epoch * t->o.batch_size, t->steps_per_epoch * t->o.batch_size,
           100.0 * (double)in_epoch / (double)t->steps_per_epoch, loss, lr, scale, sps, data_time, batch_time,
           (int)(eta / 60), (int)fmod(eta, 60));
    fflush(stdout);
}

// Counts a non-finite loss. Returns -1 (with the message) when the run must stop.
static int note_nonfinite(trainer *t, double loss) {
    t->nonfinite_run++;
    fprintf(t->metrics, "{\"type\":\"nonfinite\",\"step\":%" PRId64 ",\"epoch\":%" PRId64 ",\"loss\":\"%g\"}\n",
            t->step, t->epoch, loss);
    fflush(t->metrics);
    fprintf(stderr, "clipc train: non-finite loss (%g) at step %" PRId64 ": step skipped\n", loss, t->step);
    if (t->nonfinite_run < t->o.nonfinite_limit) return 0;
    return err_set("the loss was non-finite for %d steps in a row (at step %" PRId64 "); stopping. Checkpoints in %s "
                   "are from before; try a lower --lr or --grad-clip-norm", t->nonfinite_run, t->step, t->ckpt_dir);
}

// Names each corrupt sample the loader passed over to make the batch of the next step.
static void log_corrupt(trainer *t, const loader_batch *b) {
    for (int i = 0; i < b->n_corrupt; i++) {
        fprintf(stderr, "clipc train: step %" PRId64 ": passed over a corrupt sample: %s\n", t->step + 1, b->corrupt[i]);
        cJSON *line = cJSON_CreateObject();
        cJSON_AddStringToObject(line, "type", "corrupt_sample");
        cJSON_AddNumberToObject(line, "step", (double)(t->step + 1));
        cJSON_AddStringToObject(line, "sample", b->corrupt[i]);
        char *text = cJSON_PrintUnformatted(line);
        fprintf(t->metrics, "%s\n", text);
        free(text);
        cJSON_Delete(line);
    }
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
        log_corrupt(t, &b);
        double t1 = now_s(), loss = 0;
        if (train_step(t, &b, &loss) != 0) return -1;
        t->step++;
        steps_run++;
        if (!isfinite(loss)) {
            if (note_nonfinite(t, loss) != 0) return -1;
        } else {
            t->nonfinite_run = 0;
            log_step(t, loss, now_s() - t0, t1 - t0, now_s() - start, steps_run);
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
    tokenizer_free(t->tok);
    adamw_free(t->optim);
    clip_model_free(t->model);
    if (t->metrics) fclose(t->metrics);
}

int train_run(const train_options *o) {
    trainer t = {.o = *o, .saved_step = -1};
    int rc = pick_device(&t);
    if (rc == 0) rc = setup_model(&t);
    if (rc == 0) rc = setup_tokenizer(&t);
    if (rc == 0) rc = (t.data = open_loader(&t, t.o.train_data, true, (int)t.o.batch_size, t.tok)) ? 0 : -1;
    if (rc == 0) rc = setup_schedule(&t);
    if (rc == 0) rc = setup_run_dir(&t);
    if (rc == 0 && t.o.resume) rc = resume(&t);
    if (rc == 0) rc = train_loop(&t);
    trainer_free(&t);
    return rc;
}
