#include "text/bpe_train.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "text/byte_alphabet.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"

enum { BASE_SYMBOLS = 2 * BYTE_ALPHABET_SIZE };

// A growable array of int32.
typedef struct {
    int32_t *v;
    int n, cap;
} ivec;

static void ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 4;
        a->v = xrealloc(a->v, (size_t)a->cap * sizeof(int32_t));
    }
    a->v[a->n++] = x;
}

// Open-addressing index from byte strings to ids; the strings live with the caller.
typedef struct {
    int32_t *slots;  // -1: empty
    size_t cap;
} str_index;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

typedef struct {
    char *text;  // as merges files spell it
    size_t len;
} symbol;

typedef struct {
    char *bytes;  // the piece's UTF-8
    size_t len;
    int64_t count;
    ivec sym;     // current symbols
    int stamp;    // last merge step that rewrote it
} word;

typedef struct {
    int32_t a, b;
    int64_t count;
    bool merged;
    ivec words;  // words that held the pair at some point (may repeat or be stale)
} pair;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_item;

struct bpe_trainer {
    word *words;
    int n_words, cap_words;
    str_index word_ix;
    symbol *syms;
    int n_syms, cap_syms;
    str_index sym_ix;
    pair *pairs;
    int n_pairs, cap_pairs;
    int32_t *pair_slots;  // open addressing over (a, b), -1 empty
    size_t pair_cap;
    heap_item *heap;
    int heap_n, heap_cap;
    ivec merges;          // pair index of each merge, in order
    clip_text_buf text_buf;
};

// --- Indexes -----------------------------------------------------------------------------------

static const char *word_key(void *ctx, int32_t id, size_t *len) {
    bpe_trainer *t = ctx;
    *len = t->words[id].len;
    return t->words[id].bytes;
}

static const char *sym_key(void *ctx, int32_t id, size_t *len) {
    bpe_trainer *t = ctx;
    *len = t->syms[id].len;
    return t->syms[id].text;
}

// The slot holding s, or the empty slot where it belongs.
static size_t str_index_slot(const str_index *ix, const char *s, size_t n,
                             const char *(*key)(void *, int32_t, size_t *), void *ctx) {
    size_t i = hash_str(s, n) & (ix->cap - 1);
    for (; ix->slots[i] >= 0; i = (i + 1) & (ix->cap - 1)) {
        size_t klen;
        const char *k = key(ctx, ix->slots[i], &klen);
        if (klen == n && memcmp(k, s, n) == 0) break;
    }
    return i;
}

static void str_index_grow(str_index *ix, size_t need, const char *(*key)(void *, int32_t, size_t *),
                           void *ctx) {
    if (2 * need <= ix->cap) return;
    str_index old = *ix;
    ix->cap = old.cap ? 2 * old.cap : 1024;
    ix->slots = xmalloc(ix->cap * sizeof(int32_t));
    memset(ix->slots, 0xFF, ix->cap * sizeof(int32_t));
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slots[i] < 0) continue;
        size_t len;
        const char *k = key(ctx, old.slots[i], &len);
        ix->slots[str_index_slot(ix, k, len, key, ctx)] = old.slots[i];
    }
    free(old.slots);
}

static int32_t symbol_intern(bpe_trainer *t, char *text, size_t len) {
    str_index_grow(&t->sym_ix, (size_t)t->n_syms + 1, sym_key, t);
    size_t slot = str_index_slot(&t->sym_ix, text, len, sym_key, t);
    if (t->sym_ix.slots[slot] >= 0) {
        free(text);
        return t->sym_ix.slots[slot];
    }
    if (t->n_syms == t->cap_syms) {
        t->cap_syms = t->cap_syms ? 2 * t->cap_syms : 1024;
        t->syms = xrealloc(t->syms, (size_t)t->cap_syms * sizeof(symbol));
    }
    t->syms[t->n_syms] = (symbol){text, len};
    t->sym_ix.slots[slot] = t->n_syms;
    return t->n_syms++;
}

