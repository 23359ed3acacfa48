// Fuzz harness for the BPE merges file reader (text/tokenizer.c; plain text or gzip): any file
// loads or fails with one line naming it; a loaded vocabulary encodes and decodes a caption.
#include <stdint.h>
#include <stdlib.h>

#include "text/tokenizer.h"
#include "fuzz_check.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file(data, size, ".txt.gz");
    tokenizer *tok = tokenizer_load(path, 0);
    if (!tok) {
        FUZZ_CHECK_ERROR(path);
        return 0;
    }
    int64_t ids[TOKENIZER_DEFAULT_CONTEXT];
    int n = tokenizer_encode(tok, "a photo of a cat, 42 ways!", TOKENIZER_DEFAULT_CONTEXT, ids);
    CLIPC_ASSERT(n >= 2 && ids[0] == tokenizer_sot(tok) && ids[n - 1] == tokenizer_eot(tok));
    for (int i = 1; i < n - 1; i++) CLIPC_ASSERT(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(tok));
    char *text = tokenizer_decode(tok, ids, n);
    CLIPC_ASSERT(text != NULL);
    free(text);
    tokenizer_free(tok);
    return 0;
}
