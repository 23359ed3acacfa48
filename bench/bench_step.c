// bench_step: times the WHOLE training step of `clipc train` on a CLIP config: the batch to the
// device (uint8 images normalized there, host tokens), forward of both towers, the CLIP loss,
// backward, the gradient norm and its host read, clipping, AdamW and the logit-scale clamp, through
// train/step.h with train/objective.h. The inputs are those of OpenCLIP's bench_loop.py (random
// images; captions of SOT, random ids, EOT, zero padding) with the caption lengths of --captions
// (content: the ids between SOT and EOT; context C = 77):
//   short  (default, bench_loop.py's) every caption has 11 ids, EOT at position 12: 13 tokens.
//   full   every caption fills the context: C - 2 = 75 ids, EOT at position C - 1 = 76.
//   web    per batch, exactly ceil(5% of the batch) captions fill the context (EOT at 76), at rows
//          drawn at random; every other caption has a content length drawn uniformly from
//          [4, 30] ids: 3 to 25 words at CLIP's 1.21 BPE tokens a word, rounded (`clipc tokenize`
//          with bpe_simple_vocab_16e6 on bench/web_captions.txt, 40 web-like captions: 471 tokens
//          for 388 words; the demo's 50 Fashion-MNIST captions give 1.23). The draws come from
//          --seed (7): the same batch on every run.
// clipc's text tower runs each caption in a group of like lengths (model/clip.h: clip_text_groups),
// OpenCLIP's on all 77 positions.
//
// Prints the caption rule with the mean and longest caption of the batch (SOT and EOT included),
// the median step time, samples/s, the model's TFLOP/s as OpenCLIP counts them (3x the forward
// FLOPs at the full context: 3 x 14.78 GFLOP a sample for ViT-B-32, whatever the captions), the
// median CPU time a step (user + system, all threads: what a loaded machine disturbs least), peak
// RSS and page faults a step, the BLAS and threads, which AdamW path runs (optim/adamw.h: "adamw
// path: fused" on CUDA with libtorch >= 2.0), the counters of one more step (ops, host reads,
// syncs), the peak memory of the timed steps (shim/tensor.h, tensor_memory_peak: on the CPU the
// process's resident peak, weights and optimizer state included) and, with a CUDA libtorch, the
// CUDA kernels and copies of one more step from libtorch's profiler (else "kernels: n/a").
// --dump-tokens FILE writes the batch's token ids (int64 little-endian, batch x C) for
// bench/openclip_step.py; bench/side_by_side.sh alternates the two. --grad-checkpointing
// recomputes the transformer blocks in the backward (model/clip.h). --profile times one more
// step's top-level ATen operators and prints their share by kind (matrix products, attention's
// softmax and mask, LayerNorm, GELU, copies, elementwise, allocation) and the slowest ones.
//
// Usage: bench_step [--model clip-tiny] [--batch-size 128] [--steps 10] [--warmup 2] [--threads 0]
//                   [--captions short|full|web] [--seed 7] [--dump-tokens FILE]
//                   [--device cpu|cuda] [--precision fp32|amp_bf16|pure_bf16] [--no-tf32]
//                   [--deterministic] [--profile] [--grad-checkpointing] [--configs DIR]
// Malloc is tuned as in clipc (common/sysinfo.h); GLIBC_TUNABLES=glibc.malloc.check=0 keeps glibc's
// defaults (bench/bench_malloc.sh compares allocators).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/args.h"
#include "common/atomic_file.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/rng.h"
#include "common/sysinfo.h"
#include "bench/bench_clock.h"
#include "bench/clip_cost.h"
#include "loader/loader.h"
#include "train/objective.h"
#include "train/options.h"
#include "train/step.h"

// The caption length distributions of --captions (the header comment states them).
typedef enum { CAPTIONS_SHORT, CAPTIONS_FULL, CAPTIONS_WEB } caption_kind;
enum {
    SHORT_EOT = 12,         // bench_loop.py's captions
    WEB_FULL_PERCENT = 5,   // of a batch, rounded up
    WEB_MIN_CONTENT = 4,    // 3 words x 1.21 tokens a word, rounded (3.6)
    WEB_MAX_CONTENT = 30,   // 25 words (30.3)
};
static const char *const CAPTION_NAMES[] = {"short", "full", "web"};

