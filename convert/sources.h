// sources: the inputs `clipc shards` converts, listed as items (an image file, a member of a tar
// archive, or pixels in memory; a caption, a key, a label), with the class names of a labelled set.
// One reader per published format: CSV/TSV, class folders, the MNIST IDX family, CIFAR-10/100
// binaries, Karpathy-split retrieval JSON and webdataset tar shards.
#ifndef CLIPC_CONVERT_SOURCES_H
#define CLIPC_CONVERT_SOURCES_H

#include <stddef.h>
#include <stdint.h>

#include "convert/convert.h"

typedef struct {
    char *path;              // image file, or the tar archive holding `member`; NULL for pixels
    char *member;            // the image's member name inside the archive `path`, or NULL
    const uint8_t *pixels;   // (height, width, channels) in memory, or NULL
    int width, height;
    int channels;            // of pixels: 1 (gray) or 3 (RGB)
    char *caption;
    char *key;
    int32_t label;           // -1 for unlabelled sets
    char *error;             // why the input cannot be used (found while listing), or NULL
} source_item;

typedef struct {
    source_item *items;
    int64_t n, cap;
    char **class_names;      // (n_classes)
    int n_classes;
    uint8_t *pixels;         // storage behind pixel pointers
} source_list;

int sources_read_csv(const convert_options *o, source_list *out);
int sources_read_folders(const convert_options *o, source_list *out);
int sources_read_idx(const convert_options *o, source_list *out);      // MNIST and Fashion-MNIST
int sources_read_cifar(const convert_options *o, source_list *out);    // CIFAR-10 and CIFAR-100
int sources_read_karpathy(const convert_options *o, source_list *out);
int sources_read_webdataset(const convert_options *o, source_list *out);
void sources_free(source_list *l);

// Appends an item (path, caption and key are copied; path may be NULL).
source_item *sources_add(source_list *l, const char *path, const char *caption, const char *key, int32_t label);

// Appends an input that cannot be used: listed in skipped.tsv with the reason.
void sources_add_error(source_list *l, const char *path, const char *key, const char *reason);

// A caption for a labelled sample: one of the CLIP-style templates, chosen from (seed, key).
char *sources_caption_for_class(const char *class_name, const char *key, uint64_t seed);

// Labelled sets whose class names and labels are known: the names (copied) and, for each of the n
// samples, an item keyed "<prefix>/<split>/<index>" with a template caption and its pixels
// (pixels + i * width * height * channels, in out->pixels). A label outside [0, n_classes) is an
// error naming `what`.
int sources_add_labelled_pixels(const convert_options *o, source_list *out, const char *prefix, const char *what,
                                const char *const *class_names, int n_classes, const uint8_t *labels, int64_t n,
                                int width, int height, int channels);

// Reads the image bytes of the items [first, first + n) that are tar members into bytes[i] (sizes[i]),
// opening each archive once; a member that cannot be read gets reasons[i] (malloc'ed) instead.
// Items that are not members are left alone.
void sources_fetch_members(const source_list *l, int64_t first, int64_t n, uint8_t **bytes, size_t *sizes,
                           char **reasons);

#endif
