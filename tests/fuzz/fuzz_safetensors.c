// Fuzz harness for the safetensors reader (model/safetensors.c): any file opens or fails with one
// line naming it; an opened file's tensors lie inside it, are found by name, and convert.
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_check.h"
#include "fuzz_util.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
volatile uint64_t fuzz_sink;  // keeps the reads of the tensor bytes

static bool is_float(st_dtype d) {
    return d == ST_DTYPE_F16 || d == ST_DTYPE_BF16 || d == ST_DTYPE_F32 || d == ST_DTYPE_F64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file(data, size, ".safetensors");
    st_file *f = st_open(path);
    if (!f) {
        FUZZ_CHECK_ERROR(path);
        return 0;
    }
    uint64_t sum = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        CLIPC_ASSERT(st_find(f, t->name) == t);
        CLIPC_ASSERT(t->nbytes == (size_t)t->numel * st_dtype_size(t->dtype) && t->nbytes <= size);
        for (size_t k = 0; k < t->nbytes; k++) sum += ((const uint8_t *)t->data)[k];
        if (is_float(t->dtype) && t->numel > 0) {
            float *out = xmalloc((size_t)t->numel * sizeof(float));
            CLIPC_ASSERT(st_convert(t->data, t->dtype, out, ST_DTYPE_F32, (size_t)t->numel) == 0);
            free(out);
        }
    }
    fuzz_sink = sum;
    (void)st_metadata(f, "clipc.step");
    st_close(f);
    return 0;
}
