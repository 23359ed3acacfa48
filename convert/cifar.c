// The CIFAR source of `clipc shards`: the binary versions as published.
//   CIFAR-10 (cifar-10-batches-bin/): data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin
//   (test), records of <label byte><3072 pixel bytes>; class names in batches.meta.txt.
//   CIFAR-100 (cifar-100-binary/): train.bin, test.bin, records of <coarse label><fine label><3072
//   pixel bytes>; the 100 fine labels are used, named in fine_label_names.txt.
// Pixels are 1024 red, then 1024 green, then 1024 blue bytes of a 32x32 image, rows top to bottom.
// Class names have '_' replaced by ' ' ("aquarium_fish" -> "aquarium fish", CLIP's spelling).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "convert/sources.h"

#define CIFAR_SIDE 32
#define CIFAR_PLANE (CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_IMAGE (3 * CIFAR_PLANE)

typedef struct {
    const char *prefix;      // keys "<prefix>/<split>/<index>"
    const char *names_file;
    int label_byte;          // the label's position in a record
    int record;              // record size in bytes
} cifar_layout;

static const cifar_layout cifar10 = {"cifar10", "batches.meta.txt", 0, 1 + CIFAR_IMAGE};
static const cifar_layout cifar100 = {"cifar100", "fine_label_names.txt", 1, 2 + CIFAR_IMAGE};

static int read_names(const char *dir, const cifar_layout *L, char ***names) {
    char *path = fs_join(dir, L->names_file);
    int n = fs_read_lines(path, names);
    if (n == 0) {
        free(*names);
        n = err_set("%s: no class names", path);
    }
    for (int c = 0; c < n; c++)
        for (char *p = (*names)[c]; *p; p++)
            if (*p == '_') *p = ' ';
    free(path);
    return n;
}

// Appends the records of one batch file: labels, and pixels made interleaved RGB.
static int read_batch(const char *path, const cifar_layout *L, source_list *out, uint8_t **labels, int64_t *n) {
    size_t size = 0;
    uint8_t *bytes = fs_read_all(path, &size);
    if (!bytes) return -1;
    int rc = 0;
    if (size == 0 || size % (size_t)L->record != 0) {
        rc = err_set("%s: %zu bytes is not a whole number of %d-byte CIFAR records", path, size, L->record);
    } else {
        int64_t count = (int64_t)(size / (size_t)L->record);
        out->pixels = xrealloc(out->pixels, (size_t)(*n + count) * CIFAR_IMAGE);
        *labels = xrealloc(*labels, (size_t)(*n + count));
        for (int64_t i = 0; i < count; i++) {
            const uint8_t *rec = bytes + i * L->record, *planes = rec + L->record - CIFAR_IMAGE;
            uint8_t *rgb = out->pixels + (size_t)(*n + i) * CIFAR_IMAGE;
            (*labels)[*n + i] = rec[L->label_byte];
            for (int p = 0; p < CIFAR_PLANE; p++)
                for (int c = 0; c < 3; c++) rgb[3 * p + c] = planes[c * CIFAR_PLANE + p];
        }
        *n += count;
    }
    free(bytes);
    return rc;
}

// The batch files of a split, in published order.
static int split_files(const convert_options *o, const cifar_layout *L, char *files[5]) {
    bool train = !strcmp(o->split, "train");
    if (!train && strcmp(o->split, "test")) return err_set("--split must be 'train' or 'test', not '%s'", o->split);
    if (L == &cifar100) {
        files[0] = fs_join(o->input, train ? "train.bin" : "test.bin");
        return 1;
    }
    if (!train) {
        files[0] = fs_join(o->input, "test_batch.bin");
        return 1;
    }
    for (int b = 0; b < 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        files[b] = fs_join(o->input, name);
    }
    return 5;
}

int sources_read_cifar(const convert_options *o, source_list *out) {
    const cifar_layout *L = o->source == CONVERT_SOURCE_CIFAR100 ? &cifar100 : &cifar10;
    char *files[5] = {0}, **names = NULL;
    int n_files = split_files(o, L, files);
    if (n_files < 0) return -1;
    int n_names = read_names(o->input, L, &names), rc = n_names < 0 ? -1 : 0;
    uint8_t *labels = NULL;
    int64_t n = 0;
    for (int f = 0; rc == 0 && f < n_files; f++) rc = read_batch(files[f], L, out, &labels, &n);
    if (rc == 0)
        rc = sources_add_labelled_pixels(o, out, L->prefix, o->input, (const char *const *)names, n_names, labels, n,
                                         CIFAR_SIDE, CIFAR_SIDE, 3);
    for (int f = 0; f < n_files; f++) free(files[f]);
    if (n_names > 0) fs_free_lines(names, n_names);
    free(labels);
    return rc;
}
