// The MNIST IDX family source of `clipc shards`: MNIST, Fashion-MNIST and the sets published in the
// same layout (KMNIST), as IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-* for the test split; gzip'ed or unpacked): grayscale images with byte labels, captioned
// from the class names with CLIP-style templates.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "convert/sources.h"

static const char *const fashion_classes[] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};
static const char *const digit_classes[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
#define IDX_MAX_ITEMS 10000000
#define IDX_MAX_BYTES ((size_t)INT32_MAX)  // one gzread

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
        bool plausible = true;
        *count = 1;
        for (int d = 0; d < dims; d++) {
            const uint8_t *s = head + 4 + 4 * d;
            sizes[d] = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
            plausible = plausible && (sizes[d] == 0 || *count <= IDX_MAX_BYTES / sizes[d]);
            if (plausible) *count *= sizes[d];
        }
        if (!plausible || sizes[0] > IDX_MAX_ITEMS) {
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

// The IDX file of a split: "train-" or "t10k-" + what, gzip'ed as published or already unpacked.
static char *split_file(const char *dir, const char *split, const char *what) {
    char name[64];
    snprintf(name, sizeof name, "%s-%s-idx%d-ubyte.gz", !strcmp(split, "train") ? "train" : "t10k", what,
             !strcmp(what, "images") ? 3 : 1);
    char *gz = fs_join(dir, name);
    if (access(gz, F_OK) == 0) return gz;
    name[strlen(name) - 3] = '\0';
    char *plain = fs_join(dir, name);
    if (access(plain, F_OK) == 0) {
        free(gz);
        return plain;
    }
    free(plain);
    return gz;  // missing: the error names the published file
}

// Class names: --class-names (one per line) or the set's own (Fashion-MNIST's, or the digits).
static int idx_class_names(const convert_options *o, char ***names) {
    if (o->class_names_file) {
        int n = fs_read_lines(o->class_names_file, names);
        return n == 0 ? (free(*names), err_set("%s: no class names", o->class_names_file)) : n;
    }
    const char *const *own = o->source == CONVERT_SOURCE_FASHION_MNIST ? fashion_classes : digit_classes;
    *names = xcalloc(10, sizeof(char *));
    for (int c = 0; c < 10; c++) (*names)[c] = xstrdup(own[c]);
    return 10;
}

int sources_read_idx(const convert_options *o, source_list *out) {
    if (strcmp(o->split, "train") && strcmp(o->split, "test"))
        return err_set("--split must be 'train' or 'test', not '%s'", o->split);
    char *images_path = split_file(o->input, o->split, "images"), *labels_path = split_file(o->input, o->split, "labels");
    uint32_t isz[3] = {0}, lsz[1] = {0};
    size_t icount = 0, lcount = 0;
    uint8_t *labels = NULL;
    char **names = NULL;
    out->pixels = read_idx(images_path, 3, isz, &icount);
    if (out->pixels) labels = read_idx(labels_path, 1, lsz, &lcount);
    int rc = labels ? 0 : -1;
    if (rc == 0 && lsz[0] != isz[0])
        rc = err_set("%s: %u labels for %u images in %s", labels_path, lsz[0], isz[0], images_path);
    int n_names = rc == 0 ? idx_class_names(o, &names) : 0;
    if (n_names < 0) rc = -1;
    const char *prefix = o->source == CONVERT_SOURCE_FASHION_MNIST ? "fashion-mnist" : "mnist";
    if (rc == 0)
        rc = sources_add_labelled_pixels(o, out, prefix, labels_path, (const char *const *)names, n_names, labels,
                                         isz[0], (int)isz[2], (int)isz[1], 1);
    if (n_names > 0) fs_free_lines(names, n_names);
    free(labels);
    free(images_path);
    free(labels_path);
    return rc;
}
