// bench_eval: evaluation throughput in images/s of a CLIP config: the image tower forward plus the
// zero-shot classifier (cosine against C class rows, ranks and confusion counts), without
// gradients, measured twice: on synthetic images already in memory (loader excluded) and on
// labelled shards through the evaluation loader (decode, resize, centre crop, normalize; loader
// included). Random weights: the speed does not depend on them. With --retrieval-n N it also times
// exact chunked retrieval (both directions) of N random unit image features against N text
// features of the model's embedding width, and prints the peak resident memory.
//
// Usage: bench_eval --data SHARDS [--model clip-tiny] [--batch-size 256] [--batches 10] [--warmup 1]
//                   [--workers 2] [--threads 0] [--classes 1000] [--configs configs/models]
//                   [--retrieval-n 0]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/args.h"
#include "common/error.h"
#include "common/sysinfo.h"
#include "eval/metrics.h"
#include "eval/retrieval.h"
#include "eval/zeroshot.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char *model, *configs, *data;
    long batch, batches, warmup, workers, threads, classes, retrieval_n;
} bench_options;

// Random unit rows (C, E).
static tensor *random_classifier(int64_t C, int E) {
    tensor_generator *g = tensor_generator_new((uint64_t)C, TENSOR_CPU);
    int64_t shape[2] = {C, E};
    tensor *w = tensor_normal(shape, 2, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    tensor *c = tensor_l2_normalize(w, 1);
    tensor_free(w);
    tensor_generator_free(g);
    return c;
}

// Images/s of n_batches synthetic batches (after warmup ones).
static double run_synthetic(const clip_model *m, const tensor *classifier, const bench_options *o) {
    int S = m->cfg.vision.image_size, B = (int)o->batch;
    size_t floats = (size_t)B * 3 * (size_t)S * (size_t)S;
    float *images = malloc(floats * sizeof(float));
    for (size_t i = 0; i < floats; i++) images[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    int32_t *labels = calloc((size_t)B, sizeof(int32_t));
    loader_batch b = {.n = B, .images = images, .labels = labels};
    metrics_classes counts;
    metrics_classes_init(&counts, (int)tensor_size(classifier, 0));
    double t0 = 0;
    int rc = 0;
    tensor_no_grad_begin();
    for (long k = 0; k < o->warmup + o->batches && rc == 0; k++) {
        if (k == o->warmup) t0 = now_s();
        tensor_scope_begin();
        rc = zeroshot_add_batch(m, classifier, &b, &counts);
        tensor_scope_end();
    }
    tensor_no_grad_end();
    double seconds = now_s() - t0;
    metrics_classes_free(&counts);
    free(images);
    free(labels);
    return rc ? -1 : (double)(o->batches * B) / seconds;
}

// Images/s through the evaluation loader over the shards (after warmup batches).
static double run_loader(const clip_model *m, const tensor *classifier, const bench_options *o) {
    loader_config lc;
    loader_config_default(&lc);
    lc.data = o->data, lc.batch_size = (int)o->batch, lc.image_size = m->cfg.vision.image_size;
    lc.train = false, lc.drop_last = false, lc.workers = (int)o->workers;
    loader *l = loader_init(&lc);
    if (!l) return -1;
    if (loader_num_classes(l) > tensor_size(classifier, 0)) {
        err_set("%s: %d classes, more than --classes", o->data, loader_num_classes(l));
        loader_free(l);
        return -1;
    }
    metrics_classes counts;
    metrics_classes_init(&counts, (int)tensor_size(classifier, 0));
    double t0 = now_s();
    int64_t images = 0;
    int rc = 1;
    loader_batch b;
    tensor_no_grad_begin();
    for (long k = 0; k < o->warmup + o->batches && rc == 1; k++) {
        if (k == o->warmup) t0 = now_s(), images = 0;
        if ((rc = loader_next(l, &b)) != 1) break;
        tensor_scope_begin();
        if (zeroshot_add_batch(m, classifier, &b, &counts)) rc = -1;
        tensor_scope_end();
        images += b.n;
    }
    tensor_no_grad_end();
    double seconds = now_s() - t0;
    metrics_classes_free(&counts);
    loader_free(l);
    if (rc < 0) return -1;
    return images ? (double)images / seconds : err_set("%s: too few batches for --warmup and --batches", o->data);
}

// Seconds of exact retrieval between n random images and n random texts (text t shows image t).
static double run_retrieval(int64_t n, int E) {
    tensor *images = random_classifier(n, E), *texts = random_classifier(n + 1, E);
    tensor *first = tensor_slice(texts, 0, 0, n);
    int64_t *text_image = malloc((size_t)n * sizeof(int64_t));
    for (int64_t t = 0; t < n; t++) text_image[t] = t;
    retrieval_result r;
    double t0 = now_s();
    int rc = retrieval_evaluate(images, first, text_image, 0, &r);
    double seconds = now_s() - t0;
    free(text_image);
    tensor_free(first), tensor_free(texts), tensor_free(images);
    return rc ? -1 : seconds;
}

int main(int argc, char **argv) {
    sysinfo_tune_openmp(argv);
    bench_options o = {"clip-tiny", "configs/models", NULL, 256, 10, 1, 2, 0, 1000, 0};
    arg_spec specs[] = {
        {"model", ARG_STR, &o.model, "model config name or path", false},
        {"configs", ARG_STR, &o.configs, "folder of model configs", false},
        {"data", ARG_STR, &o.data, "labelled shards for the loader-included run", false},
        {"batch-size", ARG_INT, &o.batch, "images per batch", false},
        {"batches", ARG_INT, &o.batches, "timed batches", false},
        {"warmup", ARG_INT, &o.warmup, "untimed batches first", false},
        {"workers", ARG_INT, &o.workers, "loader decoding threads", false},
        {"threads", ARG_INT, &o.threads, "intra-op threads (0: one per core)", false},
        {"classes", ARG_INT, &o.classes, "classifier rows (ImageNet: 1000)", false},
        {"retrieval-n", ARG_INT, &o.retrieval_n, "also time retrieval of N images x N texts (0: no)", false},
    };
    int n_specs = sizeof specs / sizeof specs[0];
    int rc = args_parse_command("bench_eval", "bench_eval --data SHARDS [options]", specs, n_specs, argc - 1, argv + 1,
                                NULL, 0, NULL);
    if (rc >= 0) return rc;
    char path[1024];
    clip_config cfg;
    if (clip_config_find(o.model, o.configs, path, sizeof path) || clip_config_load(path, &cfg))
        return fprintf(stderr, "bench_eval: %s\n", err_msg()), 1;
    tensor_set_threads((int)o.threads);
    char blas[512];
    sysinfo_blas(blas, sizeof blas);
    printf("model %s, batch %ld, %ld classes, libtorch %s, %d threads, %ld loader workers, BLAS: %s\n", cfg.name,
           o.batch, o.classes, tensor_torch_version(), tensor_get_threads(), o.workers, blas);
    clip_model *m = clip_model_init(&cfg, 0);
    tensor *classifier = m ? random_classifier((int)o.classes, cfg.embed_dim) : NULL;
    if (!classifier) return fprintf(stderr, "bench_eval: %s\n", err_msg()), 1;
    double excluded = run_synthetic(m, classifier, &o);
    if (excluded < 0) return fprintf(stderr, "bench_eval: %s\n", err_msg()), 1;
    printf("clipc eval %-10s batch %4ld: %9.1f images/s  loader excluded (%ld batches)\n", cfg.name, o.batch, excluded,
           o.batches);
    if (o.data) {
        double included = run_loader(m, classifier, &o);
        if (included < 0) return fprintf(stderr, "bench_eval: %s\n", err_msg()), 1;
        printf("clipc eval %-10s batch %4ld: %9.1f images/s  loader included (%s)\n", cfg.name, o.batch, included, o.data);
    }
    tensor_free(classifier);
    clip_model_free(m);
    if (o.retrieval_n > 0) {
        double seconds = run_retrieval(o.retrieval_n, cfg.embed_dim);
        if (seconds < 0) return fprintf(stderr, "bench_eval: %s\n", err_msg()), 1;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("retrieval %ld x %ld (E %d, both directions, exact, chunked): %.1f s, peak resident %.0f MiB\n",
               o.retrieval_n, o.retrieval_n, cfg.embed_dim, seconds, ru.ru_maxrss / 1024.0);
    }
    return 0;
}
