// Writes the texts of a tokenizer.jsonl fixture, one per line, and the expected ids, one line of
// space-separated numbers per text: the input and expected output of `clipc tokenize`.
// Usage: tokenizer_fixture_split TOKENIZER_JSONL TEXTS_OUT IDS_OUT
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "tests/tokenizer_fixture.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TOKENIZER_JSONL TEXTS_OUT IDS_OUT\n", argv[0]);
        return 2;
    }
    tokenizer_fixture fx;
    FILE *texts = NULL, *ids = NULL;
    if (tokenizer_fixture_load(argv[1], &fx) < 0 || !(texts = fopen_checked(argv[2], "w")) ||
        !(ids = fopen_checked(argv[3], "w"))) {
        fprintf(stderr, "%s\n", err_msg());
        return 1;
    }
    for (int i = 0; i < fx.n; i++) {
        if (strchr(fx.text[i], '\n')) {
            fprintf(stderr, "%s: text %d holds a newline: not one line\n", argv[1], i + 1);
            return 1;
        }
        fprintf(texts, "%s\n", fx.text[i]);
        for (int j = 0; j < fx.n_ids[i]; j++) fprintf(ids, j ? " %lld" : "%lld", (long long)fx.ids[i][j]);
        fputc('\n', ids);
    }
    tokenizer_fixture_free(&fx);
    return fclose(texts) == 0 && fclose(ids) == 0 ? 0 : 1;
}
