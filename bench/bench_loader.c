// bench_loader: images per second the data loader delivers (float, normalized, RandomResizedCrop)
// from shards of ~256 px WebP, at 224 px and at 32 px, for a list of worker-thread counts.
//
// Usage: bench_loader [--images N] [--epochs E] [--batch-size B] [--workers 1,2] [--sizes 224,32]
//                     [--data MANIFEST] [--keep DIR] [--quality Q] [--vocab bpe_simple_vocab_16e6.txt.gz]
// With --vocab the captions are tokenized in the workers (context 77), as in training.
// Without --data it makes N synthetic pictures (fractal noise, shorter side 256, aspect 1:1 to
// 3:2), writes them as WebP files with a CSV, and converts them with the `clipc shards` library
// (timed too). Run it under `taskset -c 0` / `taskset -c 0,1` to pin the cores used.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/args.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "convert/convert.h"
#include "common/fsutil.h"
#include "image/image.h"
#include "loader/loader.h"
#include "common/rng.h"
#include "text/tokenizer.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// CPU time of the whole process (all threads): on a shared machine, images per CPU-second is what
// the loader would deliver from each dedicated core.
static double cpu_seconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec +
           1e-6 * (double)u.ru_stime.tv_usec;
}

static double lattice(uint64_t seed, int x, int y) {
    rng r = {rng_mix(seed, (uint64_t)(uint32_t)x << 32 | (uint32_t)y)};
    return rng_uniform(&r);
}

// Smoothly interpolated value noise on a unit lattice.
static double value_noise(uint64_t seed, double x, double y) {
    int xi = (int)floor(x), yi = (int)floor(y);
    double fx = x - xi, fy = y - yi;
    fx = fx * fx * (3 - 2 * fx), fy = fy * fy * (3 - 2 * fy);
    double top = lattice(seed, xi, yi) * (1 - fx) + lattice(seed, xi + 1, yi) * fx;
    double bottom = lattice(seed, xi, yi + 1) * (1 - fx) + lattice(seed, xi + 1, yi + 1) * fx;
    return top * (1 - fy) + bottom * fy;
}

// Fractal noise (7 octaves, each at 0.6 of the previous amplitude): a power-law spectrum like
// photographs', about 11 KB as 256 px WebP at quality 90. Shorter side 256, aspect 1:1 to 3:2.
static image_rgb synthetic_picture(int k) {
    rng r = {rng_mix(12345, (uint64_t)k)};
    int w = 256 + (int)rng_below(&r, 129), h = 256;
    if (k % 2) w ^= h, h ^= w, w ^= h;  // half of them portrait
    image_rgb img = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 0, amp = 1, norm = 0, f = 1.0 / 64;
                for (int o = 0; o < 7; o++, amp *= 0.6, f *= 2) {
                    v += amp * value_noise((uint64_t)k * 64 + (uint64_t)c * 8 + (uint64_t)o, x * f, y * f);
                    norm += amp;
                }
                img.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)fmin(255, fmax(0, 255 * v / norm));
            }
    return img;
}

static int make_inputs(const char *dir, int n) {
    char *csv_path = fs_join(dir, "images.tsv");
    FILE *csv = fopen_checked(csv_path, "w");
    if (!csv) return -1;
    fprintf(csv, "filepath\ttitle\n");
    for (int k = 0; k < n; k++) {
        image_rgb img = synthetic_picture(k);
        uint8_t *bytes = NULL;
        size_t size = 0;
        char name[64];
        snprintf(name, sizeof name, "img%06d.webp", k);
        char *path = fs_join(dir, name);
        if (image_encode_webp(&img, img.width, img.height, 95, false, &bytes, &size) ||
            atomic_file_write_bytes(path, bytes, size))
            return -1;
        fprintf(csv, "%s\ta synthetic picture number %d\n", path, k);
        free(bytes), free(path), image_rgb_free(&img);
    }
    fclose(csv);
    free(csv_path);
    return 0;
}

static int convert_inputs(const char *dir, int quality, char **manifest_path) {
    convert_options o;
    convert_options_default(&o);
    char *csv = fs_join(dir, "images.tsv"), *out = fs_join(dir, "shards");
    o.source = CONVERT_SOURCE_CSV, o.input = csv, o.out_dir = out, o.shard_size = 1000, o.quality = quality;
    convert_summary s;
    int rc = convert_run(&o, &s);
    if (rc == 0)
        printf("convert: quality %d, %lld images -> %d shards, %.1f MB (%.1f KB/image), %.1f s, %.0f images/s with %d threads\n",
               quality, (long long)s.samples, s.n_shards, s.bytes / 1e6, s.bytes / 1e3 / (double)s.samples, s.seconds,
               (double)s.samples / s.seconds, o.workers);
    *manifest_path = fs_join(out, "manifest.json");
    free(csv), free(out);
    return rc;
}

