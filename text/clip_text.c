#include "text/clip_text.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "common/error.h"
#include "text/html_unescape.h"

enum { REPLACEMENT_CHAR = 0xFFFD, CAPITAL_SIGMA = 0x3A3, SMALL_SIGMA = 0x3C3, FINAL_SIGMA = 0x3C2 };

void clip_text_buf_init(clip_text_buf *buf) {
    buf->cp[0] = buf->inline_cp[0];
    buf->cp[1] = buf->inline_cp[1];
    buf->cap = CLIP_TEXT_INLINE;
}

void clip_text_buf_free(clip_text_buf *buf) {
    if (buf->cp[0] != buf->inline_cp[0]) {
        free(buf->cp[0]);
        free(buf->cp[1]);
    }
    clip_text_buf_init(buf);
}

static void buf_reserve(clip_text_buf *buf, size_t cap) {
    if (cap <= buf->cap) return;
    clip_text_buf_free(buf);
    buf->cp[0] = xmalloc(cap * sizeof(uint32_t));
    buf->cp[1] = xmalloc(cap * sizeof(uint32_t));
    buf->cap = cap;
}

// --- UTF-8 -----------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence at s[0..len) (1..4) and its code point, or 0 with *bad set to
// the length of the maximal invalid subpart (what one U+FFFD replaces).
static size_t utf8_sequence(const unsigned char *s, size_t len, uint32_t *cp, size_t *bad) {
    unsigned char b = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
        need = 1, *cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2, *cp = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3, *cp = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        *cp = (*cp << 6) | (s[i] & 0x3F);
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

size_t clip_text_decode_utf8(const char *text, size_t len, uint32_t *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] < 0x80) {
            out[n++] = s[i++];
            continue;
        }
        size_t bad = 0, k = utf8_sequence(s + i, len - i, &out[n], &bad);
        if (!k) out[n] = REPLACEMENT_CHAR, k = bad;
        n++;
        i += k;
    }
    return n;
}

