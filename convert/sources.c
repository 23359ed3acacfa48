#include "convert/sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/rng.h"

// Five of OpenAI's ImageNet prompt templates, as OpenCLIP's Fashion-MNIST run used.
static const char *const caption_templates[] = {
    "a photo of a %s.",
    "a blurry photo of a %s.",
    "a black and white photo of the %s.",
    "a low resolution photo of a %s.",
    "a cropped photo of the %s.",
};
#define N_TEMPLATES (int)(sizeof caption_templates / sizeof caption_templates[0])

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

char *sources_caption_for_class(const char *class_name, const char *key, uint64_t seed) {
    const char *t = caption_templates[rng_mix(seed, fnv1a(key)) % N_TEMPLATES];
    size_t n = strlen(t) + strlen(class_name);
    char *out = xmalloc(n);
    snprintf(out, n, t, class_name);
    return out;
}

source_item *sources_add(source_list *l, const char *path, const char *caption, const char *key, int32_t label) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->items = xrealloc(l->items, (size_t)l->cap * sizeof(source_item));
    }
    source_item *it = &l->items[l->n++];
    *it = (source_item){.path = path ? xstrdup(path) : NULL, .caption = xstrdup(caption), .key = xstrdup(key), .label = label};
    return it;
}

void sources_add_error(source_list *l, const char *path, const char *key, const char *reason) {
    sources_add(l, path, "", key, -1)->error = xstrdup(reason);
}

int sources_add_labelled_pixels(const convert_options *o, source_list *out, const char *prefix, const char *what,
                                const char *const *class_names, int n_classes, const uint8_t *labels, int64_t n,
                                int width, int height, int channels) {
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= n_classes) return err_set("%s: label %d of item %lld is not a class", what, labels[i], (long long)i);
    out->n_classes = n_classes;
    out->class_names = xcalloc((size_t)n_classes, sizeof(char *));
    for (int c = 0; c < n_classes; c++) out->class_names[c] = xstrdup(class_names[c]);
    size_t image_bytes = (size_t)width * (size_t)height * (size_t)channels;
    for (int64_t i = 0; i < n; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s/%s/%05lld", prefix, o->split, (long long)i);
        char *caption = sources_caption_for_class(class_names[labels[i]], key, o->seed);
        source_item *it = sources_add(out, NULL, caption, key, labels[i]);
        free(caption);
        it->pixels = out->pixels + (size_t)i * image_bytes;
        it->width = width, it->height = height, it->channels = channels;
    }
    return 0;
}

void sources_free(source_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].caption);
        free(l->items[i].key);
        free(l->items[i].member);
        free(l->items[i].error);
    }
    for (int i = 0; i < l->n_classes; i++) free(l->class_names[i]);
    free(l->items);
    free(l->class_names);
    free(l->pixels);
    memset(l, 0, sizeof *l);
}
