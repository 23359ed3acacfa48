// `clipc shards`: converts images with captions or labels, in the formats datasets are published
// in, into clipc shards (convert/convert.h).
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/commands.h"
#include "common/args.h"
#include "common/error.h"
#include "convert/convert.h"
#include "shards/manifest.h"

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
    "clipc shards INPUT --out DIR [options]\n"
    "  INPUT: --csv FILE | --folders DIR | --webdataset 'DIR/{00000..00999}.tar' | --karpathy FILE\n"
    "         | --fashion-mnist DIR | --mnist DIR | --cifar10 DIR | --cifar100 DIR\n"
    "Converts images with captions or labels, in the formats datasets are published in, into clipc\n"
    "HDF5 shards of WebP images (docs/data-format.md, docs/data.md).";

typedef struct {
    const char *option;
    convert_source source;
    char *value;
} input_option;

// The one input given among ins, or -1 with an error when none or several are.
static int pick_input(const input_option *ins, int n) {
    int chosen = -1;
    for (int i = 0; i < n; i++)
        if (ins[i].value) {
            if (chosen >= 0) return err_set("give one input, not both --%s and --%s", ins[chosen].option, ins[i].option);
            chosen = i;
        }
    return chosen >= 0 ? chosen : err_set("give an input: --csv, --folders, --webdataset, --karpathy, --fashion-mnist, "
                                          "--mnist, --cifar10 or --cifar100");
}

int cmd_shards(int argc, char **argv) {
    convert_options o;
    convert_options_default(&o);
    input_option ins[] = {
        {"csv", CONVERT_SOURCE_CSV, NULL},           {"folders", CONVERT_SOURCE_FOLDERS, NULL},
        {"webdataset", CONVERT_SOURCE_WEBDATASET, NULL}, {"karpathy", CONVERT_SOURCE_KARPATHY, NULL},
        {"fashion-mnist", CONVERT_SOURCE_FASHION_MNIST, NULL}, {"mnist", CONVERT_SOURCE_MNIST, NULL},
        {"cifar10", CONVERT_SOURCE_CIFAR10, NULL},   {"cifar100", CONVERT_SOURCE_CIFAR100, NULL},
    };
    char *out = NULL, *class_names = NULL, *image_root = NULL;
    char *split = NULL, *img_key = (char *)o.csv_img_key, *cap_key = (char *)o.csv_caption_key;
    char *sep = (char *)o.csv_separator;
    long shard_size = o.shard_size, max_size = o.max_size, min_size = 0, quality = o.quality, workers = o.workers, seed = 0;
    bool lossless = false, lossy = false, upscale = false;
    arg_spec specs[] = {
        {"csv", ARG_STR, &ins[0].value, "CSV/TSV file of image paths and captions", false},
        {"folders", ARG_STR, &ins[1].value, "class folders root/<class>/<image> (ImageNet and its variants)", false},
        {"webdataset", ARG_STR, &ins[2].value, "tar shards (img2dataset), a brace pattern; '::' joins several", false},
        {"karpathy", ARG_STR, &ins[3].value, "Karpathy-split JSON of a retrieval set (dataset_coco.json, ...)", false},
        {"fashion-mnist", ARG_STR, &ins[4].value, "folder of Fashion-MNIST's IDX files", false},
        {"mnist", ARG_STR, &ins[5].value, "folder of MNIST-layout IDX files (digits, or --class-names)", false},
        {"cifar10", ARG_STR, &ins[6].value, "CIFAR-10 binary folder (cifar-10-batches-bin)", false},
        {"cifar100", ARG_STR, &ins[7].value, "CIFAR-100 binary folder (cifar-100-binary), fine labels", false},
        {"out", ARG_STR, &out, "output folder (shards, manifest.json, skipped.tsv)", false},
        {"split", ARG_STR, &split, "IDX, CIFAR: train or test (train); Karpathy: test, val, train+restval... (test)", false},
        {"csv-img-key", ARG_STR, &img_key, "CSV column of image paths", false},
        {"csv-caption-key", ARG_STR, &cap_key, "CSV column of captions", false},
        {"csv-separator", ARG_STR, &sep, "CSV separator (default tab)", false},
        {"image-root", ARG_STR, &image_root, "folder that relative CSV and Karpathy image paths start from", false},
        {"class-names", ARG_STR, &class_names, "class names: 'folder name' lines or one name per line (folders, MNIST)", false},
        {"shard-size", ARG_INT, &shard_size, "samples per shard (10000)", false},
        {"max-size", ARG_INT, &max_size, "shorter side at most this (256; 0: keep)", false},
        {"min-size", ARG_INT, &min_size, "enlarge images whose shorter side is below this", false},
        {"upscale", ARG_FLAG, &upscale, "bring every shorter side to --max-size, enlarging small images", false},
        {"quality", ARG_INT, &quality, "lossy WebP quality 0-100 (90)", false},
        {"lossless", ARG_FLAG, &lossless, "lossless WebP (default for the IDX and CIFAR sets)", false},
        {"lossy", ARG_FLAG, &lossy, "lossy WebP even for the IDX and CIFAR sets", false},
        {"workers", ARG_INT, &workers, "encoding threads (one per core)", false},
        {"seed", ARG_INT, &seed, "seed of caption templates and class-folder order (0)", false},
    };
    int n_specs = (int)(sizeof specs / sizeof specs[0]);
    int rc = args_parse(specs, n_specs, argc, argv, NULL, 0, NULL);
    if (rc == 1) {
        args_print_help(specs, n_specs, shards_usage);
        return 0;
    }
    int input = rc == 0 ? pick_input(ins, (int)(sizeof ins / sizeof ins[0])) : -1;
    if (input < 0) {
        fprintf(stderr, "clipc shards: %s\n", err_msg());
        return 2;
    }
    o.source = ins[input].source;
    o.input = ins[input].value;
    bool pixels = o.source == CONVERT_SOURCE_FASHION_MNIST || o.source == CONVERT_SOURCE_MNIST ||
                  o.source == CONVERT_SOURCE_CIFAR10 || o.source == CONVERT_SOURCE_CIFAR100;
    o.out_dir = out, o.split = split, o.csv_img_key = img_key, o.csv_caption_key = cap_key, o.csv_separator = sep;
    o.image_root = image_root, o.class_names_file = class_names;
    o.shard_size = shard_size, o.max_size = (int)max_size, o.min_size = (int)min_size, o.upscale = upscale;
    o.quality = (int)quality, o.workers = (int)workers, o.seed = (uint64_t)seed;
    o.lossless = lossless || (pixels && !lossy);
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
