#include "text/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/error.h"
#include "text/byte_alphabet.h"
#include "text/clip_text.h"

enum {
    BASE_TOKENS = 2 * BYTE_ALPHABET_SIZE,  // bytes, then bytes with </w>
    CACHE_SLOTS = 1 << 15,                 // bounded word cache: 2 MiB
    CACHE_LOCKS = 256,
    CACHE_KEY_MAX = 26,  // longer words (UTF-8 bytes) are not cached
    CACHE_IDS_MAX = 8,   // nor words of more tokens
    STACK_BYTES = 1024,
};

static const char END_OF_WORD[] = "</w>";

// One merge: (a, b) -> merged, applied in increasing rank.
typedef struct {
    int32_t a, b;  // a < 0: empty slot
    int32_t rank, merged;
} pair_slot;

typedef struct {
    uint32_t hash;
    uint8_t key_len, n_ids;  // key_len 0: empty
    char key[CACHE_KEY_MAX];
    int32_t ids[CACHE_IDS_MAX];
} cache_slot;

typedef struct {
    cache_slot *slots;                     // (CACHE_SLOTS)
    pthread_mutex_t locks[CACHE_LOCKS];    // slot i is guarded by locks[i % CACHE_LOCKS]
} word_cache;

struct tokenizer {
    int n_merges, vocab_size;
    int32_t byte_id[BYTE_ALPHABET_SIZE];
    pair_slot *pairs;    // (pair_mask + 1) open-addressing table
    size_t pair_mask;
    char *token_bytes;   // the bytes each id stands for, `</w>` written out
    size_t *token_off;   // (vocab_size - 2 + 1): id i is token_bytes[token_off[i] .. token_off[i+1])
    word_cache *cache;
};

// --- Hashing -----------------------------------------------------------------------------------

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static size_t pair_hash(int32_t a, int32_t b) {
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    k *= 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 29);
}

static size_t table_size_for(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

static const pair_slot *pair_find(const tokenizer *tok, int32_t a, int32_t b) {
    for (size_t i = pair_hash(a, b) & tok->pair_mask;; i = (i + 1) & tok->pair_mask) {
        const pair_slot *s = &tok->pairs[i];
        if (s->a < 0) return NULL;
        if (s->a == a && s->b == b) return s;
    }
}

// Later duplicates replace earlier ones, as in OpenCLIP's dict(zip(merges, range(...))).
static void pair_put(tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    size_t i = pair_hash(a, b) & tok->pair_mask;
    while (tok->pairs[i].a >= 0 && !(tok->pairs[i].a == a && tok->pairs[i].b == b))
        i = (i + 1) & tok->pair_mask;
    tok->pairs[i] = (pair_slot){a, b, rank, merged};
}

// --- Loading -----------------------------------------------------------------------------------

static size_t count_lines(const char *s, size_t n) {
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
    return lines;
}

// Reads a gzip (or plain) text file whole. The error names the line where corrupt data starts.
static char *read_gzip_text(const char *path, size_t *len) {
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        if (errno) err_errno(path);
        else err_set("%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *data = xmalloc(cap);
    int got;
    do {
        if (cap - n < (1 << 16)) data = xrealloc(data, cap *= 2);
        got = gzread(gz, data + n, 1 << 16);
        if (got > 0) n += (size_t)got;
    } while (got > 0);
    int code;
    const char *why = gzerror(gz, &code);  // a truncated stream reads as Z_BUF_ERROR, not -1
    if (got < 0 || code != Z_OK) {
        size_t skip = strlen(path);  // zlib's message starts with "<path>: "
        if (strncmp(why, path, skip) == 0 && strncmp(why + skip, ": ", 2) == 0) why += skip + 2;
        err_set("%s: line %zu: corrupt or truncated gzip data (%s)", path, count_lines(data, n), why);
        free(data);
        gzclose(gz);
        return NULL;
    }
    gzclose(gz);
    *len = n;
    return data;
}

typedef struct {
    const char *a, *b;
    size_t a_len, b_len;
} merge_line;

static bool is_field_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

// Splits a line into exactly two whitespace-separated symbols (Python's str.split()).
static bool split_merge(const char *s, size_t n, merge_line *m) {
    const char *field[3];
    size_t flen[3];
    int k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && is_field_space(s[i])) i++;
        if (i == n) break;
        if (k == 3) return false;
        field[k] = s + i;
        while (i < n && !is_field_space(s[i])) i++;
        flen[k] = (size_t)(s + i - field[k]);
        k++;
    }
    if (k != 2) return false;
    *m = (merge_line){field[0], field[1], flen[0], flen[1]};
    return true;
}

