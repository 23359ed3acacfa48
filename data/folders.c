// The class-folder source of `clipc shards`: root/<class>/<image>, classes in sorted folder order
// (torchvision's ImageFolder), class names from the folder names or from a mapping file. The
// items are shuffled with the seed so that shards mix the classes.
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "data/fsutil.h"
#include "data/rng.h"
#include "data/sources.h"

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

// Splits a text into its non-empty lines (trailing '\r' removed); the text is modified in place.
static int split_lines(char *text, char ***lines) {
    int n = 0, cap = 16;
    *lines = xmalloc((size_t)cap * sizeof(char *));
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = '\0';
        if (!len) continue;
        if (n == cap) *lines = xrealloc(*lines, (size_t)(cap *= 2) * sizeof(char *));
        (*lines)[n++] = line;
    }
    return n;
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

static int read_class_names(const convert_options *o, char **folders, int n, source_list *out) {
    out->n_classes = n;
    out->class_names = xcalloc((size_t)n, sizeof(char *));
    if (!o->class_names_file) {
        for (int i = 0; i < n; i++) out->class_names[i] = xstrdup(folders[i]);
        return 0;
    }
    char *text = (char *)fs_read_all(o->class_names_file, NULL);
    if (!text) return -1;
    char **lines = NULL;
    int n_lines = split_lines(text, &lines), rc = 0;
    bool mapping = true;
    for (int i = 0; i < n && mapping; i++) mapping = mapped_name(lines, n_lines, folders[i]) != NULL;
    if (!mapping && n_lines != n)
        rc = err_set("%s: %d lines for %d class folders, and not a 'folder name' mapping of every folder "
                     "(first unmapped: '%s')", o->class_names_file, n_lines, n, folders[0]);
    for (int i = 0; rc == 0 && i < n; i++)
        out->class_names[i] = xstrdup(mapping ? mapped_name(lines, n_lines, folders[i]) : lines[i]);
    free(lines);
    free(text);
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
    int rc = n == 0 ? err_set("%s: no class folders inside", o->input) : read_class_names(o, folders, n, out);
    for (int i = 0; rc == 0 && i < n; i++) rc = add_class(o, folders[i], i, out);
    free_names(folders, n);
    if (rc == 0) shuffle_items(out, o->seed);
    return rc;
}
