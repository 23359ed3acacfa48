// train: contrastive training of a CLIP model on clipc shards, OpenCLIP's loop in C.
//
// Per step (train/step.h with train/objective.h): the loader's uint8 batch goes to the device from
// pinned memory and is normalized there, both towers run (under bf16 autocast with --precision
// amp_bf16; in bf16 weights with pure_bf16), the CLIP or SigLIP loss over the global batch and its
// backward follow, gradients are summed over the ranks and clipped, AdamW updates the weights with
// the scheduled learning rate and the logit scale is clamped to [0, ln 100]. One host read a step
// (loss and gradient norm); the logit scale is read on printed steps only. A non-finite loss skips
// the step; --nonfinite-limit of them in a row stop the run, leaving the last checkpoint as it was.
// Checkpoints (train/checkpoint.h) hold everything needed to continue bit for bit: weights,
// optimizer moments, step, epoch and the loader's position. With distillation (train/distill.h) the
// objective adds the teacher's terms.
#include <cjson/cJSON.h>
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
#include "common/sysinfo.h"
#include "loader/loader.h"
#include "distributed/dist.h"
#include "eval/zeroshot.h"
#include "loss/loss.h"
#include "optim/adamw.h"
#include "optim/grad_scaler.h"
#include "optim/schedule.h"
#include "session/session.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/log.h"
#include "train/objective.h"
#include "train/report.h"
#include "train/step.h"
#include "train/train.h"
#include "train/zero.h"

#define DEFAULT_TEMPLATES "zeroshot/imagenet-templates.txt"  // common/datafiles.h
#define ZEROSHOT_BATCH 256

