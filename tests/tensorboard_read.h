// tensorboard_read: the tests' reader of TensorBoard event files (clipc writes them, never reads
// them): every record's framing and both CRCs recomputed with ISA-L's CRC32C and TFRecord's mask,
// then each Event unpacked by the protobuf-c code generated from tensorboard/event.proto.
#ifndef CLIPC_TESTS_TENSORBOARD_READ_H
#define CLIPC_TESTS_TENSORBOARD_READ_H

#include <isa-l/crc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorboard/event.pb-c.h"

static inline uint32_t tbr_crc32c(const uint8_t *data, size_t n) {
    return ~crc32_iscsi((unsigned char *)data, (int)n, 0xFFFFFFFFu);
}

static inline uint32_t tbr_masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

static inline uint64_t tbr_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

// Reads up to max events of the file at path into events (free each with
// tensorboard__event__free_unpacked). Returns how many were read before the end or the first bad
// record; why it stopped early goes to why ("" when the whole file was read). payloads, when not
// NULL, receives a copy of each event's bytes (free them).
static inline int tbr_read(const char *path, Tensorboard__Event **events, uint8_t **payloads, size_t *sizes, int max,
                           char *why, size_t cap) {
    why[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(why, cap, "cannot open"), 0;
    int n = 0;
    uint8_t head[12], foot[4];
    size_t got;
    while (n < max && (got = fread(head, 1, 12, f)) > 0) {
        if (got < 12) { snprintf(why, cap, "record %d: truncated header", n); break; }
        uint64_t len = tbr_le(head, 8);
        if (tbr_le(head + 8, 4) != tbr_masked(tbr_crc32c(head, 8))) { snprintf(why, cap, "record %d: length CRC", n); break; }
        if (len > (1u << 20)) { snprintf(why, cap, "record %d: length %llu", n, (unsigned long long)len); break; }
        uint8_t *data = malloc(len ? len : 1);
        if (fread(data, 1, len, f) != len || fread(foot, 1, 4, f) != 4) {
            snprintf(why, cap, "record %d: truncated data", n);
            free(data);
            break;
        }
        if (tbr_le(foot, 4) != tbr_masked(tbr_crc32c(data, len))) {
            snprintf(why, cap, "record %d: data CRC", n);
            free(data);
            break;
        }
        events[n] = tensorboard__event__unpack(NULL, len, data);
        if (!events[n]) { snprintf(why, cap, "record %d: not an Event", n); free(data); break; }
        if (payloads) payloads[n] = data, sizes[n] = len;
        else free(data);
        n++;
    }
    fclose(f);
    return n;
}

static inline void tbr_free(Tensorboard__Event **events, uint8_t **payloads, int n) {
    for (int i = 0; i < n; i++) {
        tensorboard__event__free_unpacked(events[i], NULL);
        if (payloads) free(payloads[i]);
    }
}

#endif
