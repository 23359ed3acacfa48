#include "eval/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/error.h"

#define NPY_PREAMBLE 10  // magic (6), version (2), header length (2)
#define NPY_ALIGN 64

int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols) {
    char dict[160];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    size_t header = (size_t)len + 1;  // with the final newline
    header += (NPY_ALIGN - (NPY_PREAMBLE + header) % NPY_ALIGN) % NPY_ALIGN;
    size_t nbytes = (size_t)rows * (size_t)cols * sizeof(float), total = NPY_PREAMBLE + header + nbytes;
    uint8_t *buf = xmalloc(total);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(header & 0xff), buf[9] = (uint8_t)(header >> 8);
    memset(buf + NPY_PREAMBLE, ' ', header);
    memcpy(buf + NPY_PREAMBLE, dict, (size_t)len);
    buf[NPY_PREAMBLE + header - 1] = '\n';
    uint8_t *out = buf + NPY_PREAMBLE + header;
    for (size_t i = 0; i < (size_t)rows * (size_t)cols; i++) {  // little-endian whatever the host
        uint32_t bits;
        memcpy(&bits, data + i, 4);
        for (int b = 0; b < 4; b++) out[4 * i + (size_t)b] = (uint8_t)(bits >> (8 * b));
    }
    int rc = atomic_file_write_bytes(path, buf, total);
    free(buf);
    return rc;
}
