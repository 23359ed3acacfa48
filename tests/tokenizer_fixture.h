// tokenizer_fixture: reads OpenCLIP's tokenizer.jsonl fixture ({"text", "ids"} per line) for the
// tokenizer tests, benchmark and CLI check.
#ifndef CLIPC_TESTS_TOKENIZER_FIXTURE_H
#define CLIPC_TESTS_TOKENIZER_FIXTURE_H

#include <stdint.h>

typedef struct {
    int n;
    char **text;     // (n) UTF-8
    int64_t **ids;   // (n) expected ids without padding
    int *n_ids;      // (n)
} tokenizer_fixture;

// Returns 0, or -1 with err_msg() naming the file and line.
int tokenizer_fixture_load(const char *path, tokenizer_fixture *f);
void tokenizer_fixture_free(tokenizer_fixture *f);

#endif