typedef struct {
    train_options o;
    dist *d;                  // this process's place among the ranks (world size 1 without a launcher)
    bool lead;                // rank 0: writes the run folder, checkpoints and logs; prints
    session s;                // model, tokenizer, device
    clip_model *model;        // s.model
    adamw *optim;
    schedule sched;
    loader *data;
    train_precision precision;
    train_objective objective;  // the objective of every step
    bool distilling;
    distill distill;          // teacher targets and projections when distilling
    param_list *lists[2];     // what the optimizer updates: the model, then the projections if any
    int n_lists;
    char run_dir[2048], ckpt_dir[2100];
    metrics_log *metrics;     // metrics.jsonl
    int64_t steps_per_epoch;
    int64_t step, epoch;      // optimizer steps done; epoch of the next batch
    int64_t saved_step;       // step of the last checkpoint written (-1: none)
    int nonfinite_run;        // non-finite losses in a row
    double comm_time;         // seconds the last step spent in collectives (on this rank)
    int64_t peak_mem;         // bytes at the peak of the last step on this rank's device (-1: unknown)
    const char *precision_why;  // how --precision was chosen (the start line says it)
    grad_scaler scaler;       // --precision amp's loss scaler (optim/grad_scaler.h)
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

// Overwrites text (cap bytes) with the lead rank's (a control message: distributed/ places it on
// the group's device).
static int share_text(trainer *t, char *text, size_t cap) {
    return dist_world_size(t->d) == 1 ? 0 : dist_broadcast_text(t->d, text, cap, 0);
}

static void print_notice(const char *line) { fprintf(stderr, "clipc train: %s\n", line); }

// Joins the other ranks (distributed/dist.h): the backend follows --device, a CUDA rank uses its GPU.
static int setup_dist(trainer *t) {
    tensor_device asked;
    if (tensor_device_parse(t->o.device, &asked) != 0) return -1;
    t->d = dist_init(&(dist_options){.device = asked, .timeout_s = t->o.dist_timeout, .debug = t->o.dist_debug,
                                         .notice = print_notice});
    if (!t->d) return -1;
    t->lead = dist_rank(t->d) == 0;
    if (t->lead && !t->o.device && dist_world_size(t->d) > 1 && asked.type == TENSOR_DEVICE_CPU)
        fprintf(stderr, "clipc train: WARNING: no GPU found and no --device given: %d ranks train on the CPU over Gloo "
                "(pass --device cpu to mean it)\n", dist_world_size(t->d));
    return 0;
}

// The session's device string for this rank's device (dist_device: its GPU, or its cpu:N in strict mode).
static void rank_device_name(const trainer *t, char *out, size_t cap) { tensor_device_format(dist_device(t->d), out, cap); }

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

// --report-to tensorboard: event files in the run's tensorboard/ folder (OpenCLIP's), a new one
// each time the run starts or resumes (lead rank).
static int setup_report(trainer *t) {
    report_targets r;
    if (report_parse_targets(t->o.report_to, &r) != 0) return -1;
    if (!r.tensorboard) return 0;
    char dir[2200];
    snprintf(dir, sizeof dir, "%s/tensorboard", t->run_dir);
    return metrics_log_add_tensorboard(t->metrics, dir);
}

// The run folder's paths on every rank; only the lead rank creates and writes it. Without --name
// the ranks agree on the lead's name (its clock) through a broadcast.
static int setup_run_dir(trainer *t) {
    char name[512];
    if (t->o.name) snprintf(name, sizeof name, "%s", t->o.name);
    else default_run_name(&t->o, name, sizeof name);
    if (!t->o.name && share_text(t, name, sizeof name) != 0) return -1;
    snprintf(t->run_dir, sizeof t->run_dir, "%s/%s", t->o.logs, name);
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s/checkpoints", t->run_dir);
    if (!t->lead) return 0;
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
    return t->metrics ? setup_report(t) : -1;
}

// Without --precision: amp_bf16 on a GPU that computes in bf16 (OpenCLIP's mixed precision by
// default), fp32 on the CPU or another GPU.
static void default_precision(trainer *t) {
    bool gpu = t->s.device.type == TENSOR_DEVICE_CUDA;
    if (t->o.precision) t->precision_why = "--precision";
    else if (gpu && tensor_bf16_supported(t->s.device))
        t->o.precision = "amp_bf16", t->precision_why = "default on a GPU that computes in bf16";
    else t->o.precision = "fp32", t->precision_why = gpu ? "default: this GPU does not compute in bf16" : "default on the CPU";
}

// --precision amp: the loss scaler; float16 autocast needs CUDA, so the CPU computes in float32
// with the scaler (a check of it). CLIPC_TEST_GRAD_SCALE (a test hook) sets its initial scale.
static void setup_scaler(trainer *t) {
    t->scaler = grad_scaler_default();
    const char *v = getenv("CLIPC_TEST_GRAD_SCALE");
    if (v && atof(v) > 0) t->scaler.scale = atof(v);
    if (t->s.device.type != TENSOR_DEVICE_CUDA)
        t->precision_why = "float16 autocast needs a CUDA GPU: the CPU computes float32, with the loss scaler";
}

// TF32 on a GPU unless --no-tf32; bf16 weights for pure_bf16 (before the optimizer takes them).
static int setup_precision(trainer *t) {
    const train_options *o = &t->o;
    default_precision(t);
    if (train_precision_parse(o->precision, &t->precision) != 0) return -1;
    if (t->precision == TRAIN_PRECISION_AMP) setup_scaler(t);
    if ((t->precision == TRAIN_PRECISION_AMP_BF16 || t->precision == TRAIN_PRECISION_PURE_BF16) && !tensor_bf16_supported(t->s.device))
        return err_set("--precision %s: this GPU cannot compute in bf16; use fp32", o->precision);
    if (t->s.device.type == TENSOR_DEVICE_CUDA) tensor_set_tf32(!o->no_tf32);
    return t->precision == TRAIN_PRECISION_PURE_BF16 ? clip_model_to_dtype(t->model, TENSOR_BF16) : 0;
}

// --use-bn-sync: the sum over the ranks of a ResNet tower's BatchNorm statistics (model/resnet.h).
static int bn_sync_reduce(void *group, tensor *x) { return dist_all_reduce(group, &x, 1); }

// OpenCLIP's model flags: partial tower locks, QuickGELU, patch dropout, normalization.
static void set_model_overrides(const train_options *o, session_options *so) {
    so->lock_image_unlocked_groups = (int)o->lock_image_unlocked_groups;
    so->lock_image_freeze_bn_stats = o->lock_image_freeze_bn_stats;
    so->lock_text_unlocked_layers = (int)o->lock_text_unlocked_layers;
    so->lock_text_freeze_layer_norm = o->lock_text_freeze_layer_norm;
    so->force_quick_gelu = o->force_quick_gelu;
    so->force_patch_dropout = o->force_patch_dropout >= 0 ? &o->force_patch_dropout : NULL;
    so->image_mean = isnan(o->image_mean[0]) ? NULL : o->image_mean;
    so->image_std = isnan(o->image_std[0]) ? NULL : o->image_std;
}

static int setup_session(trainer *t) {
    const train_options *o = &t->o;
    if (!o->vocab)
        return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB (CLIP's bpe_simple_vocab_16e6.txt.gz, or one "
                       "made by 'clipc tokenizer train')");
    tensor_device dev = dist_device(t->d);
    char device[32];
    rank_device_name(t, device, sizeof device);
    // CPU ranks on one machine share its cores unless --threads says otherwise.
    int threads = (int)o->threads, world = dist_world_size(t->d);
    if (threads == 0 && dev.type == TENSOR_DEVICE_CPU && world > 1) threads = sysinfo_cores() / world > 0 ? sysinfo_cores() / world : 1;
    session_options so = {.model = o->model, .model_configs = o->model_configs, .pretrained = o->pretrained,
                          .vocab = o->vocab, .device = device, .threads = threads, .seed = (uint64_t)o->seed,
                          .siglip = o->siglip, .lock_image = o->lock_image, .lock_text = o->lock_text};
    set_model_overrides(o, &so);
    if (o->deterministic && tensor_set_deterministic(true) != 0) return -1;
    if (session_open(&so, &t->s) != 0) return -1;
    t->model = t->s.model;
    t->model->grad_checkpointing = o->grad_checkpointing;
    // Every rank starts from rank 0's weights (the same seed gives the same ones; pretrained
    // weights read elsewhere may not).
    tensor *weights[1] = {t->model->params.data};
    if (world > 1 && dist_broadcast(t->d, weights, 1, 0) != 0) return -1;
    t->objective = (train_objective){.model = t->model, .loss = o->siglip ? LOSS_KIND_SIGLIP : LOSS_KIND_CLIP,
                                     .seed = (uint64_t)o->seed, .rank = dist_rank(t->d)};
    if (o->use_bn_sync && world > 1) clip_model_set_bn_sync(t->model, bn_sync_reduce, t->d);
    return setup_precision(t);
}

static distill_options distill_options_of(const train_options *o) {
    return (distill_options){.model = o->distill_model, .pretrained = o->distill_pretrained, .cache = o->distill_cache,
                             .weight = o->distill_weight, .feature_weight = o->distill_feature_weight,
                             .logit_scale = o->distill_logit_scale, .contrastive_weight = o->contrastive_weight};
}

// The teacher and/or stored targets (after the training loader, whose shards the cache covers).
static int setup_distill(trainer *t) {
    t->lists[0] = &t->model->params;
    t->n_lists = 1;
    distill_options d = distill_options_of(&t->o);
    t->distilling = distill_enabled(&d);
    if (!t->distilling) return 0;
    char device[32];  // the teacher runs beside its rank's student, never on --device's GPU 0
    rank_device_name(t, device, sizeof device);
    session_options so = {.model = t->o.model, .model_configs = t->o.model_configs, .pretrained = t->o.pretrained,
                          .vocab = t->o.vocab, .device = device, .threads = (int)t->o.threads,
                          .seed = (uint64_t)t->o.seed};
    if (distill_open(&t->distill, &d, &so, &t->s, t->data) != 0) return -1;
    if (t->distill.proj.n > 0) t->lists[t->n_lists++] = &t->distill.proj;
    t->objective.distill = &t->distill;
    loader_view_source views;  // distill: stored views replace the loader's draws (before any resume)
    if (distill_view_source(&t->distill, &views)) loader_set_view_source(t->data, views);
    return 0;
}

static adamw_config adamw_config_of(const train_options *o) {
    return (adamw_config){.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->wd};
}

// With --zero on several ranks, this rank's AdamW owns its shard of each list (train/zero.h).
static bool zero_sharded(const trainer *t) { return t->o.zero > 0 && dist_world_size(t->d) > 1; }

static int setup_optimizer(trainer *t) {
    int64_t lo[2], hi[2];
    zero_shard_ranges(t->d, t->lists, t->n_lists, lo, hi);
    bool shard = zero_sharded(t);
    t->optim = adamw_init_range(t->lists, t->n_lists, adamw_config_of(&t->o), ADAMW_PATH_AUTO, shard ? lo : NULL,
                                shard ? hi : NULL);
    return t->optim ? 0 : -1;
}

// Samples per optimizer step on this rank (--batch-size micro-batches x --accum-freq) and on all.
static int64_t rank_batch(const trainer *t) { return t->o.batch_size * t->o.accum_freq; }
static int64_t global_batch(const trainer *t) { return rank_batch(t) * dist_world_size(t->d); }

static void *pinned_alloc(size_t size, void *ctx) {
    (void)ctx;
    return tensor_host_alloc(size);
}

static void pinned_free(void *ptr, void *ctx) {
    (void)ctx;
    tensor_host_free(ptr);
}

// Batches for the objective (tok given) come as uint8 in pinned memory, normalized on the device
// with the model's mean and std; zero-shot batches as normalized floats.
static loader *open_loader(trainer *t, const char *data, bool train, int batch_size, const tokenizer *tok) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, t->s.cfg.vision.image_size, train);
    lc.preprocess = t->s.cfg.preprocess;  // the model's mean and std (and evaluation transform)
    if (tok) {
        lc.output = LOADER_OUTPUT_UINT8;
        lc.allocator = (loader_allocator){pinned_alloc, pinned_free, NULL};
        memcpy(t->objective.mean, lc.preprocess.mean, sizeof t->objective.mean);
        memcpy(t->objective.std, lc.preprocess.std, sizeof t->objective.std);
        distill_options d = distill_options_of(&t->o);
        if (train && distill_view_size(&d, t->o.model_configs, &t->s.cfg, &lc.teacher_image_size) != 0) return NULL;
        if (train && d.pretrained) {  // an online teacher takes normalized float images (its view or the student's)
            lc.output = LOADER_OUTPUT_FLOAT;
            lc.allocator = (loader_allocator){0};
        }
    }
    lc.seed = (uint64_t)t->o.seed;
    lc.workers = (int)t->o.workers;
    lc.tok = tok;
    lc.context_length = t->s.cfg.text.context_length;
    lc.rank = dist_rank(t->d), lc.world_size = dist_world_size(t->d);
    if (train && t->o.aug_cfg && loader_aug_cfg_parse(&lc, t->o.aug_cfg) != 0) return NULL;  // distill: --aug-cfg
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
        int64_t cap = t->o.train_num_samples / global_batch(t);
        if (cap < t->steps_per_epoch) t->steps_per_epoch = cap;
    }
    if (t->steps_per_epoch <= 0)
        return err_set("%s: fewer samples than one global batch of %lld", t->o.train_data, (long long)global_batch(t));
    t->sched = (schedule){.base_lr = t->o.lr, .warmup_steps = t->o.warmup,
                          .total_steps = t->steps_per_epoch * t->o.epochs,
                          .cooldown_steps = t->steps_per_epoch * t->o.epochs_cooldown,
                          .cooldown_power = t->o.lr_cooldown_power, .cooldown_end_lr = t->o.lr_cooldown_end};
    if (schedule_kind_parse(t->o.lr_scheduler, &t->sched.kind)) return -1;
    return schedule_check(&t->sched);
}

