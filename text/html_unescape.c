#include "text/html_unescape.h"

#include <stdbool.h>
#include <stdlib.h>

typedef struct {
    const char *name;  // ASCII, with the ';' when the reference has one
    uint32_t cps[2];   // the replacement: one or two code points (0 = none)
} html_entity;

typedef struct {
    uint32_t from, to;
} html_charref_fix;

#include "text/html_entities.inc"

enum { HTML_NAME_MAX = 32, HTML_MAX_CODEPOINT = 0x10FFFF };

// Compares an entity name with the code points s[0..n) as strings (names are ASCII, so any
// non-ASCII code point sorts after every name character, which is what a bytewise sort gives).
static int name_compare(const char *name, const uint32_t *s, size_t n) {
    size_t i = 0;
    for (; i < n && name[i]; i++)
        if ((uint32_t)(unsigned char)name[i] != s[i]) return (unsigned char)name[i] < s[i] ? -1 : 1;
    if (i == n) return name[i] ? 1 : 0;
    return -1;
}

static const html_entity *entity_find(const uint32_t *s, size_t n) {
    size_t lo = 0, hi = sizeof html_named_entities / sizeof html_named_entities[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_compare(html_named_entities[mid].name, s, n);
        if (c == 0) return &html_named_entities[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static size_t put_entity(const html_entity *e, uint32_t *out) {
    out[0] = e->cps[0];
    if (!e->cps[1]) return 1;
    out[1] = e->cps[1];
    return 2;
}

static bool is_invalid_codepoint(uint32_t c) {
    size_t lo = 0, hi = sizeof html_invalid_codepoints / sizeof html_invalid_codepoints[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (html_invalid_codepoints[mid] == c) return true;
        if (html_invalid_codepoints[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

// What a numeric reference to `num` becomes (Python's _replace_charref): 0 or 1 code point.
static size_t put_numeric(uint32_t num, uint32_t *out) {
    for (size_t i = 0; i < sizeof html_invalid_charrefs / sizeof html_invalid_charrefs[0]; i++)
        if (html_invalid_charrefs[i].from == num) {
            out[0] = html_invalid_charrefs[i].to;
            return 1;
        }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > HTML_MAX_CODEPOINT) {
        out[0] = 0xFFFD;
        return 1;
    }
    if (is_invalid_codepoint(num)) return 0;
    out[0] = num;
    return 1;
}

static int digit_value(uint32_t c, bool hex) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (hex && c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (hex && c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
}

// Matches `#[0-9]+;?` or `#[xX][0-9a-fA-F]+;?` at s (just after '&'). Returns the length matched
// (0: no match) and the value, saturated above the Unicode range.
static size_t match_numeric(const uint32_t *s, size_t n, uint32_t *num) {
    bool hex = n > 1 && (s[1] == 'x' || s[1] == 'X');
    size_t i = hex ? 2 : 1;
    size_t first = i;
    uint64_t v = 0;
    for (int d; i < n && (d = digit_value(s[i], hex)) >= 0; i++) {
        v = v * (hex ? 16 : 10) + (uint64_t)d;
        if (v > HTML_MAX_CODEPOINT) v = HTML_MAX_CODEPOINT + 1;
    }
    if (i == first) return 0;
    if (i < n && s[i] == ';') i++;
    *num = (uint32_t)v;
    return i;
}

static bool is_name_char(uint32_t c) {
    return c != '\t' && c != '\n' && c != '\f' && c != ' ' && c != '<' && c != '&' && c != '#' &&
           c != ';';
}

// Replaces the named reference s[0..len) (after '&'), or copies it back with its '&' when no
// prefix of it is a known name.
static size_t put_named(const uint32_t *s, size_t len, uint32_t *out) {
    const html_entity *e = entity_find(s, len);
    if (e) return put_entity(e, out);
    for (size_t x = len - 1; x >= 2; x--) {
        e = entity_find(s, x);
        if (!e) continue;
        size_t k = put_entity(e, out);
        for (size_t i = x; i < len; i++) out[k++] = s[i];
        return k;
    }
    out[0] = '&';
    for (size_t i = 0; i < len; i++) out[1 + i] = s[i];
    return len + 1;
}

size_t html_unescape(const uint32_t *in, size_t n, uint32_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (in[i] != '&') {
            out[o++] = in[i++];
            continue;
        }
        const uint32_t *s = in + i + 1;
        size_t rest = n - i - 1, len = 0;
        uint32_t num;
        if (rest > 0 && s[0] == '#') {
            len = match_numeric(s, rest, &num);
            if (len) o += put_numeric(num, out + o);
        } else {
            while (len < rest && len < HTML_NAME_MAX && is_name_char(s[len])) len++;
            if (len > 0 && len < rest && s[len] == ';') len++;
            if (len) o += put_named(s, len, out + o);
        }
        if (!len) out[o++] = '&';
        i += 1 + len;
    }
    return o;
}
