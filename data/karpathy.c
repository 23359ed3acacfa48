// The Karpathy-split source of `clipc shards`: the retrieval sets (COCO, Flickr30k, Flickr8k) as
// Karpathy's dataset_*.json publishes them:
//   {"images": [{"filepath": "val2014", "filename": "COCO_val2014_000000391895.jpg",
//                "split": "test", "sentences": [{"raw": "A man with a red helmet ...", ...}, ...]}, ...],
//    "dataset": "coco"}
// ("filepath" only in COCO's). Each image of the chosen split (--split; "train+restval" joins
// several) gives one item per sentence, all keyed by the image's path, so that retrieval sees one
// image with its (usually five) captions. Captions are the "raw" sentences without surrounding
// white space. Image files are found under --image-root (else the current folder).
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/fsutil.h"
#include "data/sources.h"

// True when split is one of the '+'-separated names of wanted.
static bool split_wanted(const char *wanted, const char *split) {
    size_t len = strlen(split);
    for (const char *p = wanted; p;) {
        const char *plus = strchr(p, '+');
        size_t n = plus ? (size_t)(plus - p) : strlen(p);
        if (n == len && !strncmp(p, split, len)) return true;
        p = plus ? plus + 1 : NULL;
    }
    return false;
}

static const char *string_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

// A copy of s without leading and trailing white space.
static char *trimmed(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) n--;
    char *out = xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

// Adds one item per sentence of image i (already of the wanted split).
static int add_image(const convert_options *o, const cJSON *image, int i, source_list *out) {
    const char *filename = string_field(image, "filename"), *filepath = string_field(image, "filepath");
    const cJSON *sentences = cJSON_GetObjectItemCaseSensitive(image, "sentences");
    if (!filename) return err_set("%s: images[%d] has no \"filename\" string", o->input, i);
    if (!cJSON_IsArray(sentences)) return err_set("%s: images[%d] has no \"sentences\" array", o->input, i);
    char *key = filepath ? fs_join(filepath, filename) : xstrdup(filename);
    char *path = o->image_root ? fs_join(o->image_root, key) : xstrdup(key);
    int rc = 0, k = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, sentences) {
        const char *raw = string_field(s, "raw");
        if (!raw) {
            rc = err_set("%s: images[%d].sentences[%d] has no \"raw\" string", o->input, i, k);
            break;
        }
        char *caption = trimmed(raw);
        sources_add(out, path, caption, key, -1);
        free(caption);
        k++;
    }
    if (rc == 0 && k == 0) sources_add_error(out, path, key, "no sentences");
    free(key);
    free(path);
    return rc;
}

int sources_read_karpathy(const convert_options *o, source_list *out) {
    size_t size = 0;
    char *text = (char *)fs_read_all(o->input, &size);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, size);
    int rc = 0;
    if (!root) rc = err_set("%s: not valid JSON (at byte %ld)", o->input, (long)(cJSON_GetErrorPtr() - text));
    const cJSON *images = root ? cJSON_GetObjectItemCaseSensitive(root, "images") : NULL;
    if (rc == 0 && !cJSON_IsArray(images)) rc = err_set("%s: no \"images\" array (not a Karpathy-split file)", o->input);
    int i = 0, in_split = 0;
    const cJSON *image;
    for (image = rc == 0 ? images->child : NULL; image && rc == 0; image = image->next, i++) {
        const char *split = string_field(image, "split");
        if (!split) {
            rc = err_set("%s: images[%d] has no \"split\" string", o->input, i);
        } else if (split_wanted(o->split, split)) {
            in_split++;
            rc = add_image(o, image, i, out);
        }
    }
    if (rc == 0 && in_split == 0) rc = err_set("%s: no image of split '%s' (--split)", o->input, o->split);
    cJSON_Delete(root);
    free(text);
    return rc;
}