// --resume latest: the newest usable checkpoint, naming each one passed over and why (lead rank).
static int find_latest(const trainer *t, char *path, size_t cap) {
    checkpoint_skipped skipped = {0};
    int rc = checkpoint_find_latest(t->ckpt_dir, path, cap, &skipped);
    for (int i = 0; i < skipped.n; i++) printf("resume latest: skipping %s\n", skipped.lines[i]);
    checkpoint_skipped_free(&skipped);
    if (rc == 1) printf("resume latest: no checkpoint in %s yet, starting from scratch\n", t->ckpt_dir);
    return rc;
}

static grad_scaler *run_scaler(trainer *t) { return t->precision == TRAIN_PRECISION_AMP ? &t->scaler : NULL; }

// Every rank loads the checkpoint the lead rank picked ("" when there is none yet).
static int resume(trainer *t) {
    char path[4096] = "";
    int rc = 0;
    if (strcmp(t->o.resume, "latest") != 0) snprintf(path, sizeof path, "%s", t->o.resume);
    else if (t->lead) rc = find_latest(t, path, sizeof path);
    if (rc < 0) return -1;
    if (rc == 1) path[0] = '\0';
    if (share_text(t, path, sizeof path) != 0) return -1;
    if (!path[0]) return 0;
    train_position pos = {.extra = t->n_lists > 1 ? t->lists[1] : NULL, .scaler = run_scaler(t)};
    rc = checkpoint_load(path, t->model, t->optim, &pos);
    if (rc == 0) rc = loader_state_restore(t->data, pos.loader_state, pos.loader_state_size);
    if (rc == 0) {
        t->step = pos.step;
        t->epoch = pos.epoch;
        if (t->lead) printf("resumed from %s at step %" PRId64 ", epoch %" PRId64 "\n", path, t->step, t->epoch);
    }
    free(pos.loader_state);
    return rc;
}

