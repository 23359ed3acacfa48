// Tests the CLIP tokenizer beyond the fixture: empty and blank texts, the 76/77/78-id context
// boundaries, literal special tokens, OpenCLIP's cleaning rules (HTML entities, whitespace,
// Unicode lower-casing), Python's replacement of invalid UTF-8, decoding, thread safety with a
// shared word cache, and errors for missing or malformed merges files.
// Usage: test_tokenizer CLIP_MERGES_GZ
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/error.h"
#include "text/tokenizer.h"

enum { CTX = TOKENIZER_DEFAULT_CONTEXT, A_WORD = 320 };  // "a</w>" in CLIP's vocabulary

static const char *vocab_path;
static tokenizer *tok;

static int setup(void **state) {
    (void)state;
    tok = tokenizer_load(vocab_path, 0);
    if (!tok) fprintf(stderr, "setup: %s\n", err_msg());
    return tok ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tokenizer_free(tok);
    return 0;
}

static int encode(const char *text, int64_t *ids) { return tokenizer_encode(tok, text, CTX, ids); }

// The two texts give the same ids.
static void assert_same_ids(const char *a, const char *b) {
    int64_t x[CTX], y[CTX];
    int n = encode(a, x), m = encode(b, y);
    if (n != m || memcmp(x, y, sizeof x) != 0) fail_msg("'%s' and '%s' tokenize differently", a, b);
}

static void assert_different_ids(const char *a, const char *b) {
    int64_t x[CTX], y[CTX];
    int n = encode(a, x), m = encode(b, y);
    if (n == m && memcmp(x, y, sizeof x) == 0) fail_msg("'%s' and '%s' tokenize the same", a, b);
}

static void test_empty_and_blank(void **state) {
    (void)state;
    const char *texts[] = {"", "   ", " \t\n\r\v\f ", "\xc2\xa0\xe3\x80\x80", "\x1c\x1d"};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int64_t ids[CTX];
        assert_int_equal(encode(texts[t], ids), 2);
        assert_int_equal(ids[0], tokenizer_sot(tok));
        assert_int_equal(ids[1], tokenizer_eot(tok));
        for (int i = 2; i < CTX; i++) assert_int_equal(ids[i], 0);
    }
}

// A text of `words` times "a" gives SOT, `words` ids 320, EOT, cut to the context with EOT last.
static void check_a_words(int words) {
    char text[2 * 256];
    assert_true(words < 256);
    text[0] = '\0';
    for (int i = 0; i < words; i++) strcat(text, i ? " a" : "a");
    int64_t ids[CTX];
    int n = encode(text, ids);
    int expect = words + 2 <= CTX ? words + 2 : CTX;
    assert_int_equal(n, expect);
    assert_int_equal(ids[0], tokenizer_sot(tok));
    for (int i = 1; i < n - 1; i++) assert_int_equal(ids[i], A_WORD);
    assert_int_equal(ids[n - 1], tokenizer_eot(tok));
    for (int i = n; i < CTX; i++) assert_int_equal(ids[i], 0);
}

static void test_context_boundaries(void **state) {
    (void)state;
    check_a_words(74);  // 76 ids
    check_a_words(75);  // 77 ids: exactly full
    check_a_words(76);  // 78 ids: cut to 77
    check_a_words(200);
}

static void test_other_context_lengths(void **state) {
    (void)state;
    int64_t ids[8];
    assert_int_equal(tokenizer_encode(tok, "a a a a a a a a a", 1, ids), 1);
    assert_int_equal(ids[0], tokenizer_eot(tok));
    assert_int_equal(tokenizer_encode(tok, "a a a a a a a a a", 3, ids), 3);
    assert_int_equal(ids[0], tokenizer_sot(tok));
    assert_int_equal(ids[1], A_WORD);
    assert_int_equal(ids[2], tokenizer_eot(tok));
    assert_int_equal(tokenizer_encode(tok, "a", 0, ids), -1);
    assert_non_null(strstr(err_msg(), "context length"));
}

static void test_literal_special_tokens(void **state) {
    (void)state;
    int64_t ids[CTX];
    assert_int_equal(encode("a <end_of_text> a", ids), 5);
    assert_int_equal(ids[2], tokenizer_eot(tok));
    assert_int_equal(ids[3], A_WORD);
    assert_same_ids("<END_OF_TEXT>", "<end_of_text>");
    assert_int_equal(encode("<start_of_text>", ids), 3);
    assert_int_equal(ids[1], tokenizer_sot(tok));
    // Spelt with U+017F (long s), the pattern matches it but it is not the special token.
    assert_true(encode("<\xc5\xbftart_of_text>", ids) > 3);
}

