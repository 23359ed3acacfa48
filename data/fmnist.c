// The Fashion-MNIST source of `clipc shards`: the gzip'ed IDX files of Debian's
// dataset-fashion-mnist package (28x28 grayscale images, labels 0-9), captioned from the class
// names with CLIP-style templates.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/error.h"
#include "data/fsutil.h"
#include "data/sources.h"

static const char *const fashion_classes[] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};
#define N_FASHION_CLASSES 10
#define IDX_MAX_ITEMS 10000000

// Reads an IDX file: magic 0x0000080D (unsigned bytes, D dimensions), D big-endian sizes, data.
static uint8_t *read_idx(const char *path, int dims, uint32_t *sizes, size_t *count) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        err_errno(path);
        return NULL;
    }
    uint8_t head[4 + 4 * 3];
    size_t head_len = 4 + 4 * (size_t)dims;
    uint8_t *data = NULL;
    if (gzread(f, head, (unsigned)head_len) != (int)head_len || head[0] || head[1] || head[2] != 0x08 || head[3] != dims) {
        err_set("%s: not an IDX file of %d-dimensional unsigned bytes", path, dims);
    } else {
        *count = 1;
        for (int d = 0; d < dims; d++) {
            const uint8_t *s = head + 4 + 4 * d;
            sizes[d] = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
            *count *= sizes[d];
        }
        if (sizes[0] > IDX_MAX_ITEMS || *count > (size_t)IDX_MAX_ITEMS * 1024) {
            err_set("%s: implausible IDX sizes", path);
        } else {
            data = xmalloc(*count ? *count : 1);
            if (gzread(f, data, (unsigned)*count) != (int)*count) {
                err_set("%s: truncated (expected %zu data bytes)", path, *count);
                free(data);
                data = NULL;
            }
        }
    }
    gzclose(f);
    return data;
}

static char *split_file(const char *dir, const char *split, const char *what) {
    char name[64];
    snprintf(name, sizeof name, "%s-%s-idx%d-ubyte.gz", !strcmp(split, "train") ? "train" : "t10k", what,
             !strcmp(what, "images") ? 3 : 1);
    return fs_join(dir, name);
}

static void add_samples(const convert_options *o, source_list *out, const uint8_t *labels, uint32_t n, int w, int h) {
    out->n_classes = N_FASHION_CLASSES;
    out->class_names = xcalloc(N_FASHION_CLASSES, sizeof(char *));
    for (int c = 0; c < N_FASHION_CLASSES; c++) out->class_names[c] = xstrdup(fashion_classes[c]);
    for (uint32_t i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, "fashion-mnist/%s/%05u", o->split, i);
        char *caption = sources_caption_for_class(fashion_classes[labels[i]], key, o->seed);
        source_item *it = sources_add(out, NULL, caption, key, labels[i]);
        free(caption);
        it->gray = out->pixels + (size_t)i * (size_t)(w * h);
        it->gray_w = w, it->gray_h = h;
    }
}

int sources_read_fashion_mnist(const convert_options *o, source_list *out) {
    if (strcmp(o->split, "train") && strcmp(o->split, "test"))
        return err_set("--split must be 'train' or 'test', not '%s'", o->split);
    char *images_path = split_file(o->input, o->split, "images"), *labels_path = split_file(o->input, o->split, "labels");
    uint32_t isz[3] = {0}, lsz[1] = {0};
    size_t icount = 0, lcount = 0;
    uint8_t *labels = NULL;
    out->pixels = read_idx(images_path, 3, isz, &icount);
    if (out->pixels) labels = read_idx(labels_path, 1, lsz, &lcount);
    int rc = labels ? 0 : -1;
    if (rc == 0 && lsz[0] != isz[0])
        rc = err_set("%s: %u labels for %u images in %s", labels_path, lsz[0], isz[0], images_path);
    for (uint32_t i = 0; rc == 0 && i < lsz[0]; i++)
        if (labels[i] >= N_FASHION_CLASSES) rc = err_set("%s: label %d of item %u is not a class", labels_path, labels[i], i);
    if (rc == 0) add_samples(o, out, labels, isz[0], (int)isz[2], (int)isz[1]);
    free(labels);
    free(images_path);
    free(labels_path);
    return rc;
}