// ---- checkpoints and evaluation --------------------------------------------------------------

// Writes a metrics line from the lead rank (the others drop it).
static int log_line(trainer *t, cJSON *line, bool flush) {
    if (t->lead) return metrics_log_write(t->metrics, line, flush);
    cJSON_Delete(line);
    return 0;
}

// CLIPC_TEST_SAVE_DELAY_S (a test hook): the lead rank takes that long more to write a checkpoint.
static void test_save_delay(void) {
    const char *v = getenv("CLIPC_TEST_SAVE_DELAY_S");
    double s = v ? atof(v) : 0;
    if (s > 0) nanosleep(&(struct timespec){(time_t)s, (long)((s - (double)(time_t)s) * 1e9)}, NULL);
}

// The lead rank's part of save_checkpoint (opt: the whole optimizer state).
static int write_checkpoint(trainer *t, const char *name, const adamw *opt) {
    test_save_delay();
    train_position pos = {.step = t->step, .epoch = t->epoch, .extra = t->n_lists > 1 ? t->lists[1] : NULL,
                          .scaler = run_scaler(t)};
    if (loader_state_save(t->data, &pos.loader_state, &pos.loader_state_size) != 0) return -1;
    int rc = checkpoint_save(t->ckpt_dir, name, t->model, opt, &pos);
    free(pos.loader_state);
    if (rc != 0 && !strcmp(t->o.on_save_error, "continue")) {
        fprintf(stderr, "clipc train: %s; continuing (--on-save-error continue)\n", err_msg());
        cJSON *line = metrics_line("save_error", t->step, t->epoch);
        cJSON_AddStringToObject(line, "checkpoint", name);
        cJSON_AddStringToObject(line, "error", err_msg());
        return log_line(t, line, true);
    }
    if (rc == 0 && strcmp(name, "epoch_latest") != 0) checkpoint_prune(t->ckpt_dir, (int)t->o.keep_checkpoints);
    if (rc == 0 && t->o.delete_previous_checkpoint && !strncmp(name, "epoch_", 6) && strcmp(name, "epoch_latest") != 0)
        checkpoint_delete_previous_epochs(t->ckpt_dir, t->epoch);
    return rc;
}