// Token text (as in merges files) -> id; for duplicated texts the last id, as OpenCLIP's encoder.
typedef struct {
    int32_t *slots;  // -1: empty
    size_t mask;
    const char *const *text;
    const size_t *len;
} text_index;

static int32_t text_index_find(const text_index *ix, const char *s, size_t n) {
    for (size_t i = hash_bytes(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t id = ix->slots[i];
        if (id < 0) return -1;
        if (ix->len[id] == n && memcmp(ix->text[id], s, n) == 0) return id;
    }
}

static void text_index_put(text_index *ix, int32_t id) {
    size_t i = hash_bytes(ix->text[id], ix->len[id]) & ix->mask;
    for (; ix->slots[i] >= 0; i = (i + 1) & ix->mask) {
        int32_t old = ix->slots[i];
        if (ix->len[old] == ix->len[id] && memcmp(ix->text[old], ix->text[id], ix->len[id]) == 0)
            break;
    }
    ix->slots[i] = id;
}

typedef struct {
    const char *path;
    char *data;
    size_t data_len;
    merge_line *merges;
    size_t *merge_lineno;
    int n_merges;
    bool trainer_file;
} merges_file;

// Reads the version line and the merge lines; takes `want` merges (<= 0: the default rule).
static int merges_file_read(merges_file *f, int want) {
    f->data = read_gzip_text(f->path, &f->data_len);
    if (!f->data) return -1;
    const char *s = f->data, *end = f->data + f->data_len;
    const char *eol = memchr(s, '\n', (size_t)(end - s));
    if (!eol) eol = end;
    if (!memmem(s, (size_t)(eol - s), "#version", 8))
        return err_set("%s: line 1: no '#version' line: not a BPE merges file", f->path);
    f->trainer_file = memmem(s, (size_t)(eol - s), TOKENIZER_TRAINER_MARK,
                             strlen(TOKENIZER_TRAINER_MARK)) != NULL;
    size_t cap = 1024, lineno = 1;
    f->merges = xmalloc(cap * sizeof *f->merges);
    f->merge_lineno = xmalloc(cap * sizeof *f->merge_lineno);
    f->n_merges = 0;
    int limit = want > 0 ? want : f->trainer_file ? INT_MAX : TOKENIZER_CLIP_MERGES;
    for (s = eol + 1; s < end && f->n_merges < limit; s = eol + 1) {
        lineno++;
        eol = memchr(s, '\n', (size_t)(end - s));
        if (!eol) eol = end;
        if (eol == s && eol + 1 >= end) break;  // the final newline
        if ((size_t)f->n_merges == cap) {
            cap *= 2;
            f->merges = xrealloc(f->merges, cap * sizeof *f->merges);
            f->merge_lineno = xrealloc(f->merge_lineno, cap * sizeof *f->merge_lineno);
        }
        if (!split_merge(s, (size_t)(eol - s), &f->merges[f->n_merges]))
            return err_set("%s: line %zu: expected two symbols separated by a space", f->path,
                           lineno);
        f->merge_lineno[f->n_merges++] = lineno;
    }
    if (want > 0 && f->n_merges < want)
        return err_set("%s: has %d merges, fewer than the %d asked for", f->path, f->n_merges, want);
    return 0;
}

static void merges_file_free(merges_file *f) {
    free(f->data);
    free(f->merges);
    free(f->merge_lineno);
}

// Converts token texts (byte alphabet) to the bytes they stand for.
static int build_token_bytes(tokenizer *tok, char **text, size_t *len, const merges_file *f) {
    int n = tok->vocab_size - 2;
    size_t total = 0, longest = 0;
    for (int i = 0; i < n; i++) {
        total += len[i];
        if (len[i] > longest) longest = len[i];
    }
    tok->token_bytes = xmalloc(total + 1);
    tok->token_off = xmalloc((size_t)(n + 1) * sizeof(size_t));
    uint32_t *cps = xmalloc((longest + 1) * sizeof(uint32_t));
    size_t k = 0;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        tok->token_off[i] = k;
        size_t m = clip_text_decode_utf8(text[i], len[i], cps);
        for (size_t c = 0; c < m && rc == 0; c++) {
            int byte = byte_alphabet_byte(cps[c]);
            if (byte < 0)
                rc = err_set("%s: line %zu: a symbol has a character outside CLIP's byte alphabet",
                             f->path, f->merge_lineno[i - BASE_TOKENS]);
            tok->token_bytes[k++] = (char)byte;
        }
    }
    tok->token_off[n] = k;
    free(cps);
    return rc;
}

