// bench_gemm: the float32 matrix-product rate this machine reaches through libtorch and its BLAS
// (the same OpenBLAS the training step uses): a large square product and the shapes of ViT-B-32's
// linear layers at batch 32 (the MLP and the q|k|v projection of 50-token images). Prints the
// median GFLOP/s of each (2 m n k FLOPs a product), the BLAS and the threads: the ceiling that
// bench_step's TFLOP/s is a fraction of.
//
// Usage: bench_gemm [--threads 0] [--reps 10]
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_clock.h"
#include "common/args.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "shim/tensor.h"

typedef struct {
    const char *what;
    int64_t m, k, n;
} gemm_shape;

static const gemm_shape SHAPES[] = {
    {"square", 2048, 2048, 2048},
    {"ViT-B-32 b32 MLP up (c_fc)", 32 * 50, 768, 3072},
    {"ViT-B-32 b32 MLP down (c_proj)", 32 * 50, 3072, 768},
    {"ViT-B-32 b32 q|k|v", 32 * 50, 768, 2304},
};

// Median GFLOP/s of reps products of shape s (one warm-up first).
static int time_shape(const gemm_shape *s, long reps, double *gflops) {
    tensor_generator *gen = tensor_generator_new(1, TENSOR_CPU);
    int64_t sa[2] = {s->m, s->k}, sb[2] = {s->k, s->n};
    tensor_scope_begin();
    tensor *a = tensor_normal(sa, 2, 0, 1, TENSOR_F32, TENSOR_CPU, gen), *b = tensor_normal(sb, 2, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
    double *t = xmalloc((size_t)reps * sizeof(double));
    int rc = tensor_matmul(a, b) ? 0 : -1;
    for (long i = 0; i < reps && rc == 0; i++) {
        tensor_scope_begin();
        double t0 = bench_now_s();
        rc = tensor_matmul(a, b) ? 0 : -1;
        t[i] = bench_now_s() - t0;
        tensor_scope_end();
    }
    tensor_scope_end();
    tensor_generator_free(gen);
    if (rc == 0) *gflops = 2.0 * (double)s->m * (double)s->n * (double)s->k / bench_median(t, reps) * 1e-9;
    free(t);
    return rc;
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    long threads = 0, reps = 10;
    arg_spec specs[] = {
        {"threads", ARG_INT, &threads, "threads (0: one per core)", false},
        {"reps", ARG_INT, &reps, "timed products a shape", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc == 0 && reps <= 0) rc = err_set("--reps must be positive");
    if (rc) {
        if (rc > 0) args_print_help(specs, n_specs, "bench_gemm [options]");
        else fprintf(stderr, "bench_gemm: %s\n", err_msg());
        return rc > 0 ? 0 : 2;
    }
    tensor_set_threads((int)threads);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("float32 matrix products through libtorch %s, %d threads, BLAS: %s\n", tensor_torch_version(),
           tensor_get_threads(), blas);
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        double gflops;
        if (time_shape(&SHAPES[i], reps, &gflops) != 0) return fprintf(stderr, "bench_gemm: %s\n", err_msg()), 1;
        printf("%-32s (%lld x %lld) @ (%lld x %lld): %6.1f GFLOP/s (median of %ld)\n", SHAPES[i].what,
               (long long)SHAPES[i].m, (long long)SHAPES[i].k, (long long)SHAPES[i].k, (long long)SHAPES[i].n, gflops,
               reps);
    }
    return 0;
}