// Writes checkpoint `name` unless the run is in a non-finite streak (the weights may be poisoned)
// or a collective failed (the ranks are no longer in step: train/step.h's failure contract).
// A failed save leaves the earlier checkpoints as they were; it stops the run or, with
// --on-save-error continue, is reported and training goes on. The lead rank saves: every rank
// holds the same weights, optimizer state and loader position. The others wait for its outcome
// through the store (dist_wait_lead, up to a day), not in a collective bounded by --dist-timeout,
// so a slow save never trips the timeout, and a save that stops the run stops every rank.
static int save_checkpoint(trainer *t, const char *name) {
    if (t->nonfinite_run > 0) {
        if (t->lead) printf("checkpoint %s not written: the last %d steps were non-finite\n", name, t->nonfinite_run);
        return 0;
    }
    if (dist_synchronize(t->d) != 0) return -1;
    t->saved_step = t->step;
    // --zero: the whole state, gathered on the lead rank for this save (the file is an unsharded run's).
    adamw *whole = zero_sharded(t) && t->lead ? adamw_init(t->lists, t->n_lists, adamw_config_of(&t->o)) : NULL;
    if (zero_sharded(t) && ((t->lead && !whole) || zero_gather_state(t->d, t->optim, whole, STEP_BUCKET_ELEMENTS) != 0)) {
        adamw_free(whole);
        return -1;
    }
    int status = t->lead ? write_checkpoint(t, name, whole ? whole : t->optim) : 0, rc = status;
    adamw_free(whole);
    if (dist_world_size(t->d) == 1) return rc;
    dist_set_phase(t->d, "checkpoint");
    if (dist_wait_lead(t->d, &status) != 0) return -1;
    dist_set_phase(t->d, NULL);
    return t->lead || status == 0 ? rc : err_set("rank %d: rank 0 could not write checkpoint %s; stopping", dist_rank(t->d), name);
}

static int load_class_names(const trainer *t, const loader *l, char ***names) {
    if (t->o.zeroshot_classnames) return zeroshot_read_lines(t->o.zeroshot_classnames, names);
    int n = loader_num_classes(l);
    if (n <= 0) return err_set("%s: no class names in the shards; pass --zeroshot-classnames", t->o.zeroshot_data);
    *names = xmalloc((size_t)n * sizeof(char *));
    for (int c = 0; c < n; c++) (*names)[c] = xstrdup(loader_class_name(l, c));
    return n;
}

// Sums a sharded evaluation's counts over the ranks (exact: float64 holds counts below 2^53).
static int sum_counts(trainer *t, metrics_classes *c) {
    int C = c->n_classes;
    size_t n = 1 + (size_t)C * (size_t)C + (size_t)C + 1;
    double *v = xmalloc(n * sizeof(double));
    v[0] = (double)c->n;
    for (size_t i = 0; i < (size_t)C * (size_t)C; i++) v[1 + i] = (double)c->confusion[i];
    for (int i = 0; i <= C; i++) v[1 + (size_t)C * (size_t)C + (size_t)i] = (double)c->rank_counts[i];
    int rc = dist_all_reduce_f64(t->d, v, (int)n);
    c->n = (int64_t)v[0];
    for (size_t i = 0; i < (size_t)C * (size_t)C; i++) c->confusion[i] = (int64_t)v[1 + i];
    for (int i = 0; i <= C; i++) c->rank_counts[i] = (int64_t)v[1 + (size_t)C * (size_t)C + (size_t)i];
    free(v);
    return rc;
}

// Zero-shot accuracy on --zeroshot-data: every rank classifies its share of the images and the
// exact counts are summed, so the figure is the single-process one.
static int run_zeroshot(trainer *t) {
    dist_set_phase(t->d, "zero-shot");
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
        metrics_classes counts;
        metrics_classes_init(&counts, n_names);
        rc = classifier ? zeroshot_evaluate_counts(t->model, classifier, l, &counts, NULL) : -1;
        if (rc == 0) rc = sum_counts(t, &counts);
        if (rc == 0 && counts.n == 0) rc = err_set("%s: the zero-shot set gave no images", t->o.zeroshot_data);
        if (rc == 0) {
            double top1 = metrics_classes_topk(&counts, 1), top5 = metrics_classes_topk(&counts, 5);
            if (t->lead)
                printf("Eval Epoch: %" PRId64 " zero-shot %s: top1 %.4f top5 %.4f (%" PRId64 " images, %.1f s)\n",
                       t->epoch, t->o.zeroshot_data, top1, top5, counts.n, now_s() - t0);
            cJSON *line = metrics_line("zeroshot", t->step, t->epoch);
            cJSON_AddStringToObject(line, "dataset", t->o.zeroshot_data);
            cJSON_AddNumberToObject(line, "top1", top1);
            cJSON_AddNumberToObject(line, "top5", top5);
            cJSON_AddNumberToObject(line, "n", (double)counts.n);
            rc = log_line(t, line, true);
        }
        metrics_classes_free(&counts);
        tensor_free(classifier);
    }
    if (n_names > 0) zeroshot_free_lines(names, n_names);
    if (n_templates > 0) zeroshot_free_lines(templates, n_templates);
    loader_free(l);
    dist_set_phase(t->d, NULL);
    return rc;
}