typedef struct {
    char *model, *configs, *device, *precision, *captions, *dump_tokens;
    long batch, steps, warmup, threads, seed;
    bool no_tf32, deterministic, profile, grad_checkpointing;
    caption_kind kind;
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

static int caption_kind_parse(const char *name, caption_kind *kind) {
    for (int k = 0; k < 3; k++)
        if (strcmp(name, CAPTION_NAMES[k]) == 0) return *kind = (caption_kind)k, 0;
    return err_set("--captions '%s': give short, full or web", name);
}

// The rule of kind for a context of C tokens, in words (printed with every figure).
static void caption_rule(caption_kind kind, int64_t C, long seed, char *out, size_t size) {
    if (kind == CAPTIONS_SHORT)
        snprintf(out, size, "short: SOT, %d random ids, EOT at position %d (bench_loop.py's)", SHORT_EOT - 1, SHORT_EOT);
    else if (kind == CAPTIONS_FULL)
        snprintf(out, size, "full: SOT, %lld random ids, EOT at position %lld", (long long)(C - 2), (long long)(C - 1));
    else
        snprintf(out, size, "web: ceil(%d%% of the batch) captions at random rows fill the context (EOT at %lld), "
                 "the others have uniform [%d, %d] ids (3-25 words), seed %ld", WEB_FULL_PERCENT, (long long)(C - 1),
                 WEB_MIN_CONTENT, WEB_MAX_CONTENT, seed);
}

// content[r]: the number of ids between SOT and EOT of caption r of n, under kind.
static void caption_lengths(caption_kind kind, int n, int64_t C, long seed, int *content) {
    int full = (int)C - 2, n_full = (n * WEB_FULL_PERCENT + 99) / 100;
    rng g = {rng_mix((uint64_t)seed, 0x77EB)};
    for (int r = 0; r < n; r++)
        content[r] = kind == CAPTIONS_SHORT ? SHORT_EOT - 1
                     : kind == CAPTIONS_FULL ? full
                     : WEB_MIN_CONTENT + (int)rng_below(&g, WEB_MAX_CONTENT - WEB_MIN_CONTENT + 1);
    if (kind != CAPTIONS_WEB) return;
    int *rows = xmalloc((size_t)n * sizeof(int));  // the first n_full of a partial shuffle
    for (int r = 0; r < n; r++) rows[r] = r;
    for (int i = 0; i < n_full; i++) {
        int j = i + (int)rng_below(&g, (uint64_t)(n - i)), t = rows[i];
        rows[i] = rows[j], rows[j] = t;
        content[rows[i]] = full;
    }
    free(rows);
}

// bench_loop.py's inputs: random pixels; SOT, random ids, EOT, zeros, with content[r] ids in row r.
static void make_batch(loader_batch *b, const clip_config *c, int n, const int *content) {
    size_t pixels = (size_t)n * 3 * (size_t)c->vision.image_size * (size_t)c->vision.image_size;
    int64_t C = c->text.context_length, V = c->text.vocab_size;
    b->n = n;
    b->images_u8 = pinned_alloc(pixels);
    b->tokens = pinned_alloc((size_t)(n * C) * sizeof(int64_t));
    srand(7);
    for (size_t i = 0; i < pixels; i++) b->images_u8[i] = (uint8_t)(rand() & 255);
    memset(b->tokens, 0, (size_t)(n * C) * sizeof(int64_t));
    for (int r = 0; r < n; r++) {
        int64_t *row = b->tokens + r * C, eot = content[r] + 1 < C ? content[r] + 1 : C - 1;
        row[0] = V - 2;
        for (int64_t i = 1; i < eot; i++) row[i] = 1 + rand() % (V - 3);
        row[eot] = V - 1;
    }
}

// Prints the caption rule with the batch's mean and longest caption (SOT and EOT included).
static void print_captions(const bench_options *o, int64_t C, const int *content) {
    char rule[256];
    caption_rule(o->kind, C, o->seed, rule, sizeof rule);
    double sum = 0;
    int longest = 0;
    for (long r = 0; r < o->batch; r++) {
        int len = content[r] + 2 < C ? content[r] + 2 : (int)C;
        sum += len, longest = len > longest ? len : longest;
    }
    printf("captions %s: mean %.1f tokens, longest %d (SOT and EOT included); %s\n", CAPTION_NAMES[o->kind],
           sum / (double)o->batch, longest, rule);
}

// Writes the batch's ids as int64 little-endian, n x C, for bench/openclip_step.py.
static int dump_tokens(const char *path, const loader_batch *b, int64_t C) {
    size_t count = (size_t)b->n * (size_t)C;
    uint8_t *bytes = xmalloc(8 * count), *p = bytes;
    for (size_t i = 0; i < count; i++) p = bytes_put_u64(p, (uint64_t)b->tokens[i]);
    int rc = atomic_file_write_bytes(path, bytes, 8 * count);
    free(bytes);
    return rc ? err_set("--dump-tokens %s: %s", path, err_msg()) : 0;
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
    b->model->grad_checkpointing = o->grad_checkpointing;
    printf("parameters: %lld%s\n", (long long)b->model->params.numel, o->grad_checkpointing ? ", grad checkpointing" : "");
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
    int64_t C = cfg->text.context_length;
    int *content = xmalloc((size_t)o->batch * sizeof(int));
    caption_lengths(o->kind, (int)o->batch, C, o->seed, content);
    print_captions(o, C, content);
    make_batch(&b->batch, cfg, (int)o->batch, content);
    free(content);
    return o->dump_tokens ? dump_tokens(o->dump_tokens, &b->batch, C) : 0;
}

static int run_step(bench *b, int64_t k, step_result *r) {
    step_objective obj = train_objective_step(&b->objective);
    if (step_run(&b->step, k, &obj, &b->batch, b->batch.n, r) != 0) return -1;
    return r->finite ? 0 : err_set("step %lld: non-finite loss %g", (long long)k, r->loss);
}

// Where a step's time goes: ATen's top-level operators and the backward's autograd nodes by what
// they do (bench_step --profile), by op_key's normalized names.
static const struct {
    const char *what;
    const char *ops[20];
} OP_KINDS[] = {
    {"matrix products", {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "convolution", "conv2d",
                         "scaleddotproductattention"}},
    {"attention softmax and mask", {"softmax", "softmaxbackwarddata", "maskedfill", "triu", "ones"}},
    {"LayerNorm", {"layernorm", "nativelayernorm"}},
    {"GELU", {"gelu", "sigmoid"}},
    {"copies and layout", {"copy", "contiguous", "clone", "cat", "indexselect", "indexadd", "to", "tocopy",
                           "embedding", "stack", "unbind", "gather", "select", "reshapealias", "permute", "transpose",
                           "slice", "expand"}},
    {"elementwise and reductions", {"add", "mul", "div", "sub", "sum", "norm", "linalgvectornorm", "sqrt", "addcmul",
                                    "addcdiv", "clamp", "pow", "mean", "where", "exp", "neg", "logsoftmax"}},
    {"allocation and zeroing", {"empty", "emptystrided", "zeros", "zero", "fill", "newzeros", "newempty", "emptylike",
                                "zeroslike"}},
};
enum { N_OP_KINDS = sizeof OP_KINDS / sizeof OP_KINDS[0] };

// "aten::native_layer_norm", "aten::add_" and the backward's "autograd::engine::evaluate_function:
// NativeLayerNormBackward0" all become "nativelayernorm", "add", ...: lower case, no underscores,
// without the prefixes and the "Backward<n>" suffix.
static void op_key(const char *name, char *key, size_t cap) {
    const char *node = strstr(name, "evaluate_function: ");
    name = node ? node + strlen("evaluate_function: ") : strncmp(name, "aten::", 6) == 0 ? name + 6 : name;
    const char *end = strstr(name, "Backward");
    size_t n = 0;
    for (const char *c = name; *c && c != end && n + 1 < cap; c++)
        if (*c != '_') key[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    key[n] = 0;
}

static int op_kind(const char *name) {
    char key[64];
    op_key(name, key, sizeof key);
    for (int k = 0; k < N_OP_KINDS; k++)
        for (int i = 0; i < 20 && OP_KINDS[k].ops[i]; i++)
            if (strcmp(key, OP_KINDS[k].ops[i]) == 0) return k;
    return N_OP_KINDS;  // other
}

// One more step with its operators timed: the share of each kind, then the slowest operators.
static int profile_ops(bench *b, int64_t k) {
    step_result r;
    tensor_op_times_begin();
    double t0 = bench_now_s();
    int rc = run_step(b, k, &r);
    double wall = bench_now_s() - t0;
    tensor_op_time *ops;
    int n = tensor_op_times_end(&ops);
    double by_kind[N_OP_KINDS + 1] = {0}, in_ops = 0;
    for (int i = 0; i < n; i++) by_kind[op_kind(ops[i].name)] += ops[i].seconds, in_ops += ops[i].seconds;
    printf("profile of one step (%.1f ms wall; top-level ATen operators' wall time, forward and backward):\n", wall * 1e3);
    for (int kind = 0; kind <= N_OP_KINDS; kind++)
        printf("  %-28s %8.1f ms  %5.1f%%\n", kind < N_OP_KINDS ? OP_KINDS[kind].what : "other operators",
               by_kind[kind] * 1e3, 100 * by_kind[kind] / wall);
    printf("  %-28s %8.1f ms  %5.1f%%\n", "outside operators", (wall - in_ops) * 1e3, 100 * (wall - in_ops) / wall);
    for (int i = 0; i < n && i < 15; i++)
        printf("    %-40s %6lld calls %8.1f ms\n", ops[i].name, (long long)ops[i].calls, ops[i].seconds * 1e3);
    free(ops);
    return rc;
}

// The CUDA kernels and copies of one more step, from libtorch's profiler.
static int profile_kernels(bench *b, int64_t k) {
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

// Times the steps; prints the figures, the counters of one more step and its kernels, and with
// --profile the operators of one more.
static int run(bench *b, const clip_config *cfg, const bench_options *o) {
    step_result r;
    int64_t k = 0;
    for (long i = 0; i < o->warmup; i++)
        if (run_step(b, k++, &r) != 0) return -1;
    double *times = xmalloc(2 * (size_t)o->steps * sizeof(double)), *cpu = times + o->steps;
    long faults_before, faults_after;
    tensor_device dev = b->model->device;
    bool peaked = tensor_memory_peak_reset(dev) == 0;  // the peak of the timed steps alone
    int64_t at_start = peaked ? tensor_memory_peak(dev) : -1, peak;
    bench_cpu_s(&faults_before);
    for (long i = 0; i < o->steps; i++) {
        double t0 = bench_now_s(), c0 = bench_cpu_s(NULL);
        if (run_step(b, k++, &r) != 0) return free(times), -1;
        times[i] = bench_now_s() - t0, cpu[i] = bench_cpu_s(NULL) - c0;
    }
    bench_cpu_s(&faults_after);
    peak = peaked ? tensor_memory_peak(dev) : -1;
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
    printf("peak memory of the timed steps: %.0f MiB (%.0f MiB at their start; tensor_memory_peak: %s)\n",
           (double)peak / (1 << 20), (double)at_start / (1 << 20),
           dev.type == TENSOR_DEVICE_CPU ? "the process's resident peak" : "libtorch's allocated peak");
    tensor_count_ops(true);
    if (run_step(b, k++, &r) != 0) return -1;
    tensor_count_ops(false);
    tensor_counters fb = r.forward_backward, up = r.update;
    printf("counters of one step: %lld ops (forward+backward %lld, clip+AdamW+clamp %lld), %lld host read(s), "
           "%lld sync(s)\n", (long long)(fb.ops + up.ops), (long long)fb.ops, (long long)up.ops,
           (long long)(fb.host_reads + up.host_reads), (long long)(fb.syncs + up.syncs));
    if (profile_kernels(b, k++) != 0) return -1;
    return o->profile ? profile_ops(b, k) : 0;
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
    bench_options o = {.model = "clip-tiny", .device = "cpu", .precision = "fp32", .captions = "short", .batch = 128,
                       .steps = 10, .warmup = 2, .seed = 7};
    arg_spec specs[] = {
        {"model", ARG_STR, &o.model, "model config name or path", false},
        {"configs", ARG_STR, &o.configs, "folder of model configs", false},
        {"batch-size", ARG_INT, &o.batch, "samples per step", false},
        {"steps", ARG_INT, &o.steps, "timed steps", false},
        {"warmup", ARG_INT, &o.warmup, "untimed steps first", false},
        {"threads", ARG_INT, &o.threads, "intra-op threads (0: one per core)", false},
        {"captions", ARG_STR, &o.captions,
         "caption lengths: short (SOT, 11 ids, EOT at 12), full (EOT at 76), web (per batch ceil(5%) fill the "
         "context at random rows, the others uniform [4, 30] ids: 3-25 words at 1.21 tokens a word)", false},
        {"seed", ARG_INT, &o.seed, "seed of the web captions' lengths and full rows (7)", false},
        {"dump-tokens", ARG_STR, &o.dump_tokens, "write the batch's token ids here (int64 little-endian, batch x context)", false},
        {"device", ARG_STR, &o.device, "cpu or cuda", false},
        {"precision", ARG_STR, &o.precision, "fp32, amp_bf16 or pure_bf16", false},
        {"no-tf32", ARG_FLAG, &o.no_tf32, "full float32 matrix products on GPU", false},
        {"deterministic", ARG_FLAG, &o.deterministic, "deterministic algorithms only", false},
        {"profile", ARG_FLAG, &o.profile, "time one more step's operators by kind (CPU)", false},
        {"grad-checkpointing", ARG_FLAG, &o.grad_checkpointing, "recompute the transformer blocks in the backward", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc == 0 && (o.batch <= 0 || o.steps <= 0 || o.warmup < 0))
        rc = err_set("--batch-size and --steps must be positive");
    if (rc == 0) rc = caption_kind_parse(o.captions, &o.kind);
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
