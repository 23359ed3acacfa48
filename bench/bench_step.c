// bench_step: times the WHOLE training step of `clipc train` on a CLIP config: the batch to the
// device (uint8 images normalized there, host tokens), forward of both towers, the CLIP loss,
// backward, the gradient norm and its host read, clipping, AdamW and the logit-scale clamp, through
// train/step.h with train/objective.h. The inputs are those of OpenCLIP's bench_loop.py: random
// images, random caption ids with SOT first, EOT at position 12 and zero padding.
//
// Prints the median step time, samples/s, the model's TFLOP/s as OpenCLIP counts them (3x the
// forward FLOPs at the full context: 3 x 14.78 GFLOP a sample for ViT-B-32), the median CPU time a
// step (user + system, all threads: what a loaded machine disturbs least), peak RSS and page
// faults a step, the BLAS and threads, which AdamW path runs (optim/adamw.h: "adamw path: fused"
// on CUDA with libtorch >= 2.0), the counters of one more step (ops, host reads, syncs) and, with
// a CUDA libtorch, the CUDA kernels and copies of one more step from libtorch's profiler (else
// "kernels: n/a"). bench/side_by_side.sh alternates it with OpenCLIP's own loop.
//
// Usage: bench_step [--model clip-tiny] [--batch-size 128] [--steps 10] [--warmup 2] [--threads 0]
//                   [--device cpu|cuda] [--precision fp32|amp_bf16|pure_bf16] [--no-tf32]
//                   [--deterministic] [--configs DIR]
// Malloc is tuned as in clipc (common/sysinfo.h); GLIBC_TUNABLES=glibc.malloc.check=0 keeps glibc's
// defaults (bench/bench_malloc.sh compares allocators).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/args.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "bench/bench_clock.h"
#include "bench/clip_cost.h"
#include "loader/loader.h"
#include "train/objective.h"
#include "train/options.h"
#include "train/step.h"

#define EOT_POSITION 12  // bench_loop.py's captions

typedef struct {
    char *model, *configs, *device, *precision;
    long batch, steps, warmup, threads;
    bool no_tf32, deterministic;
} bench_options;

typedef struct {
    clip_model *model;
    adamw *opt;
    schedule sched;
    train_objective objective;
    param_list *lists[1];
    step_config step;
    loader_batch batch;
} bench;

static void *pinned_alloc(size_t n) {
    void *p = tensor_host_alloc(n);
    if (!p) fprintf(stderr, "bench_step: %s\n", err_msg()), exit(1);
    return p;
}

// bench_loop.py's inputs: random pixels, SOT, random ids, EOT at 12, zeros.
static void make_batch(loader_batch *b, const clip_config *c, int n) {
    size_t pixels = (size_t)n * 3 * (size_t)c->vision.image_size * (size_t)c->vision.image_size;
    int64_t C = c->text.context_length, V = c->text.vocab_size;
    b->n = n;
    b->images_u8 = pinned_alloc(pixels);
    b->tokens = pinned_alloc((size_t)(n * C) * sizeof(int64_t));
    srand(7);
    for (size_t i = 0; i < pixels; i++) b->images_u8[i] = (uint8_t)(rand() & 255);
    memset(b->tokens, 0, (size_t)(n * C) * sizeof(int64_t));
    for (int r = 0; r < n; r++) {
        int64_t *row = b->tokens + r * C;
        row[0] = V - 2;
        for (int i = 1; i < EOT_POSITION && i < C - 1; i++) row[i] = 1 + rand() % (V - 3);
        row[EOT_POSITION < C ? EOT_POSITION : C - 1] = V - 1;
    }
}

