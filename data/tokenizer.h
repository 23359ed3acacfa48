// tokenizer: CLIP's byte-level BPE tokenizer, identical to OpenCLIP's `SimpleTokenizer`.
//
// One loaded vocabulary is shared read-only by any number of threads (the data loader's workers);
// each encode call is thread-safe. Text is cleaned as OpenCLIP does (HTML unescape twice, strip,
// collapse whitespace, full Unicode lower-case), split with CLIP's pattern and merged with the BPE
// ranks of a merges file in CLIP's gzip format (`bpe_simple_vocab_16e6.txt.gz` or one made by
// `clipc tokenizer train`).
#ifndef CLIPC_DATA_TOKENIZER_H
#define CLIPC_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

#define TOKENIZER_DEFAULT_CONTEXT 77

// Loads a merges file. max_merges <= 0 takes the CLIP default for that file (all merges of a file
// made by the trainer; 48,894 for CLIP's own). Returns NULL with err_msg() naming file and line.
tokenizer *tokenizer_load(const char *merges_path, int max_merges);
void tokenizer_free(tokenizer *tok);

int tokenizer_vocab_size(const tokenizer *tok);
int64_t tokenizer_sot(const tokenizer *tok);  // <start_of_text>
int64_t tokenizer_eot(const tokenizer *tok);  // <end_of_text>

// Encodes one text into ids[0..context_length): SOT, tokens, EOT, zero padding; a text too long is
// cut with EOT last. Returns the number of ids before padding, or -1 on error.
int tokenizer_encode(const tokenizer *tok, const char *text, int context_length, int64_t *ids);

// Encodes n texts into out[n * context_length]. Returns 0 or -1.
int tokenizer_encode_batch(const tokenizer *tok, const char *const *texts, int n, int context_length,
                           int64_t *out);

// Decodes ids (special tokens and padding dropped) into a new malloc'ed UTF-8 string.
char *tokenizer_decode(const tokenizer *tok, const int64_t *ids, int n);

#endif