static int bench_one(const char *manifest_path, const tokenizer *tok, int image_size, int workers, int batch_size,
                     int epochs) {
    loader_config c;
    loader_config_default(&c);
    c.data = manifest_path, c.image_size = image_size, c.workers = workers, c.batch_size = batch_size, c.tok = tok;
    loader *l = loader_init(&c);
    if (!l) return -1;
    loader_batch b;
    double t0 = now_seconds(), c0 = cpu_seconds();
    int64_t samples = 0;
    for (int e = 0; e < epochs; e++) {
        loader_set_epoch(l, e);
        int rc;
        while ((rc = loader_next(l, &b)) == 1) samples += b.n;
        if (rc < 0) return -1;
    }
    double dt = now_seconds() - t0, cpu = cpu_seconds() - c0;
    loader_stats st = loader_get_stats(l);
    printf("loader: %3d px, %d worker thread%s, batch %d%s: %6.0f images/s wall, %6.0f images per CPU-second "
           "(%lld images in %.2f s, %.2f CPU-s, waited %.2f s)\n",
           image_size, workers, workers == 1 ? " " : "s", batch_size, tok ? ", tokenized" : "", (double)samples / dt, (double)samples / cpu,
           (long long)samples, dt, cpu, st.wait_seconds);
    loader_free(l);
    return 0;
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    for (char *end = NULL; *s && n < cap; s = *end ? end + 1 : end) out[n++] = (int)strtol(s, &end, 10);
    return n;
}

int main(int argc, char **argv) {
    long images = 1000, epochs = 3, batch = 64, quality = 90;
    char *workers_arg = "1,2", *sizes_arg = "224,32", *data = NULL, *keep = NULL, *vocab = NULL;
    arg_spec specs[] = {
        {"images", ARG_INT, &images, "synthetic images to make (1000)", false},
        {"epochs", ARG_INT, &epochs, "epochs per measurement (3)", false},
        {"batch-size", ARG_INT, &batch, "batch size (64)", false},
        {"workers", ARG_STR, &workers_arg, "worker-thread counts to measure (1,2)", false},
        {"sizes", ARG_STR, &sizes_arg, "output sizes to measure (224,32)", false},
        {"data", ARG_STR, &data, "existing manifest instead of synthetic shards", false},
        {"keep", ARG_STR, &keep, "make the synthetic data in this folder and keep it", false},
        {"quality", ARG_INT, &quality, "WebP quality of the synthetic shards (90, the converter's default)", false},
        {"vocab", ARG_STR, &vocab, "CLIP merges file: tokenize the captions too", false},
    };
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(specs, n_specs, argc - 1, argv + 1, NULL, 0, NULL);
    if (rc) {
        if (rc < 0) fprintf(stderr, "bench_loader: %s\n", err_msg());
        args_print_help(specs, n_specs, "bench_loader [options]");
        return rc < 0 ? 2 : 0;
    }
    tokenizer *tok = vocab ? tokenizer_load(vocab, 0) : NULL;
    if (vocab && !tok) {
        fprintf(stderr, "bench_loader: %s\n", err_msg());
        return 1;
    }
    char tmpl[] = "/tmp/clipc-bench-XXXXXX";
    char *dir = keep ? keep : mkdtemp(tmpl), *manifest_path = data ? xstrdup(data) : NULL;
    if (!data && (fs_mkdirs(dir) || make_inputs(dir, (int)images) || convert_inputs(dir, (int)quality, &manifest_path))) {
        fprintf(stderr, "bench_loader: %s\n", err_msg());
        return 1;
    }
    int workers[8], sizes[8];
    int n_workers = parse_list(workers_arg, workers, 8), n_sizes = parse_list(sizes_arg, sizes, 8);
    for (int s = 0; s < n_sizes; s++)
        for (int w = 0; w < n_workers; w++)
            if (bench_one(manifest_path, tok, sizes[s], workers[w], (int)batch, (int)epochs)) {
                fprintf(stderr, "bench_loader: %s\n", err_msg());
                return 1;
            }
    if (!data && !keep) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "bench_loader: could not remove %s\n", dir);
    }
    free(manifest_path);
    tokenizer_free(tok);
    return 0;
}