static int bench_init(bench *b, const clip_config *cfg, const bench_options *o) {
    tensor_device dev;
    train_precision precision;
    if (tensor_device_parse(o->device, &dev) || train_precision_parse(o->precision, &precision)) return -1;
    if (precision != TRAIN_PRECISION_FP32 && !tensor_bf16_supported(dev))
        return err_set("--precision %s: this GPU cannot compute in bf16", o->precision);
    if (o->deterministic && tensor_set_deterministic(true) != 0) return -1;
    if (dev.type == TENSOR_DEVICE_CUDA) tensor_set_tf32(!o->no_tf32);
    b->model = clip_model_init(cfg, 0);
    if (!b->model || clip_model_to_device(b->model, dev) != 0) return -1;
    if (precision == TRAIN_PRECISION_PURE_BF16 && clip_model_to_dtype(b->model, TENSOR_BF16) != 0) return -1;
    b->lists[0] = &b->model->params;
    adamw_config ac = adamw_config_default();
    ac.lr = 1e-3;  // bench_loop.py's
    if (!(b->opt = adamw_init(b->lists, 1, ac))) return -1;
    printf("adamw path: %s\n", adamw_path_name(adamw_get_path(b->opt)));
    b->sched = (schedule){.kind = SCHEDULE_CONST, .base_lr = ac.lr, .total_steps = o->warmup + o->steps + 1};
    b->objective = (train_objective){.model = b->model, .loss = LOSS_KIND_CLIP};
    memcpy(b->objective.mean, cfg->preprocess.mean, sizeof b->objective.mean);
    memcpy(b->objective.std, cfg->preprocess.std, sizeof b->objective.std);
    b->step = (step_config){.lists = b->lists, .n_lists = 1, .opt = b->opt, .sched = &b->sched, .grad_clip_norm = 1.0,
                            .logit_scale = b->model->logit_scale,
                            .autocast_bf16 = precision == TRAIN_PRECISION_AMP_BF16, .accum_freq = 1};
    make_batch(&b->batch, cfg, (int)o->batch);
    return 0;
}

static int run_step(bench *b, int64_t k, step_result *r) {
    step_objective obj = train_objective_step(&b->objective);
    if (step_run(&b->step, k, &obj, &b->batch, b->batch.n, r) != 0) return -1;
    return r->finite ? 0 : err_set("step %lld: non-finite loss %g", (long long)k, r->loss);
}

// The CUDA kernels and copies of one more step, from libtorch's profiler.
static int profile_step(bench *b, int64_t k) {
    if (!tensor_profile_has_kernels()) {
        printf("kernels: n/a (no CUDA profiler in this libtorch)\n");
        return 0;
    }
    step_result r;
    tensor_profile p;
    if (tensor_profile_begin() != 0) return -1;
    int rc = run_step(b, k, &r);
    if (tensor_profile_end(&p) != 0 || rc != 0) return -1;
    if (p.kernels == 0 && b->model->device.type == TENSOR_DEVICE_CUDA)
        printf("kernels: n/a (the profiler saw no GPU activity: is CUPTI missing?)\n");
    else
        printf("kernels of one step: %lld CUDA kernels (%lld of fused attention), %lld copies and fills "
               "(libtorch's profiler, %lld events)\n",
               (long long)p.kernels, (long long)p.attention, (long long)p.copies, (long long)p.events);
    return 0;
}

