// bench_adamw: times one AdamW update (optim/adamw.h: adamw_step) over the packed parameters of a
// CLIP config (ViT-B-32 by default: 151M float32 elements with OpenCLIP's weight-decay mask), the
// gradients filled with normal noise once. Prints the median wall and CPU time (user + system,
// all threads) of an update, the bytes it streams (p, g, m, v read and p, m, v written, plus the
// mask) over the median wall time, the threads, and a hash of the parameters' bytes after the
// updates (two builds that update alike print the same hash).
//
// Usage: bench_adamw [--model ViT-B-32] [--steps 10] [--warmup 2] [--threads 0]
//                    [--device cpu|cuda] [--precision fp32|pure_bf16] [--configs DIR]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_clock.h"
#include "common/args.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "model/clip.h"
#include "optim/adamw.h"

typedef struct {
    char *model, *configs, *device, *precision;
    long steps, warmup, threads;
} bench_options;

// The model's parameters on the device in the precision, with noise as gradients.
static clip_model *model_init(const clip_config *cfg, const bench_options *o) {
    tensor_device dev;
    if (tensor_device_parse(o->device, &dev) != 0) return NULL;
    clip_model *m = clip_model_init(cfg, 0);
    if (!m || clip_model_to_device(m, dev) != 0 ||
        (strcmp(o->precision, "pure_bf16") == 0 && clip_model_to_dtype(m, TENSOR_BF16) != 0)) {
        clip_model_free(m);
        return NULL;
    }
    tensor_generator *gen = tensor_generator_new(1, dev);
    tensor_scope_begin();
    tensor *noise = tensor_normal(&m->params.n_trainable, 1, 0, 1e-3, tensor_get_dtype(m->params.grad), dev, gen);
    int rc = tensor_copy_(m->params.grad, noise);
    tensor_scope_end();
    tensor_generator_free(gen);
    if (rc != 0) clip_model_free(m);
    return rc == 0 ? m : NULL;
}

// FNV-1a over the bytes of the packed parameters.
static int params_hash(const clip_model *m, uint64_t *hash) {
    size_t nbytes = (size_t)m->params.numel * tensor_dtype_size(tensor_get_dtype(m->params.data));
    uint8_t *bytes = xmalloc(nbytes);
    int rc = tensor_to_host(m->params.data, bytes, nbytes);
    *hash = 14695981039346656037ull;
    for (size_t i = 0; i < nbytes; i++) *hash = (*hash ^ bytes[i]) * 1099511628211ull;
    free(bytes);
    return rc;
}

// Times the updates and prints the figures.
static int run(adamw *opt, const clip_model *m, const bench_options *o) {
    for (long i = 0; i < o->warmup; i++)
        if (adamw_step(opt) != 0) return -1;
    double *wall = xmalloc(2 * (size_t)o->steps * sizeof(double)), *cpu = wall + o->steps, sink;
    for (long i = 0; i < o->steps; i++) {
        double t0 = bench_now_s(), c0 = bench_cpu_s(NULL);
        // The host read waits for a GPU's queued ops (no effect on the CPU).
        if (adamw_step(opt) != 0 || tensor_item(m->logit_scale, &sink) != 0) return free(wall), -1;
        wall[i] = bench_now_s() - t0, cpu[i] = bench_cpu_s(NULL) - c0;
    }
    double med = bench_median(wall, o->steps), cpu_med = bench_median(cpu, o->steps);
    uint64_t hash;
    if (params_hash(m, &hash) != 0) return free(wall), -1;
    double elements = (double)m->params.n_trainable;
    double bytes = elements * (7 * (double)tensor_dtype_size(tensor_get_dtype(m->params.grad)) + 1);  // + the mask
    printf("adamw %s %s on %s: %.0f elements, median %.2f ms/update (min %.2f, max %.2f, %ld updates), "
           "cpu %.2f ms/update, %.1f GB/s, parameters' hash %016llx\n",
           m->cfg.name, o->precision, o->device, elements, med * 1e3, wall[0] * 1e3, wall[o->steps - 1] * 1e3, o->steps,
           cpu_med * 1e3, bytes / med * 1e-9, (unsigned long long)hash);
    free(wall);
    return 0;
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    bench_options o = {.model = "ViT-B-32", .device = "cpu", .precision = "fp32", .steps = 10, .warmup = 2};
    arg_spec specs[] = {
        {"model", ARG_STR, &o.model, "model config name or path", false},
        {"configs", ARG_STR, &o.configs, "folder of model configs", false},
        {"steps", ARG_INT, &o.steps, "timed updates", false},
        {"warmup", ARG_INT, &o.warmup, "untimed updates first", false},
        {"threads", ARG_INT, &o.threads, "threads (0: one per core)", false},
        {"device", ARG_STR, &o.device, "cpu or cuda", false},
        {"precision", ARG_STR, &o.precision, "fp32 or pure_bf16", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc == 0 && (o.steps <= 0 || o.warmup < 0)) rc = err_set("--steps must be positive, --warmup not negative");
    if (rc) {
        if (rc > 0) args_print_help(specs, n_specs, "bench_adamw [options]");
        else fprintf(stderr, "bench_adamw: %s\n", err_msg());
        return rc > 0 ? 0 : 2;
    }
    char path[1024];
    clip_config cfg;
    if (clip_config_find(o.model, o.configs, path, sizeof path) || clip_config_load(path, &cfg))
        return fprintf(stderr, "bench_adamw: %s\n", err_msg()), 1;
    tensor_set_threads((int)o.threads);
    printf("model %s, %s on %s, libtorch %s, %d threads\n", cfg.name, o.precision, o.device, tensor_torch_version(),
           tensor_get_threads());
    clip_model *m = model_init(&cfg, &o);
    param_list *lists[1] = {m ? &m->params : NULL};
    adamw *opt = m ? adamw_init(lists, 1, adamw_config_default()) : NULL;
    rc = opt && run(opt, m, &o) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "bench_adamw: %s\n", err_msg());
    adamw_free(opt);
    clip_model_free(m);
    return rc;
}
