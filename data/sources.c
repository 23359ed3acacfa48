#include "data/sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/rng.h"

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

void sources_free(source_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->items[i].path);
        free(l->items[i].caption);
        free(l->items[i].key);
    }
    for (int i = 0; i < l->n_classes; i++) free(l->class_names[i]);
    free(l->items);
    free(l->class_names);
    free(l->pixels);
    memset(l, 0, sizeof *l);
}