// Mean contrastive loss over the validation set (OpenCLIP's val_loss), logged as a "val" line.
static int run_validation(trainer *t) {
    loader *l = open_loader(t, t->o.val_data, false, (int)t->o.batch_size, t->s.tok);
    if (!l) return -1;
    double sum = 0;
    int64_t n = 0;
    loader_batch b;
    int rc;
    bool amp = t->precision == TRAIN_PRECISION_AMP_BF16 || t->precision == TRAIN_PRECISION_AMP;
    tensor_dtype amp_dtype = t->precision == TRAIN_PRECISION_AMP ? TENSOR_F16 : TENSOR_BF16;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        double value = 0;
        if (amp && (rc = tensor_autocast_begin(amp_dtype)) != 0) break;
        tensor_scope_begin();
        tensor *loss = train_objective_loss(&t->objective, &b);
        if (amp) tensor_autocast_end();
        rc = loss ? tensor_item(loss, &value) : -1;
        tensor_scope_end();
        if (rc != 0) break;
        sum += value * b.n;
        n += b.n;
    }
    tensor_no_grad_end();
    loader_free(l);
    double totals[2] = {sum, (double)n};  // summed over the ranks' shares
    if (rc < 0 || dist_all_reduce_f64(t->d, totals, 2) != 0) return -1;
    sum = totals[0], n = (int64_t)totals[1];
    if (n == 0) return err_set("%s: the validation set gave no samples", t->o.val_data);
    if (t->lead) printf("Eval Epoch: %" PRId64 " val loss %.5f (%" PRId64 " samples)\n", t->epoch, sum / (double)n, n);
    cJSON *line = metrics_line("val", t->step, t->epoch);
    cJSON_AddNumberToObject(line, "loss", sum / (double)n);
    cJSON_AddNumberToObject(line, "n", (double)n);
    return log_line(t, line, true);
}

// ---- the step --------------------------------------------------------------------------------

// One optimizer step through train/step.h. Returns 0 (see r->finite) or -1.
static int train_step(trainer *t, const loader_batch *b, step_result *r) {
    step_config sc = {.lists = t->lists, .n_lists = t->n_lists, .opt = t->optim, .sched = &t->sched,
                      .grad_clip_norm = t->o.grad_clip_norm, .logit_scale = t->model->logit_scale,
                      .autocast_bf16 = t->precision == TRAIN_PRECISION_AMP_BF16,
                      .accum_freq = (int)t->o.accum_freq, .dist = t->d, .overlap_reduce = !t->o.no_overlap_reduce,
                      .zero = (int)t->o.zero,
                      .autocast_f16 = t->precision == TRAIN_PRECISION_AMP, .scaler = run_scaler(t)};
    t->objective.step = t->step;
    step_objective obj = train_objective_step(&t->objective);
    dist_set_step(t->d, t->step);
    double comm_before = dist_comm_seconds(t->d);
    clip_model_set_training(t->model, true);  // ResNet towers' BatchNorms; evaluation runs in eval mode
    bool measured = tensor_memory_peak_reset(t->s.device) == 0;  // a metric only: unknown when refused
    int rc = step_run(&sc, t->step, &obj, b, b->n, r);
    clip_model_set_training(t->model, false);
    t->comm_time = dist_comm_seconds(t->d) - comm_before;
    t->peak_mem = measured ? tensor_memory_peak(t->s.device) : -1;
    return rc;
}

