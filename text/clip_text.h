// clip_text: OpenCLIP's text cleaning and pre-tokenization, shared by the tokenizer and the BPE
// trainer.
//
// Cleaning reproduces `whitespace_clean(basic_clean(text)).lower()` of OpenCLIP's SimpleTokenizer
// (without ftfy): UTF-8 decoding with U+FFFD replacement as Python's errors="replace", HTML
// unescape twice, strip, runs of whitespace to one space, strip, full Unicode lower-case (U+0130
// and the final-sigma rule included). Splitting reproduces CLIP's pattern
// `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` as the
// Python `regex` module applies it with IGNORECASE. Unicode data comes from utf8proc.
#ifndef CLIPC_TEXT_CLIP_TEXT_H
#define CLIPC_TEXT_CLIP_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CLIP_TEXT_INLINE = 512 };

// Working memory for one cleaning at a time (one per thread); short texts need no allocation.
typedef struct {
    uint32_t *cp[2];     // two buffers of `cap` code points each
    size_t cap;
    uint32_t inline_cp[2][CLIP_TEXT_INLINE];
} clip_text_buf;

void clip_text_buf_init(clip_text_buf *buf);
void clip_text_buf_free(clip_text_buf *buf);

// Cleans text[0..len) (any bytes). Returns the cleaned code points (inside buf, valid until the
// next call) and their count in *n.
const uint32_t *clip_text_clean(clip_text_buf *buf, const char *text, size_t len, size_t *n);

typedef enum {
    CLIP_PIECE_END,    // no more pieces
    CLIP_PIECE_WORD,   // a piece to byte-pair encode
    CLIP_PIECE_SOT,    // a literal <start_of_text>
    CLIP_PIECE_EOT,    // a literal <end_of_text>
} clip_piece;

// Finds the next piece of the cleaned text cp[0..n) at or after *pos: sets [*start, *pos) to it.
clip_piece clip_text_next_piece(const uint32_t *cp, size_t n, size_t *pos, size_t *start);

// UTF-8 encodes cp[0..n) into out (room for 4 * n bytes). Returns the number of bytes.
size_t clip_text_utf8(const uint32_t *cp, size_t n, char *out);

// Decodes UTF-8 as Python's bytes.decode("utf-8", errors="replace") does: each maximal invalid
// subpart becomes one U+FFFD. out has room for len code points. Returns the count.
size_t clip_text_decode_utf8(const char *text, size_t len, uint32_t *out);

// The cleaned text as a new malloc'ed UTF-8 string.
char *clip_text_clean_utf8(const char *text, size_t len);

#endif
