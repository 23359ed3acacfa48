// The class-folder source of `clipc shards`: root/<class>/<image>, classes in sorted folder order
// (torchvision's ImageFolder), class names from the folder names or from a mapping file, so that
// the ImageNet variants whose folders are a subset of the 1000 synsets (ImageNet-R, -A) get the
// subset's names in index order. Folders named by number (ImageNet-V2's 0..999) are labelled by
// that number. The items are shuffled with the seed so that shards mix the classes.
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/rng.h"
#include "convert/sources.h"

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    const char *exts[] = {".jpg", ".jpeg", ".png", ".webp"};
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(dot, exts[i])) return true;
    return false;
}

// Sorted entries of a folder that are folders (want_dirs) or image files.
static int list_entries(const char *dir, bool want_dirs, char ***names) {
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, by_name);
    if (n < 0) return err_errno(dir);
    int k = 0;
    *names = xcalloc((size_t)(n ? n : 1), sizeof(char *));
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        char *full = fs_join(dir, name);
        bool keep = name[0] != '.' && (want_dirs ? fs_is_dir(full) : !fs_is_dir(full) && is_image_name(name));
        if (keep) (*names)[k++] = xstrdup(name);
        free(full);
        free(ents[i]);
    }
    free(ents);
    return k;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

// The name a mapping line gives to folder `folder` ("n01440764 tench, Tinca tinca"), or NULL.
static const char *mapped_name(char **lines, int n, const char *folder) {
    size_t len = strlen(folder);
    for (int i = 0; i < n; i++)
        if (!strncmp(lines[i], folder, len) && (lines[i][len] == ' ' || lines[i][len] == '\t')) {
            const char *name = lines[i] + len;
            while (*name == ' ' || *name == '\t') name++;
            return name;
        }
    return NULL;
}

// Folders named by class index ("0" .. "999", ImageNet-V2's layout): every name is a decimal number.
static bool all_numeric(char **folders, int n) {
    for (int i = 0; i < n; i++)
        if (strspn(folders[i], "0123456789") != strlen(folders[i]) || strlen(folders[i]) > 6) return false;
    return true;
}

// Numbered folders: label = the number; names one per line in index order, else the numbers.
static int numeric_classes(const convert_options *o, char **folders, int n, char **lines, int n_lines,
                           source_list *out, int *labels) {
    int max = 0;
    for (int i = 0; i < n; i++) max = (labels[i] = atoi(folders[i])) > max ? labels[i] : max;
    if (o->class_names_file && max >= n_lines)
        return err_set("%s: %d class names, but there is a class folder '%d'", o->class_names_file, n_lines, max);
    out->n_classes = o->class_names_file ? n_lines : max + 1;
    out->class_names = xcalloc((size_t)out->n_classes, sizeof(char *));
    for (int c = 0; c < out->n_classes; c++) {
        char number[16];
        snprintf(number, sizeof number, "%d", c);
        out->class_names[c] = xstrdup(o->class_names_file ? lines[c] : number);
    }
    return 0;
}

// Named folders: label = position in sorted order; names from the folders, a 'folder name'
// mapping or one name per line.
static int named_classes(const convert_options *o, char **folders, int n, char **lines, int n_lines,
                         source_list *out, int *labels) {
    bool mapping = o->class_names_file != NULL;
    for (int i = 0; i < n && mapping; i++) mapping = mapped_name(lines, n_lines, folders[i]) != NULL;
    if (o->class_names_file && !mapping && n_lines != n)
        return err_set("%s: %d lines for %d class folders, and not a 'folder name' mapping of every folder "
                       "(first unmapped: '%s')", o->class_names_file, n_lines, n, folders[0]);
    out->n_classes = n;
    out->class_names = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        labels[i] = i;
        const char *name = !o->class_names_file ? folders[i] : mapping ? mapped_name(lines, n_lines, folders[i]) : lines[i];
        out->class_names[i] = xstrdup(name);
    }
    return 0;
}

static int read_class_names(const convert_options *o, char **folders, int n, source_list *out, int *labels) {
    char **lines = NULL;
    int n_lines = o->class_names_file ? fs_read_lines(o->class_names_file, &lines) : 0;
    if (n_lines < 0) return -1;
    int rc = all_numeric(folders, n) ? numeric_classes(o, folders, n, lines, n_lines, out, labels)
                                     : named_classes(o, folders, n, lines, n_lines, out, labels);
    fs_free_lines(lines, n_lines);
    return rc;
}

static void shuffle_items(source_list *l, uint64_t seed) {
    rng r = {rng_mix(seed, 0x464f4c44)};
    for (int64_t i = l->n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
        source_item t = l->items[i];
        l->items[i] = l->items[j], l->items[j] = t;
    }
}

static int add_class(const convert_options *o, const char *folder, int label, source_list *out) {
    char *dir = fs_join(o->input, folder);
    char **files = NULL;
    int n = list_entries(dir, false, &files);
    for (int i = 0; i < n; i++) {
        char *path = fs_join(dir, files[i]), *key = fs_join(folder, files[i]);
        char *caption = sources_caption_for_class(out->class_names[label], key, o->seed);
        sources_add(out, path, caption, key, label);
        free(caption), free(key), free(path);
    }
    if (n >= 0) free_names(files, n);
    free(dir);
    return n < 0 ? -1 : 0;
}

int sources_read_folders(const convert_options *o, source_list *out) {
    char **folders = NULL;
    int n = list_entries(o->input, true, &folders);
    if (n < 0) return -1;
    int *labels = xcalloc((size_t)(n ? n : 1), sizeof(int));
    int rc = n == 0 ? err_set("%s: no class folders inside", o->input) : read_class_names(o, folders, n, out, labels);
    for (int i = 0; rc == 0 && i < n; i++) rc = add_class(o, folders[i], labels[i], out);
    free_names(folders, n);
    free(labels);
    if (rc == 0) shuffle_items(out, o->seed);
    return rc;
}