static int build_vocab(tokenizer *tok, const merges_file *f) {
    int n = BASE_TOKENS + f->n_merges;
    char **text = xmalloc((size_t)n * sizeof(char *));
    size_t *len = xmalloc((size_t)n * sizeof(size_t));
    char *base = xmalloc(BASE_TOKENS * 8);
    for (int i = 0; i < BASE_TOKENS; i++) {
        text[i] = base + 8 * i;
        len[i] = byte_alphabet_token_text(i, text[i]);
    }
    for (int r = 0; r < f->n_merges; r++) {
        const merge_line *m = &f->merges[r];
        text[BASE_TOKENS + r] = xmalloc(m->a_len + m->b_len);
        memcpy(text[BASE_TOKENS + r], m->a, m->a_len);
        memcpy(text[BASE_TOKENS + r] + m->a_len, m->b, m->b_len);
        len[BASE_TOKENS + r] = m->a_len + m->b_len;
    }
    size_t cap = table_size_for((size_t)n);
    text_index ix = {xmalloc(cap * sizeof(int32_t)), cap - 1, (const char *const *)text, len};
    memset(ix.slots, 0xFF, cap * sizeof(int32_t));
    for (int i = 0; i < n; i++) text_index_put(&ix, i);

    tok->pair_mask = table_size_for((size_t)f->n_merges) - 1;
    tok->pairs = xmalloc((tok->pair_mask + 1) * sizeof(pair_slot));
    for (size_t i = 0; i <= tok->pair_mask; i++) tok->pairs[i].a = -1;
    int rc = 0;
    for (int r = 0; r < f->n_merges && rc == 0; r++) {
        const merge_line *m = &f->merges[r];
        int32_t a = text_index_find(&ix, m->a, m->a_len), b = text_index_find(&ix, m->b, m->b_len);
        if (a < 0 || b < 0) {
            const char *sym = a < 0 ? m->a : m->b;
            int sym_len = (int)(a < 0 ? m->a_len : m->b_len);
            rc = err_set("%s: line %zu: unknown symbol '%.*s' (neither a byte nor a merge)",
                         f->path, f->merge_lineno[r], sym_len, sym);
            break;
        }
        int32_t merged = text_index_find(&ix, text[BASE_TOKENS + r], len[BASE_TOKENS + r]);
        pair_put(tok, a, b, r, merged);
    }
    if (rc == 0) rc = build_token_bytes(tok, text, len, f);
    for (int r = 0; r < f->n_merges; r++) free(text[BASE_TOKENS + r]);
    free(ix.slots);
    free(base);
    free(text);
    free(len);
    return rc;
}

static word_cache *word_cache_init(void) {
    word_cache *c = xmalloc(sizeof *c);
    c->slots = xcalloc(CACHE_SLOTS, sizeof(cache_slot));
    for (int i = 0; i < CACHE_LOCKS; i++) pthread_mutex_init(&c->locks[i], NULL);
    return c;
}

static void word_cache_free(word_cache *c) {
    if (!c) return;
    for (int i = 0; i < CACHE_LOCKS; i++) pthread_mutex_destroy(&c->locks[i]);
    free(c->slots);
    free(c);
}

tokenizer *tokenizer_load(const char *merges_path, int max_merges) {
    merges_file f = {.path = merges_path};
    tokenizer *tok = xcalloc(1, sizeof *tok);
    if (merges_file_read(&f, max_merges) < 0) goto fail;
    tok->n_merges = f.n_merges;
    tok->vocab_size = BASE_TOKENS + f.n_merges + 2;
    for (unsigned b = 0; b < BYTE_ALPHABET_SIZE; b++) tok->byte_id[b] = byte_alphabet_id((unsigned char)b);
    if (build_vocab(tok, &f) < 0) goto fail;
    tok->cache = word_cache_init();
    merges_file_free(&f);
    return tok;
fail:
    merges_file_free(&f);
    tokenizer_free(tok);
    return NULL;
}

