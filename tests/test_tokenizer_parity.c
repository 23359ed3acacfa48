// Tests the CLIP tokenizer against OpenCLIP: every line of the fixture's tokenizer.jsonl must give
// exactly OpenCLIP's ids, one text at a time and through the batch API.
// Usage: test_tokenizer_parity TOKENIZER_JSONL CLIP_MERGES_GZ
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "text/tokenizer.h"
#include "tests/tokenizer_fixture.h"

static const char *jsonl_path, *vocab_path;

typedef struct {
    tokenizer *tok;
    tokenizer_fixture fx;
} parity;

static int setup(void **state) {
    parity *p = xcalloc(1, sizeof *p);
    p->tok = tokenizer_load(vocab_path, 0);
    if (!p->tok || tokenizer_fixture_load(jsonl_path, &p->fx) < 0) {
        fprintf(stderr, "setup: %s\n", err_msg());
        tokenizer_free(p->tok);
        free(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int teardown(void **state) {
    parity *p = *state;
    tokenizer_free(p->tok);
    tokenizer_fixture_free(&p->fx);
    free(p);
    return 0;
}

static int mismatch(const parity *p, int line, const int64_t *got, int n) {
    if (n == p->fx.n_ids[line] && memcmp(got, p->fx.ids[line], (size_t)n * sizeof(int64_t)) == 0)
        return 0;
    fprintf(stderr, "line %d differs (%d ids, expected %d): %s\n", line + 1, n, p->fx.n_ids[line],
            p->fx.text[line]);
    return 1;
}

static void test_vocabulary(void **state) {
    parity *p = *state;
    assert_int_equal(tokenizer_vocab_size(p->tok), 49408);
    assert_int_equal(tokenizer_n_merges(p->tok), TOKENIZER_CLIP_MERGES);
    assert_int_equal(tokenizer_sot(p->tok), 49406);
    assert_int_equal(tokenizer_eot(p->tok), 49407);
}

static void test_every_line(void **state) {
    parity *p = *state;
    int64_t ids[TOKENIZER_DEFAULT_CONTEXT];
    int bad = 0;
    for (int i = 0; i < p->fx.n; i++) {
        int n = tokenizer_encode(p->tok, p->fx.text[i], TOKENIZER_DEFAULT_CONTEXT, ids);
        assert_true(n > 0);
        bad += mismatch(p, i, ids, n);
        for (int j = n; j < TOKENIZER_DEFAULT_CONTEXT; j++) assert_int_equal(ids[j], 0);
    }
    printf("%d/%d fixture lines identical\n", p->fx.n - bad, p->fx.n);
    assert_int_equal(bad, 0);
}

static void test_batch(void **state) {
    parity *p = *state;
    const int ctx = TOKENIZER_DEFAULT_CONTEXT;
    int64_t *out = xmalloc((size_t)p->fx.n * ctx * sizeof(int64_t));
    assert_int_equal(tokenizer_encode_batch(p->tok, (const char *const *)p->fx.text, p->fx.n, ctx, out), 0);
    int bad = 0;
    for (int i = 0; i < p->fx.n; i++) bad += mismatch(p, i, out + (size_t)i * ctx, p->fx.n_ids[i]);
    free(out);
    assert_int_equal(bad, 0);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s TOKENIZER_JSONL CLIP_MERGES_GZ\n", argv[0]);
        return 2;
    }
    jsonl_path = argv[1];
    vocab_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocabulary),
        cmocka_unit_test(test_every_line),
        cmocka_unit_test(test_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
