#include "text/byte_alphabet.h"

#include <stdbool.h>
#include <string.h>

enum { PRINTABLE_COUNT = 188 };

static bool is_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

// Position of b among the printable bytes, in increasing order.
static int printable_rank(unsigned b) {
    if (b <= 126) return (int)b - 33;
    if (b <= 172) return 94 + (int)b - 161;
    return 106 + (int)b - 174;
}

// Position of b among the other bytes (0..32, 127..160, 173), in increasing order.
static int other_rank(unsigned b) {
    if (b <= 32) return (int)b;
    if (b <= 160) return 33 + (int)b - 127;
    return 67;
}

uint32_t byte_alphabet_char(unsigned char b) {
    return is_printable(b) ? b : (uint32_t)(BYTE_ALPHABET_SIZE + other_rank(b));
}

int byte_alphabet_byte(uint32_t cp) {
    if (cp < BYTE_ALPHABET_SIZE) return is_printable(cp) ? (int)cp : -1;
    for (unsigned b = 0; b < BYTE_ALPHABET_SIZE; b++)
        if (!is_printable(b) && BYTE_ALPHABET_SIZE + (uint32_t)other_rank(b) == cp) return (int)b;
    return -1;
}

int byte_alphabet_id(unsigned char b) {
    return is_printable(b) ? printable_rank(b) : PRINTABLE_COUNT + other_rank(b);
}

size_t byte_alphabet_token_text(int id, char *out) {
    unsigned b = 0;
    while (byte_alphabet_id((unsigned char)b) != id % BYTE_ALPHABET_SIZE) b++;
    uint32_t cp = byte_alphabet_char((unsigned char)b);
    size_t n = 0;
    if (cp < 0x80) {
        out[n++] = (char)cp;
    } else {
        out[n++] = (char)(0xC0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3F));
    }
    if (id >= BYTE_ALPHABET_SIZE) {
        memcpy(out + n, "</w>", 4);
        n += 4;
    }
    return n;
}
