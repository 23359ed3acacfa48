// convert: building clipc shards (docs/data-format.md) from the formats datasets are published in:
// a CSV/TSV of image paths and captions, class folders (ImageNet and its variants), the MNIST IDX
// family, the CIFAR-10/100 binaries, Karpathy-split retrieval JSON (COCO, Flickr30k) and webdataset
// tar shards (img2dataset's output); the library behind `clipc shards`.
//
// Inputs are split into shards by position (shard i holds inputs [i*N, (i+1)*N)), so a re-run
// after an interruption keeps the finished shards (checked, and made with the same options) and
// makes only the missing ones. Images are decoded, resized (shorter side at most max_size, never
// enlarged unless asked) and WebP-encoded by a pool of threads; an unreadable or corrupt input is
// left out, counted, and listed in OUT/skipped.tsv. The manifest is written last.
#ifndef CLIPC_CONVERT_CONVERT_H
#define CLIPC_CONVERT_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    CONVERT_SOURCE_CSV,
    CONVERT_SOURCE_FOLDERS,
    CONVERT_SOURCE_FASHION_MNIST,
    CONVERT_SOURCE_MNIST,         // the IDX layout with digit (or --class-names) names
    CONVERT_SOURCE_CIFAR10,
    CONVERT_SOURCE_CIFAR100,
    CONVERT_SOURCE_KARPATHY,
    CONVERT_SOURCE_WEBDATASET,
} convert_source;

typedef struct {
    int shard, n_shards;
    int64_t samples, skipped, bytes;
    bool reused;             // the shard was already complete
    double images_per_second;
} convert_progress;

typedef struct {
    convert_source source;
    const char *input;             // CSV file, class-folder root, IDX or CIFAR folder, Karpathy JSON,
                                   // or tar pattern ('::'-separated, with braces: convert/pattern.h)
    const char *out_dir;
    const char *csv_img_key;       // OpenCLIP's --csv-img-key ("filepath")
    const char *csv_caption_key;   // --csv-caption-key ("title")
    const char *csv_separator;     // --csv-separator ("\t"; the two characters "\t" also mean tab)
    const char *image_root;        // relative CSV/Karpathy image paths are joined to it (NULL: as given)
    const char *class_names_file;  // class folders: "folder name" lines, or one name per line; MNIST
    const char *split;             // IDX, CIFAR: "train" or "test"; Karpathy: "test", "train+restval"...
                                   // (NULL: "test" for Karpathy, else "train")
    int64_t shard_size;
    int max_size, min_size;        // shorter side bounds (0: none)
    bool upscale;                  // bring every shorter side to max_size
    int quality;                   // lossy WebP quality 0-100
    bool lossless;
    int workers;                   // encoding threads
    uint64_t seed;                 // caption templates, class-folder order
    void (*progress)(void *ctx, const convert_progress *p);
    void *progress_ctx;
} convert_options;

typedef struct {
    int n_shards, shards_reused;
    int64_t samples, skipped, bytes;
    double seconds;
} convert_summary;

// Defaults: shard size 10000, max size 256, quality 90, lossy, one thread per core, OpenCLIP's
// CSV keys and tab separator, the source's default split.
void convert_options_default(convert_options *o);

// Returns 0, or -1 with err_msg() naming the file, line or option at fault.
int convert_run(const convert_options *o, convert_summary *summary);

#endif