size_t clip_text_utf8(const uint32_t *cp, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c < 0x80) {
            out[k++] = (char)c;
        } else if (c < 0x800) {
            out[k++] = (char)(0xC0 | (c >> 6));
            out[k++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[k++] = (char)(0xE0 | (c >> 12));
            out[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[k++] = (char)(0xF0 | (c >> 18));
            out[k++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return k;
}

// --- Character classes -----------------------------------------------------------------------

static utf8proc_category_t category(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

// Python's str.isspace(): bidirectional class WS, B or S, or category Zs.
static bool py_isspace(uint32_t c) {
    if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    int bidi = utf8proc_get_property((utf8proc_int32_t)c)->bidi_class;
    return bidi == UTF8PROC_BIDI_CLASS_WS || bidi == UTF8PROC_BIDI_CLASS_B ||
           bidi == UTF8PROC_BIDI_CLASS_S || category(c) == UTF8PROC_CATEGORY_ZS;
}

// The regex module's \s (Unicode White_Space): str.isspace() less the four information separators
// U+001C..U+001F, which are spaces for Python's str but not for the pattern.
static bool regex_space(uint32_t c) { return py_isspace(c) && !(c >= 0x1C && c <= 0x1F); }

static bool is_letter_category(utf8proc_category_t k) {
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

static bool is_number_category(utf8proc_category_t k) {
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

// What a character can start or continue in CLIP's pattern under IGNORECASE. The regex module
// matches [\p{L}] and [\p{N}] by the character's own category, but excludes from the negated
// class [^\s\p{L}\p{N}] every character one of whose case forms is a letter or number: such a
// character (U+0345 COMBINING YPOGEGRAMMENI, upper case U+0399) matches no alternative and is
// skipped like a space.
typedef enum { CLASS_SPACE, CLASS_LETTER, CLASS_NUMBER, CLASS_OTHER, CLASS_NONE } char_class;

static bool is_letter_or_number(utf8proc_int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    return is_letter_category(k) || is_number_category(k);
}

static char_class classify(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CLASS_LETTER;
        if (c >= '0' && c <= '9') return CLASS_NUMBER;
        return regex_space(c) ? CLASS_SPACE : CLASS_OTHER;
    }
    if (regex_space(c)) return CLASS_SPACE;
    utf8proc_category_t k = category(c);
    if (is_letter_category(k)) return CLASS_LETTER;
    if (is_number_category(k)) return CLASS_NUMBER;
    utf8proc_int32_t x = (utf8proc_int32_t)c;
    if (is_letter_or_number(utf8proc_toupper(x)) || is_letter_or_number(utf8proc_tolower(x)) ||
        is_letter_or_number(utf8proc_totitle(x)))
        return CLASS_NONE;
    return CLASS_OTHER;
}

// --- Lower-casing (Python's str.lower()) ------------------------------------------------------

#include "text/python_cased.inc"

// Python's Cased property: letters with case, characters with a case mapping, and the few cased
// characters without either that utf8proc cannot tell (generated from Python).
static bool is_cased(uint32_t c) {
    utf8proc_category_t k = category(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT)
        return true;
    utf8proc_int32_t x = (utf8proc_int32_t)c;
    if (utf8proc_tolower(x) != x || utf8proc_toupper(x) != x) return true;
    for (size_t i = 0; i < sizeof python_cased_unmapped / sizeof python_cased_unmapped[0]; i++)
        if (c >= python_cased_unmapped[i][0] && c <= python_cased_unmapped[i][1]) return true;
    return false;
}

// Python's Case_Ignorable property: categories Mn, Me, Cf, Lm, Sk, and the characters whose
// Word_Break property is MidLetter, MidNumLet or Single_Quote (utf8proc has no word-break data;
// this is the whole list in Unicode 15).
static bool is_case_ignorable(uint32_t c) {
    static const uint32_t word_break_mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                              0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                              0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    switch (category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return true;
    default:
        break;
    }
    for (size_t i = 0; i < sizeof word_break_mid / sizeof word_break_mid[0]; i++)
        if (word_break_mid[i] == c) return true;
    return false;
}

// Python's handle_capital_sigma(): a capital sigma preceded by a cased letter and not followed by
// one (case-ignorable characters skipped both ways) lower-cases to the final form.
static uint32_t lower_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(s[j - 1])) j--;
    if (j == 0 || !is_cased(s[j - 1])) return SMALL_SIGMA;
    for (j = i + 1; j < n && is_case_ignorable(s[j]); j++) {
    }
    return j == n || !is_cased(s[j]) ? FINAL_SIGMA : SMALL_SIGMA;
}

// Full lower-case of s[0..n) into out (room for 2n): simple mappings from utf8proc, plus the two
// special cases Python applies (U+0130 becomes "i" + U+0307, and the final sigma).
static size_t lower_text(const uint32_t *s, size_t n, uint32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i];
        if (c < 0x80) {
            out[k++] = c >= 'A' && c <= 'Z' ? c + 32 : c;
        } else if (c == 0x130) {
            out[k++] = 'i';
            out[k++] = 0x307;
        } else if (c == CAPITAL_SIGMA) {
            out[k++] = lower_sigma(s, n, i);
        } else {
            out[k++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
    }
    return k;
}

// --- Cleaning ----------------------------------------------------------------------------------

static bool has_ampersand(const uint32_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] == '&') return true;
    return false;
}

// strip(), then every run of \s to one space, in place. (The second strip() of OpenCLIP changes
// nothing: the ends are no longer spaces and \s is a subset of str.isspace().)
static size_t strip_and_collapse(uint32_t *s, size_t n) {
    size_t begin = 0, end = n;
    while (begin < end && py_isspace(s[begin])) begin++;
    while (end > begin && py_isspace(s[end - 1])) end--;
    size_t k = 0;
    bool in_run = false;
    for (size_t i = begin; i < end; i++) {
        bool space = regex_space(s[i]);
        if (!space) s[k++] = s[i];
        else if (!in_run) s[k++] = ' ';
        in_run = space;
    }
    return k;
}

const uint32_t *clip_text_clean(clip_text_buf *buf, const char *text, size_t len, size_t *n) {
    buf_reserve(buf, 2 * len + 1);
    uint32_t *a = buf->cp[0], *b = buf->cp[1];
    size_t m = clip_text_decode_utf8(text, len, a);
    for (int pass = 0; pass < 2 && has_ampersand(a, m); pass++) {
        m = html_unescape(a, m, b);
        uint32_t *t = a;
        a = b, b = t;
    }
    m = strip_and_collapse(a, m);
    *n = lower_text(a, m, b);
    return b;
}

char *clip_text_clean_utf8(const char *text, size_t len) {
    clip_text_buf buf;
    clip_text_buf_init(&buf);
    size_t n;
    const uint32_t *cp = clip_text_clean(&buf, text, len, &n);
    char *out = xmalloc(4 * n + 1);
    out[clip_text_utf8(cp, n, out)] = '\0';
    clip_text_buf_free(&buf);
    return out;
}

// --- Splitting -------------------------------------------------------------------------------

// IGNORECASE equality with an ASCII letter or symbol: compares simple case folds, so that U+017F
// (long s) matches 's' as the regex module does.
static bool equals_ignore_case(uint32_t c, char ascii) {
    if (c == (uint32_t)ascii) return true;
    if (c < 0x80) return (c | 0x20) == (uint32_t)ascii && ascii >= 'a' && ascii <= 'z';
    utf8proc_int32_t folded = utf8proc_tolower(utf8proc_toupper((utf8proc_int32_t)c));
    return folded == ascii;
}

static bool matches_at(const uint32_t *cp, size_t n, size_t pos, const char *lit) {
    size_t len = strlen(lit);
    if (n - pos < len) return false;
    for (size_t i = 0; i < len; i++)
        if (!equals_ignore_case(cp[pos + i], lit[i])) return false;
    return true;
}

// Length of the special token or contraction at pos (0 when none) and, for specials, its kind.
static size_t match_literal(const uint32_t *cp, size_t n, size_t pos, clip_piece *kind) {
    static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    *kind = CLIP_PIECE_WORD;
    if (cp[pos] == '<') {
        // A special token spelt with a case variant (U+017F for 's') is matched by the pattern
        // but is not the special token: it is byte-pair encoded like any other piece.
        static const char *const specials[] = {"<start_of_text>", "<end_of_text>"};
        for (int i = 0; i < 2; i++) {
            size_t len = strlen(specials[i]);
            if (!matches_at(cp, n, pos, specials[i])) continue;
            bool exact = true;
            for (size_t j = 0; j < len; j++) exact &= cp[pos + j] == (uint32_t)specials[i][j];
            if (exact) *kind = i == 0 ? CLIP_PIECE_SOT : CLIP_PIECE_EOT;
            return len;
        }
    } else if (cp[pos] == '\'') {
        for (size_t i = 0; i < sizeof contractions / sizeof contractions[0]; i++)
            if (matches_at(cp, n, pos, contractions[i])) return strlen(contractions[i]);
    }
    return 0;
}

clip_piece clip_text_next_piece(const uint32_t *cp, size_t n, size_t *pos, size_t *start) {
    size_t i = *pos;
    char_class k = CLASS_SPACE;
    while (i < n && ((k = classify(cp[i])) == CLASS_SPACE || k == CLASS_NONE)) i++;
    *start = i;
    if (i == n) {
        *pos = n;
        return CLIP_PIECE_END;
    }
    clip_piece kind;
    size_t lit = match_literal(cp, n, i, &kind);
    if (lit) {
        *pos = i + lit;
        return kind;
    }
    size_t j = i + 1;
    if (k != CLASS_NUMBER)
        while (j < n && classify(cp[j]) == k) j++;
    *pos = j;
    return CLIP_PIECE_WORD;
}
