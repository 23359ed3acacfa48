// sources: the inputs `clipc shards` converts, listed as items (an image file or in-memory
// grayscale pixels, a caption, a key, a label), with the class names of a labelled set.
#ifndef CLIPC_DATA_SOURCES_H
#define CLIPC_DATA_SOURCES_H

#include <stdint.h>

#include "data/convert.h"

typedef struct {
    char *path;            // image file, or NULL for gray pixels
    const uint8_t *gray;   // (gray_h, gray_w) or NULL
    int gray_w, gray_h;
    char *caption;
    char *key;
    int32_t label;         // -1 for unlabelled sets
} source_item;

typedef struct {
    source_item *items;
    int64_t n, cap;
    char **class_names;    // (n_classes)
    int n_classes;
    uint8_t *pixels;       // storage behind gray pointers
} source_list;

int sources_read_csv(const convert_options *o, source_list *out);
int sources_read_folders(const convert_options *o, source_list *out);
int sources_read_fashion_mnist(const convert_options *o, source_list *out);
void sources_free(source_list *l);

// Appends an item (path, caption and key are copied; path may be NULL).
source_item *sources_add(source_list *l, const char *path, const char *caption, const char *key, int32_t label);

// A caption for a labelled sample: one of the CLIP-style templates, chosen from (seed, key).
char *sources_caption_for_class(const char *class_name, const char *key, uint64_t seed);

#endif
