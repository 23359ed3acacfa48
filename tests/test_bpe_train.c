// Tests the BPE trainer: it learns merges from a small corpus (plain and gzip give the same file),
// the tokenizer loads them with the right vocabulary size, every caption tokenizes and decodes back
// to its cleaned pieces, training is deterministic, and bad paths are reported.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/error.h"
#include "text/bpe_train.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"

enum { CAPTIONS = 400, MERGES = 300, BIG_CONTEXT = 4096 };

static const char *const WORDS[] = {
    "a", "photo", "of", "the", "cat", "dog", "sitting", "on", "red", "car", "Café", "straße",
    "ΟΔΟΣ", "東京", "🐱", "it's", "we'll", "&amp;", "&lt;b&gt;", "2024", "x\xff" "y", "naïve",
    "rock'n'roll", "--", "!!", "e-mail", "<end_of_text>", "ÅNGSTRÖM", "\xc4\xb0stanbul", "½",
};

static char dir[64], corpus_txt[128], corpus_gz[128], merges_a[128], merges_b[128];
static char *captions[CAPTIONS];

static int setup(void **state) {
    (void)state;
    strcpy(dir, "/tmp/clipc_bpe_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(corpus_txt, sizeof corpus_txt, "%s/corpus.txt", dir);
    snprintf(corpus_gz, sizeof corpus_gz, "%s/corpus.txt.gz", dir);
    snprintf(merges_a, sizeof merges_a, "%s/a.txt.gz", dir);
    snprintf(merges_b, sizeof merges_b, "%s/b.txt.gz", dir);
    FILE *txt = fopen(corpus_txt, "w");
    gzFile gz = gzopen(corpus_gz, "wb");
    unsigned seed = 11;
    const int n_words = (int)(sizeof WORDS / sizeof WORDS[0]);
    for (int i = 0; i < CAPTIONS; i++) {
        captions[i] = xcalloc(1, 512);
        for (int w = 0, n = 3 + (int)(rand_r(&seed) % 10); w < n; w++) {
            strcat(captions[i], WORDS[rand_r(&seed) % n_words]);
            strcat(captions[i], rand_r(&seed) % 5 ? " " : "  \t");
        }
        fprintf(txt, "%s\n", captions[i]);
        gzprintf(gz, "%s\n", captions[i]);
    }
    fclose(txt);
    gzclose(gz);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < CAPTIONS; i++) free(captions[i]);
    remove(corpus_txt);
    remove(corpus_gz);
    remove(merges_a);
    remove(merges_b);
    rmdir(dir);
    return 0;
}

static int train(const char *corpus, const char *out) {
    bpe_trainer *t = bpe_trainer_init();
    assert_int_equal(bpe_trainer_add_file(t, corpus), CAPTIONS);
    int learned = bpe_trainer_learn(t, MERGES, 2);
    assert_int_equal(bpe_trainer_n_merges(t), learned);
    assert_int_equal(bpe_trainer_write(t, out), 0);
    bpe_trainer_free(t);
    return learned;
}

static char *read_gz(const char *path) {
    gzFile gz = gzopen(path, "rb");
    assert_non_null(gz);
    char *text = xmalloc(1 << 20);
    int n = gzread(gz, text, (1 << 20) - 1);
    assert_true(n > 0);
    text[n] = '\0';
    gzclose(gz);
    return text;
}

static void test_deterministic_and_gzip_input(void **state) {
    (void)state;
    int learned = train(corpus_txt, merges_a);
    assert_true(learned > 50 && learned <= MERGES);
    assert_int_equal(train(corpus_gz, merges_b), learned);
    char *a = read_gz(merges_a), *b = read_gz(merges_b);
    assert_string_equal(a, b);
    assert_true(strncmp(a, "#version", 8) == 0);
    assert_non_null(strstr(strtok(a, "\n"), TOKENIZER_TRAINER_MARK));
    free(a);
    free(b);
}

// The ids decode to the caption's cleaned pieces, each followed by a space.
static void check_round_trip(const tokenizer *tok, const char *caption) {
    int64_t *ids = xmalloc(BIG_CONTEXT * sizeof(int64_t));
    int n = tokenizer_encode(tok, caption, BIG_CONTEXT, ids);
    assert_true(n >= 2 && n < BIG_CONTEXT);
    for (int i = 1; i < n - 1; i++) assert_true(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok));
    char *decoded = tokenizer_decode(tok, ids, n);

    clip_text_buf buf;
    clip_text_buf_init(&buf);
    size_t len, pos = 0, start;
    const uint32_t *cp = clip_text_clean(&buf, caption, strlen(caption), &len);
    char *expected = xcalloc(1, 8 * len + 16), *end = expected;
    clip_piece kind;
    while ((kind = clip_text_next_piece(cp, len, &pos, &start)) != CLIP_PIECE_END) {
        if (kind != CLIP_PIECE_WORD) continue;  // decode drops special tokens
        end += clip_text_utf8(cp + start, pos - start, end);
        *end++ = ' ';
    }
    assert_string_equal(decoded, expected);
    clip_text_buf_free(&buf);
    free(expected);
    free(decoded);
    free(ids);
}

static void test_round_trip(void **state) {
    (void)state;
    int learned = train(corpus_txt, merges_a);
    tokenizer *tok = tokenizer_load(merges_a, 0);
    assert_non_null(tok);
    assert_int_equal(tokenizer_n_merges(tok), learned);
    assert_int_equal(tokenizer_vocab_size(tok), 512 + learned + 2);
    assert_int_equal(tokenizer_sot(tok), 512 + learned);
    assert_int_equal(tokenizer_eot(tok), 512 + learned + 1);
    long bytes = 0, tokens = 0;
    int64_t *ids = xmalloc(BIG_CONTEXT * sizeof(int64_t));
    for (int i = 0; i < CAPTIONS; i++) {
        check_round_trip(tok, captions[i]);
        bytes += (long)strlen(captions[i]);
        tokens += tokenizer_encode(tok, captions[i], BIG_CONTEXT, ids) - 2;
    }
    free(ids);
    assert_true(tokens * 3 < bytes);  // the merges compress the corpus they were learnt from
    tokenizer_free(tok);
}

static void test_errors(void **state) {
    (void)state;
    bpe_trainer *t = bpe_trainer_init();
    char missing[160], bad_out[160];
    snprintf(missing, sizeof missing, "%s/none.txt", dir);
    assert_int_equal(bpe_trainer_add_file(t, missing), -1);
    assert_non_null(strstr(err_msg(), missing));
    assert_int_equal(bpe_trainer_learn(t, 10, 2), 0);  // nothing to learn from
    snprintf(bad_out, sizeof bad_out, "%s/no/such/dir/m.gz", dir);
    assert_int_equal(bpe_trainer_write(t, bad_out), -1);
    assert_non_null(strstr(err_msg(), bad_out));
    bpe_trainer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_gzip_input),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
