// tokenizer: CLIP's byte-level BPE tokenizer, identical to OpenCLIP's `SimpleTokenizer`.
//
// One loaded vocabulary is shared read-only by any number of threads (the data loader's workers);
// each encode call is thread-safe. Text is cleaned as OpenCLIP does (HTML unescape twice, strip,
// collapse whitespace, full Unicode lower-case), split with CLIP's pattern and merged with the BPE
// ranks of a merges file in CLIP's gzip format (`bpe_simple_vocab_16e6.txt.gz` or one made by
// `clipc tokenizer train`).
#ifndef CLIPC_TEXT_TOKENIZER_H
#define CLIPC_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

#define TOKENIZER_DEFAULT_CONTEXT 77
#define TOKENIZER_CLIP_MERGES 48894          // 49,152 - 256 - 2, as OpenCLIP slices the file
#define TOKENIZER_TRAINER_MARK "clipc-bpe"   // in the version line of files the trainer writes

// Loads a merges file. max_merges <= 0 takes the CLIP default for that file (all merges of a file
// made by the trainer; 48,894 for CLIP's own). Returns NULL with err_msg() naming file and line.
// The default rule: a file whose version line carries the trainer's mark (TOKENIZER_TRAINER_MARK)
// gives all its merges; any other file gives its first TOKENIZER_CLIP_MERGES merges (all of them
// when it has fewer), which is what OpenCLIP's SimpleTokenizer reads.
tokenizer *tokenizer_load(const char *merges_path, int max_merges);
void tokenizer_free(tokenizer *tok);

int tokenizer_vocab_size(const tokenizer *tok);  // 512 + merges + 2
int tokenizer_n_merges(const tokenizer *tok);
int64_t tokenizer_sot(const tokenizer *tok);  // <start_of_text>
int64_t tokenizer_eot(const tokenizer *tok);  // <end_of_text>

// Encodes one text into ids[0..context_length): SOT, tokens, EOT, zero padding; a text too long is
// cut with EOT last. Returns the number of ids before padding, or -1 on error.
int tokenizer_encode(const tokenizer *tok, const char *text, int context_length, int64_t *ids);

// tokenizer_encode for text[0..len), which may hold NUL bytes.
int tokenizer_encode_len(const tokenizer *tok, const char *text, size_t len, int context_length,
                         int64_t *ids);

// Encodes n texts into out[n * context_length]. Returns 0 or -1.
int tokenizer_encode_batch(const tokenizer *tok, const char *const *texts, int n, int context_length,
                           int64_t *out);

// Decodes ids (special tokens and padding dropped) into a new malloc'ed UTF-8 string, as
// OpenCLIP's decode: byte-level tokens back to bytes, each `</w>` to a space, invalid UTF-8 to
// U+FFFD. Padding is whatever follows the last EOT. Returns NULL (err_msg set) for ids outside
// the vocabulary.
char *tokenizer_decode(const tokenizer *tok, const int64_t *ids, int n);

#endif
