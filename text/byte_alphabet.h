// byte_alphabet: CLIP's bytes_to_unicode(), the byte-level alphabet of its BPE.
//
// Each of the 256 byte values is written as one printable code point in merges files (printable
// Latin-1 bytes as themselves, the other 68 as U+0100..U+0143), and the first 256 token ids are
// the bytes in the order of that mapping (the printable ones first), the next 256 the same with
// `</w>` (end of word).
#ifndef CLIPC_TEXT_BYTE_ALPHABET_H
#define CLIPC_TEXT_BYTE_ALPHABET_H

#include <stddef.h>
#include <stdint.h>

enum { BYTE_ALPHABET_SIZE = 256 };

// The code point that stands for byte b in merges files.
uint32_t byte_alphabet_char(unsigned char b);
// The byte a code point of a merges file stands for, or -1 when it is not in the alphabet.
int byte_alphabet_byte(uint32_t cp);
// The token id of byte b (0..255); add BYTE_ALPHABET_SIZE for its end-of-word form.
int byte_alphabet_id(unsigned char b);

// Writes base token `id` (0..511) as merges files spell it (its byte's code point in UTF-8, then
// `</w>` for ids from 256) into out (room for 8 bytes). Returns the length.
size_t byte_alphabet_token_text(int id, char *out);

#endif
