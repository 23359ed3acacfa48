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
#include "common/fsutil.h"
#include "convert/sources.h"

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

// ---- the "images" array, one element at a time ----------------------------------------------------
// COCO's file is 140 MB: parsed as one document (cJSON) it takes over 1.5 GB, so the text is scanned
// for the top-level "images" array and each image object is parsed on its own.

typedef struct {
    const char *p, *begin, *end;
} json_scan;

static void skip_space(json_scan *s) {
    while (s->p < s->end && isspace((unsigned char)*s->p)) s->p++;
}

static bool skip_string(json_scan *s) {
    for (s->p++; s->p < s->end; s->p++) {
        if (*s->p == '\\') {
            s->p++;
        } else if (*s->p == '"') {
            s->p++;
            return true;
        }
    }
    return false;
}

// Moves past one value (object, array, string or scalar); false when it does not end.
static bool skip_value(json_scan *s) {
    if (s->p < s->end && *s->p == '"') return skip_string(s);
    if (s->p < s->end && *s->p != '{' && *s->p != '[') {
        while (s->p < s->end && !strchr(",}] \t\r\n", *s->p)) s->p++;
        return true;
    }
    for (int depth = 0; s->p < s->end;) {
        if (*s->p == '"') {
            if (!skip_string(s)) return false;
            continue;
        }
        depth += *s->p == '{' || *s->p == '[' ? 1 : *s->p == '}' || *s->p == ']' ? -1 : 0;
        s->p++;
        if (depth == 0) return true;
    }
    return false;
}

// Expects c after white space and moves past it.
static bool expect(json_scan *s, char c) {
    skip_space(s);
    return s->p < s->end && *s->p++ == c;
}

// Moves to the first element of the top-level "images" array. 1, 0 (no such array) or -1 (bad JSON).
static int find_images(json_scan *s) {
    if (!expect(s, '{')) return -1;
    for (;;) {
        skip_space(s);
        if (s->p < s->end && *s->p == '}') return 0;
        const char *key = s->p + 1;
        if (s->p >= s->end || *s->p != '"' || !skip_string(s)) return -1;
        bool images = s->p - key == 7 && !strncmp(key, "images", 6);  // the quotes' content
        if (!expect(s, ':')) return -1;
        skip_space(s);
        if (images) return s->p < s->end && *s->p++ == '[' ? 1 : 0;
        if (!skip_value(s)) return -1;
        skip_space(s);
        if (s->p < s->end && *s->p == ',') s->p++;
    }
}

// Adds the items of one image object (already parsed) when it belongs to the wanted split.
static int add_if_wanted(const convert_options *o, const cJSON *image, int i, int *in_split, source_list *out) {
    const char *split = string_field(image, "split");
    if (!split) return err_set("%s: images[%d] has no \"split\" string", o->input, i);
    if (!split_wanted(o->split, split)) return 0;
    (*in_split)++;
    return add_image(o, image, i, out);
}

static int read_images(const convert_options *o, json_scan *s, source_list *out) {
    int found = find_images(s), in_split = 0, rc = 0;
    if (found <= 0)
        return found < 0 ? err_set("%s: not valid JSON (near byte %ld)", o->input, (long)(s->p - s->begin))
                         : err_set("%s: no \"images\" array (not a Karpathy-split file)", o->input);
    for (int i = 0; rc == 0; i++) {
        skip_space(s);
        if (s->p < s->end && *s->p == ']') break;
        const char *element = s->p;
        if (!skip_value(s)) return err_set("%s: not valid JSON (images[%d] does not end)", o->input, i);
        cJSON *image = cJSON_ParseWithLength(element, (size_t)(s->p - element));
        rc = cJSON_IsObject(image) ? add_if_wanted(o, image, i, &in_split, out)
                                   : err_set("%s: images[%d] is not a JSON object", o->input, i);
        cJSON_Delete(image);
        skip_space(s);
        if (rc == 0 && s->p < s->end && *s->p == ',') s->p++;
        else if (rc == 0 && (s->p >= s->end || *s->p != ']'))
            rc = err_set("%s: not valid JSON (near byte %ld)", o->input, (long)(s->p - s->begin));
    }
    if (rc == 0 && in_split == 0) rc = err_set("%s: no image of split '%s' (--split)", o->input, o->split);
    return rc;
}

int sources_read_karpathy(const convert_options *o, source_list *out) {
    size_t size = 0;
    char *text = (char *)fs_read_all(o->input, &size);
    if (!text) return -1;
    json_scan s = {text, text, text + size};
    int rc = read_images(o, &s, out);
    free(text);
    return rc;
}
