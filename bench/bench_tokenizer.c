// Benchmarks the CLIP tokenizer: lines per second on one thread, encoding the texts of a
// tokenizer.jsonl fixture (or of a plain text file, one caption per line), repeated, into context 77
// (or CONTEXT: a large one tokenizes long texts whole). The first pass warms the word cache, as
// OpenCLIP's figure is taken with a warm cache.
// Usage: bench_tokenizer TEXTS(.jsonl|.txt) MERGES_GZ [REPEATS=200] [CONTEXT=77]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "text/tokenizer.h"
#include "tests/tokenizer_fixture.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int load_texts(const char *path, tokenizer_fixture *fx) {
    size_t len = strlen(path);
    if (len > 6 && strcmp(path + len - 6, ".jsonl") == 0) return tokenizer_fixture_load(path, fx);
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen_checked(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') line[n - 1] = '\0';
        fx->text = xrealloc(fx->text, (size_t)(fx->n + 1) * sizeof(char *));
        fx->text[fx->n++] = xstrdup(line);
    }
    free(line);
    fclose(f);
    return fx->n ? 0 : err_set("%s: no lines", path);
}

static void free_texts(tokenizer_fixture *fx) {
    if (fx->ids) {
        tokenizer_fixture_free(fx);
        return;
    }
    for (int i = 0; i < fx->n; i++) free(fx->text[i]);
    free(fx->text);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEXTS(.jsonl|.txt) MERGES_GZ [REPEATS] [CONTEXT]\n", argv[0]);
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 200;
    int ctx = argc > 4 ? atoi(argv[4]) : TOKENIZER_DEFAULT_CONTEXT;
    if (repeats < 1 || ctx < 2) {
        fprintf(stderr, "bench_tokenizer: REPEATS must be positive and CONTEXT at least 2\n");
        return 2;
    }
    tokenizer_fixture fx;
    double t0 = now();
    tokenizer *tok = tokenizer_load(argv[2], 0);
    double load_s = now() - t0;
    if (!tok || load_texts(argv[1], &fx) < 0) {
        fprintf(stderr, "bench_tokenizer: %s\n", err_msg());
        return 1;
    }
    const char *const *texts = (const char *const *)fx.text;
    int64_t *out = xmalloc((size_t)fx.n * ctx * sizeof(int64_t));
    if (tokenizer_encode_batch(tok, texts, fx.n, ctx, out) < 0) return 1;  // warms the cache
    int64_t checksum = 0;
    t0 = now();
    for (int r = 0; r < repeats; r++) {
        tokenizer_encode_batch(tok, texts, fx.n, ctx, out);
        checksum += out[(size_t)(r % fx.n) * ctx + 1];
    }
    double secs = now() - t0, lines = (double)fx.n * repeats;
    printf("vocabulary load: %.3f s (%d merges)\n", load_s, tokenizer_n_merges(tok));
    printf("%d lines x %d repeats, 1 thread, context %d: %.0f lines/s (%.2f us/line; checksum %lld)\n",
           fx.n, repeats, ctx, lines / secs, 1e6 * secs / lines, (long long)checksum);
    free(out);
    free_texts(&fx);
    tokenizer_free(tok);
    return 0;
}