static void test_cleaning_rules(void **state) {
    (void)state;
    assert_same_ids("  A   Photo\tOF\n a CAT  ", "a photo of a cat");
    assert_same_ids("&amp;lt;b&amp;gt;", "<b>");          // unescaped twice
    assert_same_ids("&amp;amp;amp;", "& amp ;");         // but only twice
    assert_same_ids("&ampx &notit; &#65;&#x42;", "&x \xc2\xacit; ab");  // no ';', prefixes, numeric
    assert_same_ids("&#128;", "\xe2\x82\xac");            // Windows-1252 fix-up: euro sign
    assert_same_ids("&#x110000;", "\xef\xbf\xbd");        // out of range: U+FFFD
    assert_same_ids("a&#1;b", "ab");                      // forbidden code point: removed
    assert_same_ids("&nosuchentity;", "& nosuchentity ;");
    assert_same_ids("\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82");  // final sigma
    assert_different_ids("\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x83");
    assert_same_ids("\xc4\xb0", "i\xcc\x87");             // U+0130 lower-cases to two code points
    assert_same_ids("a\xcd\x85" "b", "a b");             // U+0345 matches no part of the pattern
    assert_same_ids("it's", "it 's");
    assert_same_ids("x\x1c y", "x \x1c y");               // U+001C is not a \s for the pattern
    assert_same_ids("2024", "2 0 2 4");                   // digits one by one
}