static size_t pair_hash(int32_t a, int32_t b) {
    return (size_t)((((uint64_t)(uint32_t)a << 32) | (uint32_t)b) * 0x9E3779B97F4A7C15ull >> 24);
}

static size_t pair_slot(const bpe_trainer *t, int32_t a, int32_t b) {
    size_t i = pair_hash(a, b) & (t->pair_cap - 1);
    while (t->pair_slots[i] >= 0 && !(t->pairs[t->pair_slots[i]].a == a && t->pairs[t->pair_slots[i]].b == b))
        i = (i + 1) & (t->pair_cap - 1);
    return i;
}

static void pair_table_grow(bpe_trainer *t) {
    if (2 * (size_t)(t->n_pairs + 1) <= t->pair_cap) return;
    free(t->pair_slots);
    t->pair_cap = t->pair_cap ? 2 * t->pair_cap : 4096;
    t->pair_slots = xmalloc(t->pair_cap * sizeof(int32_t));
    memset(t->pair_slots, 0xFF, t->pair_cap * sizeof(int32_t));
    for (int p = 0; p < t->n_pairs; p++) t->pair_slots[pair_slot(t, t->pairs[p].a, t->pairs[p].b)] = p;
}

static int32_t pair_get(bpe_trainer *t, int32_t a, int32_t b) {
    pair_table_grow(t);
    size_t slot = pair_slot(t, a, b);
    if (t->pair_slots[slot] >= 0) return t->pair_slots[slot];
    if (t->n_pairs == t->cap_pairs) {
        t->cap_pairs = t->cap_pairs ? 2 * t->cap_pairs : 4096;
        t->pairs = xrealloc(t->pairs, (size_t)t->cap_pairs * sizeof(pair));
    }
    t->pairs[t->n_pairs] = (pair){a, b, 0, false, {0}};
    t->pair_slots[slot] = t->n_pairs;
    return t->n_pairs++;
}

// --- Max-heap of pair counts (stale entries are corrected when they reach the top) ------------

static bool heap_before(const bpe_trainer *t, heap_item x, heap_item y) {
    if (x.count != y.count) return x.count > y.count;
    const pair *p = &t->pairs[x.pair], *q = &t->pairs[y.pair];
    return p->a != q->a ? p->a < q->a : p->b < q->b;
}