void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    free(tok->pairs);
    free(tok->token_bytes);
    free(tok->token_off);
    word_cache_free(tok->cache);
    free(tok);
}

int tokenizer_vocab_size(const tokenizer *tok) { return tok->vocab_size; }
int tokenizer_n_merges(const tokenizer *tok) { return tok->n_merges; }
int64_t tokenizer_sot(const tokenizer *tok) { return tok->vocab_size - 2; }
int64_t tokenizer_eot(const tokenizer *tok) { return tok->vocab_size - 1; }

// --- Byte-pair encoding ------------------------------------------------------------------------

// OpenCLIP's bpe(): repeatedly merges every occurrence (left to right) of the adjacent pair of
// lowest rank. sym[0..n) holds the word's tokens on entry and on return; returns the new n.
static size_t bpe_merge(const tokenizer *tok, int32_t *sym, size_t n) {
    while (n > 1) {
        const pair_slot *best = NULL;
        for (size_t i = 0; i + 1 < n; i++) {
            const pair_slot *p = pair_find(tok, sym[i], sym[i + 1]);
            if (p && (!best || p->rank < best->rank)) best = p;
        }
        if (!best) break;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && sym[i] == best->a && sym[i + 1] == best->b) {
                sym[k++] = best->merged;
                i++;
            } else {
                sym[k++] = sym[i];
            }
        }
        n = k;
    }
    return n;
}

static bool cache_lookup(word_cache *c, uint32_t h, const char *key, size_t len, int32_t *ids,
                         size_t *n) {
    size_t i = h & (CACHE_SLOTS - 1);
    pthread_mutex_t *lock = &c->locks[i % CACHE_LOCKS];
    pthread_mutex_lock(lock);
    const cache_slot *s = &c->slots[i];
    bool hit = s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0;
    if (hit) {
        *n = s->n_ids;
        memcpy(ids, s->ids, s->n_ids * sizeof(int32_t));
    }
    pthread_mutex_unlock(lock);
    return hit;
}

static void cache_store(word_cache *c, uint32_t h, const char *key, size_t len, const int32_t *ids,
                        size_t n) {
    size_t i = h & (CACHE_SLOTS - 1);
    pthread_mutex_t *lock = &c->locks[i % CACHE_LOCKS];
    pthread_mutex_lock(lock);
    cache_slot *s = &c->slots[i];
    s->hash = h;
    s->key_len = (uint8_t)len;
    s->n_ids = (uint8_t)n;
    memcpy(s->key, key, len);
    memcpy(s->ids, ids, n * sizeof(int32_t));
    pthread_mutex_unlock(lock);
}

// Encodes one piece (UTF-8 bytes) into ids (room for len). Returns the number of ids.
static size_t encode_word(const tokenizer *tok, const char *bytes, size_t len, int32_t *ids) {
    bool cacheable = len <= CACHE_KEY_MAX;
    uint32_t h = 0;
    size_t n;
    if (cacheable) {
        h = hash_bytes(bytes, len);
        if (cache_lookup(tok->cache, h, bytes, len, ids, &n)) return n;
    }
    for (size_t i = 0; i < len; i++) ids[i] = tok->byte_id[(unsigned char)bytes[i]];
    ids[len - 1] += BYTE_ALPHABET_SIZE;
    n = bpe_merge(tok, ids, len);
    if (cacheable && n <= CACHE_IDS_MAX) cache_store(tok->cache, h, bytes, len, ids, n);
    return n;
}

// --- Encoding ----------------------------------------------------------------------------------

// Collects token ids after SOT, up to the point where the context is known to overflow.
typedef struct {
    int64_t *ids;
    int context;
    int count;  // tokens seen, excluding SOT/EOT
} id_sink;

static void sink_put(id_sink *s, int64_t id) {
    if (1 + s->count < s->context) s->ids[1 + s->count] = id;
    s->count++;
}

static bool sink_full(const id_sink *s) { return s->count >= s->context - 1; }

static int sink_finish(const id_sink *s, int64_t sot, int64_t eot) {
    int n = s->count + 2 <= s->context ? s->count + 2 : s->context;
    s->ids[0] = sot;
    s->ids[n - 1] = eot;
    for (int i = n; i < s->context; i++) s->ids[i] = 0;
    return n;
}