static void test_invalid_utf8(void **state) {
    (void)state;
    assert_same_ids("\xff", "\xef\xbf\xbd");
    assert_same_ids("a\xe2\x82z", "a\xef\xbf\xbdz");                     // truncated: one U+FFFD
    assert_same_ids("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate: three
    assert_same_ids("\xf0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // overlong: three
    int64_t ids[CTX];
    assert_int_equal(tokenizer_encode_len(tok, "a\0b", 3, CTX, ids), 5);  // NUL is punctuation
}

static void test_decode(void **state) {
    (void)state;
    int64_t ids[CTX];
    int n = encode("Hello, World! \xc3\xa9t\xc3\xa9", ids);
    char *text = tokenizer_decode(tok, ids, CTX);  // padding and specials dropped
    assert_non_null(text);
    assert_string_equal(text, "hello , world ! \xc3\xa9t\xc3\xa9 ");
    free(text);
    ids[n - 2] = tokenizer_vocab_size(tok);
    assert_null(tokenizer_decode(tok, ids, n));
    assert_non_null(strstr(err_msg(), "outside the vocabulary"));
}

static void test_batch(void **state) {
    (void)state;
    const char *texts[] = {"a photo of a cat", "", "a a a"};
    int64_t out[3 * CTX], one[CTX];
    assert_int_equal(tokenizer_encode_batch(tok, texts, 3, CTX, out), 0);
    for (int i = 0; i < 3; i++) {
        encode(texts[i], one);
        assert_memory_equal(out + i * CTX, one, sizeof one);
    }
}

// --- Threads -----------------------------------------------------------------------------------

enum { THREAD_TEXTS = 3000, THREADS = 4 };

typedef struct {
    char **texts;
    int64_t *expected;  // (THREAD_TEXTS, CTX)
    int start, mismatches;
} thread_job;

static void *encode_all(void *arg) {
    thread_job *job = arg;
    int64_t ids[CTX];
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < THREAD_TEXTS; k++) {
            int i = (job->start + k) % THREAD_TEXTS;
            if (encode(job->texts[i], ids) < 0 || memcmp(ids, job->expected + (size_t)i * CTX, sizeof ids))
                job->mismatches++;
        }
    return NULL;
}

static void test_threads_share_one_vocabulary(void **state) {
    (void)state;
    // Many distinct words (more than the cache holds), so threads evict each other's entries.
    char **texts = xmalloc(THREAD_TEXTS * sizeof(char *));
    int64_t *expected = xmalloc((size_t)THREAD_TEXTS * CTX * sizeof(int64_t));
    unsigned seed = 7;
    for (int i = 0; i < THREAD_TEXTS; i++) {
        texts[i] = xmalloc(200);
        int len = 0;
        for (int w = 0; w < 12; w++) {
            for (int c = 0, n = 2 + (int)(rand_r(&seed) % 9); c < n; c++)
                texts[i][len++] = (char)('a' + rand_r(&seed) % 26);
            texts[i][len++] = ' ';
        }
        texts[i][len] = '\0';
    }
    tokenizer *fresh = tokenizer_load(vocab_path, 0);
    assert_non_null(fresh);
    for (int i = 0; i < THREAD_TEXTS; i++)
        assert_true(tokenizer_encode(fresh, texts[i], CTX, expected + (size_t)i * CTX) > 0);
    tokenizer_free(fresh);

    pthread_t threads[THREADS];
    thread_job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (thread_job){texts, expected, t * THREAD_TEXTS / THREADS, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, encode_all, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(jobs[t].mismatches, 0);
    }
    for (int i = 0; i < THREAD_TEXTS; i++) free(texts[i]);
    free(texts);
    free(expected);
}

// --- Malformed merges files --------------------------------------------------------------------

static char tmpdir[64];

static char *write_gz(const char *name, const char *content) {
    char *path = xmalloc(strlen(tmpdir) + strlen(name) + 2);
    sprintf(path, "%s/%s", tmpdir, name);
    gzFile gz = gzopen(path, "wb");
    gzwrite(gz, content, (unsigned)strlen(content));
    gzclose(gz);
    return path;
}

static void assert_load_fails(const char *path, const char *needle) {
    assert_null(tokenizer_load(path, 0));
    if (!strstr(err_msg(), path) || !strstr(err_msg(), needle))
        fail_msg("error '%s' should name %s and '%s'", err_msg(), path, needle);
}

static void test_bad_merges_files(void **state) {
    (void)state;
    strcpy(tmpdir, "/tmp/clipc_tok_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char missing[128];
    snprintf(missing, sizeof missing, "%s/none.txt.gz", tmpdir);
    assert_load_fails(missing, "No such file");

    const char *cases[][3] = {
        {"empty.gz", "", "line 1"},
        {"noversion.gz", "i n\nt h\n", "line 1"},
        {"three.gz", "#version: 0.2\ni n\nt h e\n", "line 3"},
        {"unknown.gz", "#version: 0.2\nin t\nxyz q\n", "line 2"},
        {"blank.gz", "#version: 0.2\ni n\n\nt h\n", "line 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_gz(cases[i][0], cases[i][1]);
        assert_load_fails(path, cases[i][2]);
        remove(path);
        free(path);
    }

    // A good file loads, with its merges and no more than it has.
    char *good = write_gz("good.gz", "#version: 0.2 " TOKENIZER_TRAINER_MARK "\ni n\nt h\nth e</w>\n");
    tokenizer *small = tokenizer_load(good, 0);
    if (!small) fail_msg("%s", err_msg());
    assert_non_null(small);
    assert_int_equal(tokenizer_vocab_size(small), 512 + 3 + 2);
    tokenizer_free(small);
    assert_null(tokenizer_load(good, 4));
    assert_non_null(strstr(err_msg(), "fewer than"));

    // A truncated gzip stream is reported, with the line where the data stops.
    enum { LINES = 50000 };
    char *big = xmalloc(4 * LINES + 16);
    size_t len = (size_t)sprintf(big, "#version: 0.2\n");
    unsigned seed = 3;
    for (int i = 0; i < LINES; i++, len += 4)
        sprintf(big + len, "%c %c\n", 'a' + rand_r(&seed) % 26, 'a' + rand_r(&seed) % 26);
    char *trunc = write_gz("trunc.gz", big);
    FILE *f = fopen(trunc, "r+");
    fseek(f, 0, SEEK_END);
    assert_int_equal(ftruncate(fileno(f), ftell(f) / 2), 0);
    fclose(f);
    assert_load_fails(trunc, "truncated");
    remove(trunc);
    remove(good);
    free(trunc);
    free(good);
    free(big);
    rmdir(tmpdir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CLIP_MERGES_GZ\n", argv[0]);
        return 2;
    }
    vocab_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_blank),
        cmocka_unit_test(test_context_boundaries),
        cmocka_unit_test(test_other_context_lengths),
        cmocka_unit_test(test_literal_special_tokens),
        cmocka_unit_test(test_cleaning_rules),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_threads_share_one_vocabulary),
        cmocka_unit_test(test_bad_merges_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