static void heap_push(bpe_trainer *t, int32_t p) {
    if (t->heap_n == t->heap_cap) {
        t->heap_cap = t->heap_cap ? 2 * t->heap_cap : 4096;
        t->heap = xrealloc(t->heap, (size_t)t->heap_cap * sizeof(heap_item));
    }
    int i = t->heap_n++;
    heap_item x = {t->pairs[p].count, p};
    while (i > 0 && heap_before(t, x, t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = x;
}

static heap_item heap_pop(bpe_trainer *t) {
    heap_item top = t->heap[0], last = t->heap[--t->heap_n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= t->heap_n) break;
        if (c + 1 < t->heap_n && heap_before(t, t->heap[c + 1], t->heap[c])) c++;
        if (!heap_before(t, t->heap[c], last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (t->heap_n > 0) t->heap[i] = last;
    return top;
}

// --- Counting ----------------------------------------------------------------------------------

bpe_trainer *bpe_trainer_init(void) {
    bpe_trainer *t = xcalloc(1, sizeof *t);
    clip_text_buf_init(&t->text_buf);
    for (int id = 0; id < BASE_SYMBOLS; id++) {
        char *text = xmalloc(8);
        size_t len = byte_alphabet_token_text(id, text);
        CLIPC_ASSERT(symbol_intern(t, text, len) == id);
    }
    return t;
}

void bpe_trainer_free(bpe_trainer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_words; i++) {
        free(t->words[i].bytes);
        free(t->words[i].sym.v);
    }
    for (int i = 0; i < t->n_syms; i++) free(t->syms[i].text);
    for (int i = 0; i < t->n_pairs; i++) free(t->pairs[i].words.v);
    free(t->words);
    free(t->word_ix.slots);
    free(t->syms);
    free(t->sym_ix.slots);
    free(t->pairs);
    free(t->pair_slots);
    free(t->heap);
    free(t->merges.v);
    clip_text_buf_free(&t->text_buf);
    free(t);
}

static void count_piece(bpe_trainer *t, const char *bytes, size_t len) {
    str_index_grow(&t->word_ix, (size_t)t->n_words + 1, word_key, t);
    size_t slot = str_index_slot(&t->word_ix, bytes, len, word_key, t);
    if (t->word_ix.slots[slot] >= 0) {
        t->words[t->word_ix.slots[slot]].count++;
        return;
    }
    if (t->n_words == t->cap_words) {
        t->cap_words = t->cap_words ? 2 * t->cap_words : 1024;
        t->words = xrealloc(t->words, (size_t)t->cap_words * sizeof(word));
    }
    word *w = &t->words[t->n_words];
    *w = (word){xmalloc(len), len, 1, {0}, -1};
    memcpy(w->bytes, bytes, len);
    for (size_t i = 0; i < len; i++)
        ivec_push(&w->sym, byte_alphabet_id((unsigned char)bytes[i]) + (i + 1 == len ? BYTE_ALPHABET_SIZE : 0));
    t->word_ix.slots[slot] = t->n_words++;
}

void bpe_trainer_add_text(bpe_trainer *t, const char *text, size_t len) {
    size_t n, pos = 0, start;
    const uint32_t *cp = clip_text_clean(&t->text_buf, text, len, &n);
    char *bytes = xmalloc(4 * n + 1);
    clip_piece kind;
    while ((kind = clip_text_next_piece(cp, n, &pos, &start)) != CLIP_PIECE_END)
        if (kind == CLIP_PIECE_WORD) count_piece(t, bytes, clip_text_utf8(cp + start, pos - start, bytes));
    free(bytes);
}

long bpe_trainer_add_file(bpe_trainer *t, const char *path) {
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return errno ? err_errno(path) : err_set("%s: cannot open", path);
    size_t cap = 1 << 16, len = 0;
    char *line = xmalloc(cap);
    long lines = 0;
    int c;
    while ((c = gzgetc(gz)) >= 0) {
        if (c != '\n') {
            if (len == cap) line = xrealloc(line, cap *= 2);
            line[len++] = (char)c;
            continue;
        }
        bpe_trainer_add_text(t, line, len);
        lines++;
        len = 0;
    }
    int code;
    const char *why = gzerror(gz, &code);
    if (code != Z_OK && code != Z_STREAM_END) {
        err_set("%s: line %ld: corrupt or truncated gzip data (%s)", path, lines + 1, why);
        lines = -1;
    } else if (len > 0) {
        bpe_trainer_add_text(t, line, len);
        lines++;
    }
    free(line);
    gzclose(gz);
    return lines;
}

// --- Learning ----------------------------------------------------------------------------------

// Adds (sign +1) or removes (-1) the adjacent pairs of word w, each weighted by the word's count.
static void count_word_pairs(bpe_trainer *t, int32_t w, int sign) {
    const word *wd = &t->words[w];
    for (int i = 0; i + 1 < wd->sym.n; i++) {
        int32_t p = pair_get(t, wd->sym.v[i], wd->sym.v[i + 1]);
        t->pairs[p].count += sign * t->words[w].count;
        if (sign > 0) {
            ivec_push(&t->pairs[p].words, w);
            heap_push(t, p);
        }
    }
}

static bool word_has_pair(const word *w, int32_t a, int32_t b) {
    for (int i = 0; i + 1 < w->sym.n; i++)
        if (w->sym.v[i] == a && w->sym.v[i + 1] == b) return true;
    return false;
}

static void merge_in_word(word *w, int32_t a, int32_t b, int32_t merged) {
    int k = 0;
    for (int i = 0; i < w->sym.n; i++) {
        if (i + 1 < w->sym.n && w->sym.v[i] == a && w->sym.v[i + 1] == b) {
            w->sym.v[k++] = merged;
            i++;
        } else {
            w->sym.v[k++] = w->sym.v[i];
        }
    }
    w->sym.n = k;
}

// The pair to merge next, or -1 when none occurs min_count times.
static int32_t best_pair(bpe_trainer *t, long min_count) {
    while (t->heap_n > 0) {
        heap_item top = heap_pop(t);
        const pair *p = &t->pairs[top.pair];
        if (p->merged || p->count <= 0) continue;
        if (top.count != p->count) {
            heap_push(t, top.pair);
            continue;
        }
        return p->count >= min_count ? top.pair : -1;
    }
    return -1;
}

static void apply_merge(bpe_trainer *t, int32_t p) {
    int32_t a = t->pairs[p].a, b = t->pairs[p].b;
    size_t len = t->syms[a].len + t->syms[b].len;
    char *text = xmalloc(len);
    memcpy(text, t->syms[a].text, t->syms[a].len);
    memcpy(text + t->syms[a].len, t->syms[b].text, t->syms[b].len);
    int32_t merged = symbol_intern(t, text, len);
    t->pairs[p].merged = true;
    ivec_push(&t->merges, p);
    int step = t->merges.n;
    ivec words = t->pairs[p].words;  // new pairs may be pushed to it while we walk it
    t->pairs[p].words = (ivec){0};
    for (int i = 0; i < words.n; i++) {
        int32_t w = words.v[i];
        if (t->words[w].stamp == step || !word_has_pair(&t->words[w], a, b)) continue;
        t->words[w].stamp = step;
        count_word_pairs(t, w, -1);
        merge_in_word(&t->words[w], a, b, merged);
        count_word_pairs(t, w, +1);
    }
    free(words.v);
}

int bpe_trainer_learn(bpe_trainer *t, int n_merges, long min_count) {
    if (t->merges.n == 0 && t->n_pairs == 0)
        for (int32_t w = 0; w < t->n_words; w++) count_word_pairs(t, w, +1);
    for (int m = 0; m < n_merges; m++) {
        int32_t p = best_pair(t, min_count < 1 ? 1 : min_count);
        if (p < 0) break;
        apply_merge(t, p);
    }
    return t->merges.n;
}

int bpe_trainer_n_merges(const bpe_trainer *t) { return t->merges.n; }

// --- Writing -----------------------------------------------------------------------------------

static int write_merges(const bpe_trainer *t, gzFile gz) {
    if (gzprintf(gz, "#version: 0.2 %s (clipc tokenizer train, %d merges)\n", TOKENIZER_TRAINER_MARK,
                 t->merges.n) <= 0)
        return -1;
    for (int m = 0; m < t->merges.n; m++) {
        const pair *p = &t->pairs[t->merges.v[m]];
        const symbol *a = &t->syms[p->a], *b = &t->syms[p->b];
        if (gzwrite(gz, a->text, (unsigned)a->len) <= 0 || gzputc(gz, ' ') < 0 ||
            gzwrite(gz, b->text, (unsigned)b->len) <= 0 || gzputc(gz, '\n') < 0)
            return -1;
    }
    return 0;
}

static int write_merges_file(const char *tmp, void *trainer) {
    errno = 0;
    gzFile gz = gzopen(tmp, "wb9");
    int rc = gz ? write_merges(trainer, gz) : -1;
    if (gz && gzclose(gz) != Z_OK) rc = -1;
    if (rc == 0) return 0;
    return errno ? err_set("cannot write: %s", strerror(errno)) : err_set("cannot write");
}

int bpe_trainer_write(const bpe_trainer *t, const char *path) {
    return atomic_file_write(path, write_merges_file, (void *)t);
}
