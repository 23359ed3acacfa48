// `clipc tokenize` (captions on stdin to CLIP token ids on stdout) and `clipc tokenizer train`
// (learn a BPE merges file from a caption corpus).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"
#include "text/bpe_train.h"
#include "text/tokenizer.h"
#include "cli/commands.h"

enum { MAX_CORPUS_FILES = 64 };

static const char VOCAB_HELP[] =
    "merges file: CLIP's bpe_simple_vocab_16e6.txt.gz (from the OpenCLIP or OpenAI CLIP "
    "repositories) or one made by `clipc tokenizer train` (default: $CLIPC_VOCAB)";

static int fail(const char *cmd) {
    fprintf(stderr, "clipc %s: %s\n", cmd, err_msg());
    return 1;
}

// Writes ids[0..n) as one line of space-separated numbers.
static void print_ids(const int64_t *ids, int n, FILE *out) {
    char num[24];
    for (int i = 0; i < n; i++) {
        int len = snprintf(num, sizeof num, i ? " %lld" : "%lld", (long long)ids[i]);
        fwrite(num, 1, (size_t)len, out);
    }
    fputc('\n', out);
}

static int tokenize_stream(const tokenizer *tok, int ctx, FILE *in, FILE *out) {
    int64_t *ids = xmalloc((size_t)ctx * sizeof(int64_t));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        int n = tokenizer_encode_len(tok, line, (size_t)len, ctx, ids);
        if (n < 0) rc = -1;
        else print_ids(ids, n, out);
    }
    if (rc == 0 && ferror(in)) rc = err_set("stdin: read error");
    if (rc == 0 && fflush(out) != 0) rc = err_errno("stdout");
    free(line);
    free(ids);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    char *vocab = getenv("CLIPC_VOCAB");
    long ctx = TOKENIZER_DEFAULT_CONTEXT;
    arg_spec specs[] = {
        {"vocab", ARG_STR, &vocab, VOCAB_HELP, false},
        {"context-length", ARG_INT, &ctx,
         "ids per text with SOT and EOT; longer texts are cut, EOT last (default 77)", false},
    };
    int rc = args_parse_command("tokenize", "clipc tokenize [--vocab PATH] [--context-length N] < captions.txt\n\n"
                           "Reads UTF-8 lines on stdin and writes, for each, its CLIP token ids\n"
                           "(no padding) separated by spaces, exactly as OpenCLIP's tokenizer.",
                           specs, 2, argc, argv, NULL, 0, NULL);
    if (rc >= 0) return rc;
    if (!vocab || !*vocab) {
        fprintf(stderr, "clipc tokenize: no vocabulary: pass --vocab PATH or set CLIPC_VOCAB\n");
        return 2;
    }
    if (ctx < 1 || ctx > 1 << 20) {
        fprintf(stderr, "clipc tokenize: --context-length %ld is not in 1..1048576\n", ctx);
        return 2;
    }
    tokenizer *tok = tokenizer_load(vocab, 0);
    if (!tok) return fail("tokenize");
    rc = tokenize_stream(tok, (int)ctx, stdin, stdout);
    tokenizer_free(tok);
    return rc < 0 ? fail("tokenize") : 0;
}

static int tokenizer_train(int argc, char **argv) {
    char *output = NULL;
    long merges = 0, min_count = 2;
    arg_spec specs[] = {
        {"output", ARG_STR, &output, "merges file to write (gzip, CLIP's format)", false},
        {"merges", ARG_INT, &merges,
         "merges to learn; vocabulary size = 512 + merges + 2 (SOT, EOT)", false},
        {"min-count", ARG_INT, &min_count,
         "stop early when no pair of symbols occurs this often (default 2)", false},
    };
    char *corpus[MAX_CORPUS_FILES];
    int n_corpus = 0;
    int rc = args_parse_command("tokenizer train",
                           "clipc tokenizer train CORPUS... --merges N --output MERGES.txt.gz\n\n"
                           "Learns byte-level BPE merges from captions (one per line; plain or gzip\n"
                           "files), cleaned and split exactly as the tokenizer does.",
                           specs, 3, argc, argv, corpus, MAX_CORPUS_FILES, &n_corpus);
    if (rc >= 0) return rc;
    if (n_corpus == 0 || !output || merges < 1 || merges > 1 << 24) {
        fprintf(stderr, "clipc tokenizer train: need corpus files, --output and --merges N (1..16777216)"
                        " (see --help)\n");
        return 2;
    }
    bpe_trainer *t = bpe_trainer_init();
    long lines = 0;
    bool ok = true;
    for (int i = 0; i < n_corpus && ok; i++) {
        long got = bpe_trainer_add_file(t, corpus[i]);
        ok = got >= 0;
        lines += got;
    }
    int learned = ok ? bpe_trainer_learn(t, (int)merges, min_count) : 0;
    ok = ok && bpe_trainer_write(t, output) == 0;
    bpe_trainer_free(t);
    if (!ok) return fail("tokenizer train");
    printf("learned %d merges from %ld lines (vocabulary %d); wrote %s\n", learned, lines,
           512 + learned + 2, output);
    return 0;
}

// `clipc tokenizer info`: the vocabulary size of a merges file (what a model config's vocab_size
// must be at least).
static int tokenizer_info(int argc, char **argv) {
    char *vocab = getenv("CLIPC_VOCAB");
    arg_spec specs[] = {{"vocab", ARG_STR, &vocab, VOCAB_HELP, false}};
    int rc = args_parse_command("tokenizer info", "clipc tokenizer info [--vocab PATH]", specs, 1, argc, argv, NULL, 0, NULL);
    if (rc >= 0) return rc;
    if (!vocab || !*vocab) {
        fprintf(stderr, "clipc tokenizer info: no vocabulary: pass --vocab PATH or set CLIPC_VOCAB\n");
        return 2;
    }
    tokenizer *tok = tokenizer_load(vocab, 0);
    if (!tok) return fail("tokenizer info");
    printf("vocab_size %d\nmerges %d\n", tokenizer_vocab_size(tok), tokenizer_n_merges(tok));
    tokenizer_free(tok);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "train")) return tokenizer_train(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "info")) return tokenizer_info(argc - 1, argv + 1);
    bool help = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"));
    fprintf(help ? stdout : stderr,
            "usage: clipc tokenizer train CORPUS... --merges N --output MERGES.txt.gz\n"
            "       clipc tokenizer info [--vocab PATH]\n");
    return help ? 0 : 2;
}