// Times the steps; prints the figures, the counters of one more step and its kernels.
static int run(bench *b, const clip_config *cfg, const bench_options *o) {
    step_result r;
    int64_t k = 0;
    for (long i = 0; i < o->warmup; i++)
        if (run_step(b, k++, &r) != 0) return -1;
    double *times = xmalloc(2 * (size_t)o->steps * sizeof(double)), *cpu = times + o->steps;
    long faults_before, faults_after;
    bench_cpu_s(&faults_before);
    for (long i = 0; i < o->steps; i++) {
        double t0 = bench_now_s(), c0 = bench_cpu_s(NULL);
        if (run_step(b, k++, &r) != 0) return free(times), -1;
        times[i] = bench_now_s() - t0, cpu[i] = bench_cpu_s(NULL) - c0;
    }
    bench_cpu_s(&faults_after);
    double med = bench_median(times, o->steps), min = times[0], max = times[o->steps - 1];
    double cpu_med = bench_median(cpu, o->steps);
    free(times);
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    // OpenCLIP's count: 3 x the forward with the text tower at its full context.
    double tflops = clip_cost_step_flops(cfg, (double)o->batch, cfg->text.context_length) / med * 1e-12;
    printf("clipc   %-10s batch %4ld %-9s: median %8.1f ms/step (min %.1f, max %.1f, %ld steps) %8.1f samples/s "
           "%7.3f TFLOP/s, cpu %.1f ms/step, peak RSS %.0f MiB, %.0f page faults/step\n",
           cfg->name, o->batch, o->precision, med * 1e3, min * 1e3, max * 1e3, o->steps, (double)o->batch / med, tflops,
           cpu_med * 1e3, (double)u.ru_maxrss / 1024.0, (double)(faults_after - faults_before) / (double)o->steps);
    tensor_count_ops(true);
    if (run_step(b, k++, &r) != 0) return -1;
    tensor_count_ops(false);
    tensor_counters fb = r.forward_backward, up = r.update;
    printf("counters of one step: %lld ops (forward+backward %lld, clip+AdamW+clamp %lld), %lld host read(s), "
           "%lld sync(s)\n", (long long)(fb.ops + up.ops), (long long)fb.ops, (long long)up.ops,
           (long long)(fb.host_reads + up.host_reads), (long long)(fb.syncs + up.syncs));
    return profile_step(b, k);
}

static const char *env(const char *name) { return getenv(name) ? getenv(name) : "(unset)"; }

static void bench_free(bench *b) {
    tensor_host_free(b->batch.images_u8);
    tensor_host_free(b->batch.tokens);
    adamw_free(b->opt);
    clip_model_free(b->model);
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    bench_options o = {.model = "clip-tiny", .device = "cpu", .precision = "fp32", .batch = 128, .steps = 10,
                       .warmup = 2};
    arg_spec specs[] = {
        {"model", ARG_STR, &o.model, "model config name or path", false},
        {"configs", ARG_STR, &o.configs, "folder of model configs", false},
        {"batch-size", ARG_INT, &o.batch, "samples per step", false},
        {"steps", ARG_INT, &o.steps, "timed steps", false},
        {"warmup", ARG_INT, &o.warmup, "untimed steps first", false},
        {"threads", ARG_INT, &o.threads, "intra-op threads (0: one per core)", false},
        {"device", ARG_STR, &o.device, "cpu or cuda", false},
        {"precision", ARG_STR, &o.precision, "fp32, amp_bf16 or pure_bf16", false},
        {"no-tf32", ARG_FLAG, &o.no_tf32, "full float32 matrix products on GPU", false},
        {"deterministic", ARG_FLAG, &o.deterministic, "deterministic algorithms only", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc == 0 && (o.batch <= 0 || o.steps <= 0 || o.warmup < 0))
        rc = err_set("--batch-size and --steps must be positive");
    if (rc) {
        if (rc > 0) args_print_help(specs, n_specs, "bench_step [options]");
        else fprintf(stderr, "bench_step: %s\n", err_msg());
        return rc > 0 ? 0 : 2;
    }
    sysinfo_tune_malloc();
    char path[1024];
    clip_config cfg;
    if (clip_config_find(o.model, o.configs, path, sizeof path) || clip_config_load(path, &cfg))
        return fprintf(stderr, "bench_step: %s\n", err_msg()), 1;
    tensor_set_threads((int)o.threads);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("model %s, batch %ld, %s on %s, libtorch %s, %d threads, OMP_WAIT_POLICY=%s, GLIBC_TUNABLES=%s, "
           "LD_PRELOAD=%s, BLAS: %s\n", cfg.name, o.batch, o.precision, o.device, tensor_torch_version(),
           tensor_get_threads(), env("OMP_WAIT_POLICY"), env("GLIBC_TUNABLES"), env("LD_PRELOAD"), blas);
    bench b = {0};
    rc = bench_init(&b, &cfg, &o) == 0 && run(&b, &cfg, &o) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "bench_step: %s\n", err_msg());
    bench_free(&b);
    return rc;
}