int tokenizer_encode_len(const tokenizer *tok, const char *text, size_t len, int context_length,
                         int64_t *ids) {
    if (!tok || !ids || (!text && len)) return err_set("tokenizer_encode: null argument");
    if (context_length < 1)
        return err_set("tokenizer_encode: context length %d is not positive", context_length);
    clip_text_buf buf;
    clip_text_buf_init(&buf);
    size_t n;
    const uint32_t *cp = clip_text_clean(&buf, text ? text : "", len, &n);

    char stack_bytes[STACK_BYTES];
    int32_t stack_ids[STACK_BYTES];
    char *bytes = stack_bytes;
    int32_t *word = stack_ids;
    if (4 * n > STACK_BYTES) {
        bytes = xmalloc(4 * n);
        word = xmalloc(4 * n * sizeof(int32_t));
    }
    id_sink sink = {ids, context_length, 0};
    size_t pos = 0, start;
    clip_piece kind;
    while (!sink_full(&sink) && (kind = clip_text_next_piece(cp, n, &pos, &start)) != CLIP_PIECE_END) {
        if (kind != CLIP_PIECE_WORD) {
            sink_put(&sink, kind == CLIP_PIECE_SOT ? tokenizer_sot(tok) : tokenizer_eot(tok));
            continue;
        }
        size_t nb = clip_text_utf8(cp + start, pos - start, bytes);
        size_t nw = encode_word(tok, bytes, nb, word);
        for (size_t i = 0; i < nw; i++) sink_put(&sink, word[i]);
    }
    if (bytes != stack_bytes) {
        free(bytes);
        free(word);
    }
    clip_text_buf_free(&buf);
    return sink_finish(&sink, tokenizer_sot(tok), tokenizer_eot(tok));
}

int tokenizer_encode(const tokenizer *tok, const char *text, int context_length, int64_t *ids) {
    if (!text) return err_set("tokenizer_encode: null text");
    return tokenizer_encode_len(tok, text, strlen(text), context_length, ids);
}

int tokenizer_encode_batch(const tokenizer *tok, const char *const *texts, int n, int context_length,
                           int64_t *out) {
    for (int i = 0; i < n; i++)
        if (tokenizer_encode(tok, texts[i], context_length, out + (size_t)i * context_length) < 0)
            return err_prefix("text %d", i);
    return 0;
}

// --- Decoding ----------------------------------------------------------------------------------

char *tokenizer_decode(const tokenizer *tok, const int64_t *ids, int n) {
    int64_t sot = tokenizer_sot(tok), eot = tokenizer_eot(tok);
    int end = n;
    while (end > 0 && ids[end - 1] != eot) end--;
    if (end == 0) end = n;  // no EOT: no padding to drop
    size_t total = 0;
    for (int i = 0; i < end; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            err_set("tokenizer_decode: id %lld at %d is outside the vocabulary (%d)",
                    (long long)ids[i], i, tok->vocab_size);
            return NULL;
        }
        if (ids[i] != sot && ids[i] != eot) total += tok->token_off[ids[i] + 1] - tok->token_off[ids[i]];
    }
    char *raw = xmalloc(total + 1);
    size_t k = 0;
    for (int i = 0; i < end; i++) {
        if (ids[i] == sot || ids[i] == eot) continue;
        size_t off = tok->token_off[ids[i]], len = tok->token_off[ids[i] + 1] - off;
        memcpy(raw + k, tok->token_bytes + off, len);
        k += len;
    }
    // `</w>` -> ' ' (both ASCII, so doing it before UTF-8 decoding gives Python's result).
    size_t m = 0;
    for (size_t i = 0; i < k;) {
        if (k - i >= 4 && memcmp(raw + i, END_OF_WORD, 4) == 0) raw[m++] = ' ', i += 4;
        else raw[m++] = raw[i++];
    }
    uint32_t *cp = xmalloc((m + 1) * sizeof(uint32_t));
    size_t ncp = clip_text_decode_utf8(raw, m, cp);
    char *out = xmalloc(4 * ncp + 1);
    out[clip_text_utf8(cp, ncp, out)] = '\0';
    free(cp);
    free(raw);
    return out;
}
