#include "convert/pattern.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"

typedef struct {
    char **items;
    int n, cap;
} string_list;

static void list_push(string_list *l, char *s) {
    if (l->n == l->cap) l->items = xrealloc(l->items, (size_t)(l->cap = l->cap ? 2 * l->cap : 16) * sizeof(char *));
    l->items[l->n++] = s;
}

// pre + mid + post, as a new string.
static char *concat3(const char *pre, size_t pre_len, const char *mid, size_t mid_len, const char *post) {
    size_t post_len = strlen(post);
    char *out = xmalloc(pre_len + mid_len + post_len + 1);
    memcpy(out, pre, pre_len);
    memcpy(out + pre_len, mid, mid_len);
    memcpy(out + pre_len + mid_len, post, post_len + 1);
    return out;
}

// The index of the '}' closing the '{' at open, or -1.
static long closing_brace(const char *s, long open) {
    int depth = 0;
    for (long i = open; s[i]; i++) {
        depth += s[i] == '{' ? 1 : s[i] == '}' ? -1 : 0;
        if (depth == 0) return i;
    }
    return -1;
}

// braceexpand pads when a bound other than "0" or "-0" starts with "0" or "-0".
static bool zero_led(const char *bound) {
    return (bound[0] == '0' && bound[1]) || (!strncmp(bound, "-0", 2) && bound[2]);
}

// Parses "N..M" or "N..M..S" (the whole of [s, s + len)); returns true with the bounds.
static bool parse_range(const char *s, size_t len, long *lo, long *hi, long *step, int *width) {
    char buf[64];
    if (len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char a[24], b[24];
    int consumed = 0;
    *step = 1;
    if (sscanf(buf, "%23[-0-9]..%23[-0-9]%n", a, b, &consumed) != 2) return false;
    if (buf[consumed] && (sscanf(buf + consumed, "..%ld%n", step, &consumed) != 1 || *step == 0)) return false;
    char *end_a, *end_b;
    *lo = strtol(a, &end_a, 10), *hi = strtol(b, &end_b, 10);
    if (*end_a || *end_b) return false;
    bool padded = zero_led(a) || zero_led(b);
    *width = padded ? (int)(strlen(a) > strlen(b) ? strlen(a) : strlen(b)) : 0;
    if (*step < 0) *step = -*step;
    return true;
}

static int expand(const char *pattern, const char *s, string_list *out);

// Expands pre + each alternative of the brace body + post.
static int expand_body(const char *pattern, const char *s, long open, long close, string_list *out) {
    const char *body = s + open + 1, *post = s + close + 1;
    size_t body_len = (size_t)(close - open - 1);
    long lo, hi, step;
    int width;
    if (parse_range(body, body_len, &lo, &hi, &step, &width)) {
        if ((hi > lo ? hi - lo : lo - hi) / step >= PATTERN_MAX_PATHS)
            return err_set("pattern '%s': more than %d paths", pattern, PATTERN_MAX_PATHS);
        int rc = 0;
        for (long v = lo; rc == 0 && (lo <= hi ? v <= hi : v >= hi); v += lo <= hi ? step : -step) {
            char number[32];
            snprintf(number, sizeof number, "%0*ld", width, v);
            char *next = concat3(s, (size_t)open, number, strlen(number), post);
            rc = expand(pattern, next, out);
            free(next);
        }
        return rc;
    }
    bool list = false;
    for (long i = 0, depth = 0; i < (long)body_len; i++) {
        depth += body[i] == '{' ? 1 : body[i] == '}' ? -1 : 0;
        list = list || (depth == 0 && body[i] == ',');
    }
    if (!list)
        return err_set("pattern '%s': '{%.*s}' is neither a list {a,b} nor a range {N..M}", pattern, (int)body_len, body);
    int rc = 0;
    for (long start = 0, i = 0, depth = 0; rc == 0 && i <= (long)body_len; i++) {
        if (i < (long)body_len) depth += body[i] == '{' ? 1 : body[i] == '}' ? -1 : 0;
        if (i < (long)body_len && !(depth == 0 && body[i] == ',')) continue;
        char *next = concat3(s, (size_t)open, body + start, (size_t)(i - start), post);
        rc = expand(pattern, next, out);
        free(next);
        start = i + 1;
    }
    return rc;
}

static int expand(const char *pattern, const char *s, string_list *out) {
    if (out->n >= PATTERN_MAX_PATHS) return err_set("pattern '%s': more than %d paths", pattern, PATTERN_MAX_PATHS);
    const char *open = strchr(s, '{'), *close = strchr(s, '}');
    if (!open && !close) {
        list_push(out, xstrdup(s));
        return 0;
    }
    long close_at = open ? closing_brace(s, open - s) : -1;
    if (!open || close_at < 0 || (close && close < open)) return err_set("pattern '%s': unbalanced braces", pattern);
    return expand_body(pattern, s, open - s, close_at, out);
}

int pattern_expand(const char *spec, char ***paths) {
    string_list out = {0};
    char **patterns = NULL;
    int n = args_split_list(spec, &patterns), rc = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        rc = patterns[i][0] ? expand(patterns[i], patterns[i], &out) : err_set("'%s': an empty pattern in the '::' list", spec);
    args_free_list(patterns, n);
    if (rc != 0) {
        pattern_free(out.items, out.n);
        return -1;
    }
    *paths = out.items;
    return out.n;
}

void pattern_free(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}
