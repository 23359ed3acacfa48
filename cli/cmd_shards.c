// `clipc shards`: converts images with captions or labels into clipc shards (data/convert.h).
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "data/convert.h"
#include "data/manifest.h"

static void print_progress(void *ctx, const convert_progress *p) {
    (void)ctx;
    if (p->reused)
        fprintf(stderr, "clipc shards: shard %d/%d already complete: %lld samples\n", p->shard + 1, p->n_shards,
                (long long)p->samples);
    else
        fprintf(stderr, "clipc shards: shard %d/%d: %lld samples, %lld skipped, %.1f MB, %.0f images/s\n", p->shard + 1,
                p->n_shards, (long long)p->samples, (long long)p->skipped, (double)p->bytes / 1e6, p->images_per_second);
}

static const char shards_usage[] =
    "clipc shards (--csv FILE | --folders DIR | --fashion-mnist DIR) --out DIR [options]\n"
    "Converts images with captions or labels into clipc HDF5 shards of WebP images (docs/data-format.md).";

int cmd_shards(int argc, char **argv) {
    convert_options o;
    convert_options_default(&o);
    char *csv = NULL, *folders = NULL, *fmnist = NULL, *out = NULL, *class_names = NULL, *image_root = NULL;
    char *split = (char *)o.split, *img_key = (char *)o.csv_img_key, *cap_key = (char *)o.csv_caption_key;
    char *sep = (char *)o.csv_separator;
    long shard_size = o.shard_size, max_size = o.max_size, min_size = 0, quality = o.quality, workers = o.workers, seed = 0;
    bool lossless = false, lossy = false, upscale = false;
    arg_spec specs[] = {
        {"csv", ARG_STR, &csv, "CSV/TSV file of image paths and captions", false},
        {"folders", ARG_STR, &folders, "class folders root/<class>/<image>", false},
        {"fashion-mnist", ARG_STR, &fmnist, "folder of Fashion-MNIST's IDX files", false},
        {"out", ARG_STR, &out, "output folder (shards, manifest.json, skipped.tsv)", false},
        {"split", ARG_STR, &split, "Fashion-MNIST split: train or test", false},
        {"csv-img-key", ARG_STR, &img_key, "CSV column of image paths", false},
        {"csv-caption-key", ARG_STR, &cap_key, "CSV column of captions", false},
        {"csv-separator", ARG_STR, &sep, "CSV separator (default tab)", false},
        {"image-root", ARG_STR, &image_root, "folder that relative CSV image paths start from", false},
        {"class-names", ARG_STR, &class_names, "class names: 'folder name' lines or one name per line", false},
        {"shard-size", ARG_INT, &shard_size, "samples per shard (10000)", false},
        {"max-size", ARG_INT, &max_size, "shorter side at most this (256; 0: keep)", false},
        {"min-size", ARG_INT, &min_size, "enlarge images whose shorter side is below this", false},
        {"upscale", ARG_FLAG, &upscale, "bring every shorter side to --max-size, enlarging small images", false},
        {"quality", ARG_INT, &quality, "lossy WebP quality 0-100 (90)", false},
        {"lossless", ARG_FLAG, &lossless, "lossless WebP (default for Fashion-MNIST)", false},
        {"lossy", ARG_FLAG, &lossy, "lossy WebP even for Fashion-MNIST", false},
        {"workers", ARG_INT, &workers, "encoding threads (one per core)", false},
        {"seed", ARG_INT, &seed, "seed of caption templates and class-folder order (0)", false},
    };
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(specs, n_specs, argc, argv, NULL, 0, NULL);
    if (rc == 1) {
        args_print_help(specs, n_specs, shards_usage);
        return 0;
    }
    if (rc == 0 && (!!csv + !!folders + !!fmnist) != 1) rc = err_set("give exactly one of --csv, --folders, --fashion-mnist");
    if (rc != 0) {
        fprintf(stderr, "clipc shards: %s\n", err_msg());
        return 2;
    }
    o.source = csv ? CONVERT_SOURCE_CSV : folders ? CONVERT_SOURCE_FOLDERS : CONVERT_SOURCE_FASHION_MNIST;
    o.input = csv ? csv : folders ? folders : fmnist;
    o.out_dir = out, o.split = split, o.csv_img_key = img_key, o.csv_caption_key = cap_key, o.csv_separator = sep;
    o.image_root = image_root, o.class_names_file = class_names;
    o.shard_size = shard_size, o.max_size = (int)max_size, o.min_size = (int)min_size, o.upscale = upscale;
    o.quality = (int)quality, o.workers = (int)workers, o.seed = (uint64_t)seed;
    o.lossless = lossless || (o.source == CONVERT_SOURCE_FASHION_MNIST && !lossy);
    o.progress = print_progress;
    convert_summary sum;
    if (convert_run(&o, &sum)) {
        fprintf(stderr, "clipc shards: %s\n", err_msg());
        return 1;
    }
    fprintf(stderr,
            "clipc shards: %lld samples in %d shards (%d already complete), %lld inputs skipped (listed in "
            "%s/skipped.tsv), %.1f MB, %.1f s -> %s/%s\n",
            (long long)sum.samples, sum.n_shards, sum.shards_reused, (long long)sum.skipped, out,
            (double)sum.bytes / 1e6, sum.seconds, out, MANIFEST_DEFAULT_NAME);
    return 0;
}