static int log_step(trainer *t, const step_result *r, double batch_time, double data_time, double elapsed, int64_t steps_run) {
    double sps = (double)global_batch(t) / batch_time;
    int64_t in_epoch = t->step - t->epoch * t->steps_per_epoch;
    bool printed = t->step % t->o.log_every_n_steps == 0 || in_epoch == t->steps_per_epoch || t->step == 1;
    double scale = NAN;
    if (printed && t->lead) {
        tensor_scope_begin();
        int rc = tensor_item(tensor_exp(t->model->logit_scale), &scale);
        tensor_scope_end();
        if (rc != 0) return -1;
    }
    cJSON *line = metrics_line("train", t->step, t->epoch);
    if (t->distilling && isfinite(t->distill.crop_cosine))
        cJSON_AddNumberToObject(line, "teacher_crop_cosine", t->distill.crop_cosine);
    cJSON_AddNumberToObject(line, "samples", (double)(t->step * global_batch(t)));
    cJSON_AddNumberToObject(line, "loss", r->loss);
    cJSON_AddNumberToObject(line, "lr", r->lr);
    cJSON_AddNumberToObject(line, "grad_norm", r->grad_norm);
    if (r->grad_scale > 0) cJSON_AddNumberToObject(line, "grad_scale", r->grad_scale);  // --precision amp
    if (printed) cJSON_AddNumberToObject(line, "logit_scale", scale);
    cJSON_AddNumberToObject(line, "samples_per_s", sps);
    cJSON_AddNumberToObject(line, "data_time", data_time);
    cJSON_AddNumberToObject(line, "batch_time", batch_time);
    if (dist_world_size(t->d) > 1) cJSON_AddNumberToObject(line, "comm_time", t->comm_time);
    if (dist_world_size(t->d) > 1) {  // the gradient sums (docs/distributed.md, "overlapped gradient sums")
        cJSON_AddNumberToObject(line, "comm_s", r->comm_s);
        cJSON_AddNumberToObject(line, "comm_exposed_s", r->comm_exposed_s);
        cJSON_AddNumberToObject(line, "comm_hidden_frac", r->comm_s > 0 ? 1.0 - r->comm_exposed_s / r->comm_s : 0.0);
    }
    if (t->peak_mem >= 0) cJSON_AddNumberToObject(line, "peak_mem_mb", (double)t->peak_mem / (1 << 20));
    if (log_line(t, line, printed) != 0) return -1;
    if (!printed || !t->lead) return 0;
    int64_t remaining = t->sched.total_steps - t->step;
    if (t->o.max_steps > 0 && t->o.max_steps - t->step < remaining) remaining = t->o.max_steps - t->step;
    double eta = steps_run > 0 ? elapsed / (double)steps_run * (double)remaining : 0;
    printf("Train Epoch: %" PRId64 " Step: %" PRId64 " [%7" PRId64 "/%" PRId64 " (%3.0f%%)] Loss: %.5f LR: %.6g "
           "Logit Scale: %.3f %.1f samples/s Data (t): %.3f Batch (t): %.3f ETA %dm%02ds\n",
           t->epoch, t->step, in_epoch * global_batch(t), t->steps_per_epoch * global_batch(t),
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
    if (log_line(t, line, true) != 0) return -1;
    if (t->lead)
        fprintf(stderr, "clipc train: non-finite %s (loss %g, gradient norm %g) at step %" PRId64 ": step skipped\n",
            isfinite(r->loss) ? "gradient" : "loss", r->loss, r->grad_norm, t->step);
    if (t->nonfinite_run < t->o.nonfinite_limit) return 0;
    return err_set("the loss was non-finite for %d steps in a row (at step %" PRId64 "); stopping. Checkpoints in %s "
                   "are from before; try a lower --lr or --grad-clip-norm", t->nonfinite_run, t->step, t->ckpt_dir);
}

// --precision amp: a step whose scaled gradients overflowed was skipped and the scale lowered, as
// PyTorch's GradScaler does; not a bad step (the non-finite streak neither grows nor ends).
static int note_overflow(trainer *t, const step_result *r) {
    cJSON *line = metrics_line("grad_scaler_skip", t->step, t->epoch);
    cJSON_AddNumberToObject(line, "scale", r->grad_scale);
    cJSON_AddNumberToObject(line, "next_scale", t->scaler.scale);
    if (t->lead && t->scaler.scale < 1)
        fprintf(stderr, "clipc train: step %" PRId64 ": gradients overflowed even at loss scale %g: step skipped\n", t->step,
                r->grad_scale);
    return log_line(t, line, true);
}

// Names the corrupt samples the loader replaced in this batch (loader/loader.h's global rule;
// each rank its own rows; the lead rank's in metrics.jsonl).
static int log_corrupt(trainer *t, const loader_batch *b) {
    for (int i = 0; i < b->n_corrupt; i++) {
        fprintf(stderr, "clipc train: step %" PRId64 ": replaced a corrupt sample: %s\n", t->step + 1, b->corrupt[i]);
        cJSON *line = metrics_line("corrupt_sample", t->step + 1, t->epoch);
        cJSON_AddStringToObject(line, "sample", b->corrupt[i]);
        if (log_line(t, line, false) != 0) return -1;
    }
    return 0;
}

// --profile-steps: what one iteration (step and logging) took and issued.
static void print_profile(const trainer *t, const step_result *r, tensor_counters whole, double seconds) {
    printf("profile step %" PRId64 ": %.1f ms, %" PRId64 " ops (update %" PRId64 "), %" PRId64 " host read%s, %" PRId64
           " sync%s\n", t->step, seconds * 1e3, whole.ops, r->update.ops, whole.host_reads,
           whole.host_reads == 1 ? "" : "s", whole.syncs, whole.syncs == 1 ? "" : "s");
    fflush(stdout);
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
    if (t->o.val_data && (t->epoch % t->o.val_frequency == 0 || last) && run_validation(t) != 0) return -1;
    if (t->o.zeroshot_data && t->o.zeroshot_frequency > 0 && (t->epoch % t->o.zeroshot_frequency == 0 || last))
        return run_zeroshot(t);
    return 0;
}

static int save_step_checkpoint(trainer *t) {
    char stem[64];
    snprintf(stem, sizeof stem, "step_%" PRId64, t->step);
    return save_checkpoint(t, stem);
}

// The ranks' results for the next step (a batch, the end of the epoch, a failure), compared before
// any collective of the step or of the epoch's end: every rank's loader gives the same number of
// batches (loader/loader.h), so ranks that differ mean a failure or different data on one, which
// then stops every rank here, naming it, instead of leaving the ranks in different collectives.
// Returns got when all agree, else -1.
static int agree_on_batch(trainer *t, int got) {
    int world = dist_world_size(t->d);
    if (world == 1) return got;
    char own[1024];
    snprintf(own, sizeof own, "%s", err_msg());
    double *v = xcalloc((size_t)world, sizeof(double));
    v[dist_rank(t->d)] = got + 2;
    int rc = dist_all_reduce_f64(t->d, v, world), first[3] = {-1, -1, -1};  // failed, ended, had a batch
    for (int r = world - 1; rc == 0 && r >= 0; r--)
        if (v[r] >= 1 && v[r] <= 3) first[(int)v[r] - 1] = r;
    free(v);
    if (rc != 0) return -1;
    if (got < 0) return err_set("%s", own);
    if (first[0] >= 0) return err_set("rank %d's loader failed before step %" PRId64 " (its message is in its output)", first[0], t->step + 1);
    if (first[1] >= 0 && first[2] >= 0)
        return err_set("rank %d's loader ended epoch %" PRId64 " before step %" PRId64 " while rank %d had a batch",
                       first[1], t->epoch, t->step + 1, first[2]);
    return got;
}

static int train_loop(trainer *t) {
    double start = now_s();
    int64_t steps_run = 0;
    tensor_count_ops(t->o.profile_steps > 0);
    while (t->epoch < t->o.epochs) {
        // An epoch that ends on the last allowed step is still finished (checkpoint, evaluation).
        bool epoch_done = t->step >= (t->epoch + 1) * t->steps_per_epoch;
        if (!epoch_done && reached_max_steps(t)) break;
        double t0 = now_s();
        loader_batch b;
        int got = agree_on_batch(t, epoch_done ? 0 : loader_next(t->data, &b));
        if (got < 0) return -1;
        if (got == 0) {
            if (finish_epoch(t) != 0) return -1;
            continue;
        }
        if (log_corrupt(t, &b) != 0) return -1;
        double t1 = now_s();
        tensor_counters before = tensor_counters_get();
        step_result r;
        if (train_step(t, &b, &r) != 0) return -1;
        t->step++;
        steps_run++;
        if (r.overflow) {
            if (note_overflow(t, &r) != 0) return -1;
        } else if (!r.finite) {
            if (note_nonfinite(t, &r) != 0) return -1;
        } else {
            t->nonfinite_run = 0;
            if (log_step(t, &r, now_s() - t0, t1 - t0, now_s() - start, steps_run) != 0) return -1;
        }
        if (steps_run <= t->o.profile_steps) {
            print_profile(t, &r, tensor_counters_sub(tensor_counters_get(), before), now_s() - t1);
            if (steps_run == t->o.profile_steps) tensor_count_ops(false);
        }
        if (t->o.save_steps > 0 && t->step % t->o.save_steps == 0 && save_step_checkpoint(t) != 0) return -1;
    }
    // A run stopped by --max-steps leaves a checkpoint to resume from.
    if (t->o.save_frequency > 0 && t->saved_step != t->step && steps_run > 0 && save_step_checkpoint(t) != 0) return -1;
    loader_stats st = loader_get_stats(t->data);
    if (t->lead)
        printf("done: %" PRId64 " steps in %.1f s, %" PRId64 " corrupt samples replaced; run folder %s\n", steps_run,
               now_s() - start, st.corrupt_skipped, t->run_dir);
    if (t->lead && dist_world_size(t->d) > 1) dist_print_stats(t->d, now_s() - start, stdout);
    return 0;
}

// The lead rank's start line: what the run computes on and with.
static void print_start(const trainer *t) {
    if (!t->lead) return;
    char device[160];
    tensor_device_describe(dist_device(t->d), device, sizeof device);
    int world = dist_world_size(t->d);
    printf("clipc train: %s on %d rank%s (%s), device %s%s, batch %lld per rank", t->s.cfg.name, world, world == 1 ? "" : "s",
           dist_backend_label(t->d), device, world > 1 ? " on rank 0" : "", (long long)rank_batch(t));
    if (t->o.accum_freq > 1) printf(" (%ld micro-batches of %ld)", t->o.accum_freq, t->o.batch_size);
    printf(", %lld global, precision %s (%s), AdamW state %lld bytes per rank", (long long)global_batch(t), t->o.precision,
           t->precision_why, (long long)adamw_state_bytes(t->optim));
    if (t->o.zero > 0) printf(zero_sharded(t) ? " (--zero %ld)" : " (--zero %ld: one rank, nothing to shard)", t->o.zero);
    printf("\n");
    fflush(stdout);
}

static void trainer_free(trainer *t) {
    loader_free(t->data);
    adamw_free(t->optim);
    if (t->distilling) distill_close(&t->distill);
    session_close(&t->s);
    metrics_log_close(t->metrics);
    dist_free(t->d);
}

int train_run(const train_options *o) {
    trainer t = {.o = *o, .saved_step = -1};
    int rc = setup_dist(&t);
    if (rc == 0) rc = setup_session(&t);
    if (rc == 0) rc = (t.data = open_loader(&t, t.o.train_data, true, (int)rank_batch(&t), t.s.tok)) ? 0 : -1;
    if (rc == 0) rc = setup_distill(&t);
    if (rc == 0) rc = setup_optimizer(&t);
    if (rc == 0) rc = setup_schedule(&t);
    if (rc == 0) rc = setup_run_dir(&t);
    if (rc == 0 && t.o.resume) rc = resume(&t);
    if (rc == 0) print_start(&t);
    if (rc == 0) rc = train_loop(&t);
    trainer_free(&t);
    return rc;
}
