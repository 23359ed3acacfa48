// libFuzzer harness for the CLIP tokenizer: any bytes must encode without a crash or a leak, keep
// the id invariants (SOT first, EOT last, ids in the vocabulary, zero padding, the short context a
// prefix of the long one), and decode back to valid UTF-8.
// Needs CLIPC_VOCAB (CLIP's merges file). Build and run: see docs/reliability.md.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "text/clip_text.h"
#include "text/tokenizer.h"

enum { SHORT_CTX = TOKENIZER_DEFAULT_CONTEXT, LONG_CTX = 2048 };

static tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *vocab = getenv("CLIPC_VOCAB");
    if (!vocab) {
        fprintf(stderr, "fuzz_tokenizer: set CLIPC_VOCAB to a merges file\n");
        exit(2);
    }
    tok = tokenizer_load(vocab, 0);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err_msg());
        exit(2);
    }
    return 0;
}

static void check_ids(const int64_t *ids, int n, int ctx) {
    CLIPC_ASSERT(n >= 2 && n <= ctx);
    CLIPC_ASSERT(ids[0] == tokenizer_sot(tok) && ids[n - 1] == tokenizer_eot(tok));
    for (int i = 1; i < n - 1; i++) CLIPC_ASSERT(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok));
    for (int i = n; i < ctx; i++) CLIPC_ASSERT(ids[i] == 0);
}

// The decoded text is valid UTF-8: decoding it again replaces nothing.
static void check_decode(const int64_t *ids, int n) {
    char *text = tokenizer_decode(tok, ids, n);
    CLIPC_ASSERT(text != NULL);
    size_t len = strlen(text);
    uint32_t *cp = malloc((len + 1) * sizeof(uint32_t));
    char *again = malloc(4 * len + 1);
    size_t m = clip_text_decode_utf8(text, len, cp);
    CLIPC_ASSERT(clip_text_utf8(cp, m, again) == len && memcmp(again, text, len) == 0);
    free(again);
    free(cp);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int64_t short_ids[SHORT_CTX], long_ids[LONG_CTX];
    const char *text = (const char *)data;
    int n = tokenizer_encode_len(tok, text, size, SHORT_CTX, short_ids);
    int m = tokenizer_encode_len(tok, text, size, LONG_CTX, long_ids);
    check_ids(short_ids, n, SHORT_CTX);
    check_ids(long_ids, m, LONG_CTX);
    CLIPC_ASSERT(memcmp(short_ids, long_ids, (size_t)(n - 1) * sizeof(int64_t)) == 0);
    CLIPC_ASSERT(n == SHORT_CTX ? m >= n : m == n);
    check_decode(long_ids, m);
    return 0;
}
