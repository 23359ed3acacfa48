// TEST-ONLY safetensors reader; see fixture.h.
#include "tests/fixture.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/error.h"

static uint64_t read_le64(const unsigned char b[8]) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

// Reads the JSON header; the data section starts at *data_start.
static cJSON *read_header(FILE *f, const char *path, long *data_start) {
    unsigned char len_bytes[8];
    if (fread(len_bytes, 1, 8, f) != 8) {
        err_set("%s: truncated safetensors header", path);
        return NULL;
    }
    uint64_t len = read_le64(len_bytes);
    if (len == 0 || len > (1u << 26)) {
        err_set("%s: implausible safetensors header length %llu", path, (unsigned long long)len);
        return NULL;
    }
    char *text = xmalloc(len + 1);
    size_t got = fread(text, 1, len, f);
    text[got] = '\0';
    cJSON *header = got == len ? cJSON_Parse(text) : NULL;
    free(text);
    if (!header) err_set("%s: unreadable safetensors header", path);
    *data_start = 8 + (long)len;
    return header;
}

static int entry_shape(const cJSON *entry, int64_t *shape, int *ndim, int64_t *numel) {
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(dims) || cJSON_GetArraySize(dims) > TENSOR_MAX_DIMS) return -1;
    *ndim = 0;
    *numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, dims) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 0) return -1;
        shape[(*ndim)++] = (int64_t)d->valuedouble;
        *numel *= (int64_t)d->valuedouble;
    }
    return 0;
}

static tensor *read_entry(FILE *f, const char *path, const char *name, const cJSON *entry, long data_start) {
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    int64_t shape[TENSOR_MAX_DIMS], numel;
    int ndim;
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        entry_shape(entry, shape, &ndim, &numel) < 0) {
        err_set("%s: %s: malformed header entry", path, name);
        return NULL;
    }
    tensor_dtype type;
    if (strcmp(dtype->valuestring, "F32") == 0) type = TENSOR_F32;
    else if (strcmp(dtype->valuestring, "I64") == 0) type = TENSOR_I64;
    else {
        err_set("%s: %s: dtype %s not supported by the test reader", path, name, dtype->valuestring);
        return NULL;
    }
    long begin = (long)cJSON_GetArrayItem(offsets, 0)->valuedouble;
    long end = (long)cJSON_GetArrayItem(offsets, 1)->valuedouble;
    size_t nbytes = (size_t)numel * tensor_dtype_size(type);
    if (end < begin || (size_t)(end - begin) != nbytes) {
        err_set("%s: %s: data offsets do not match the shape", path, name);
        return NULL;
    }
    void *data = xmalloc(nbytes ? nbytes : 1);
    tensor *t = NULL;
    if (fseek(f, data_start + begin, SEEK_SET) != 0 || fread(data, 1, nbytes, f) != nbytes)
        err_set("%s: %s: truncated tensor data", path, name);
    else
        t = tensor_from_host(data, shape, ndim, type, false);
    free(data);
    return t;
}

tensor *fixture_tensor(const char *path, const char *name) {
    FILE *f = fopen_checked(path, "rb");
    if (!f) return NULL;
    long data_start;
    cJSON *header = read_header(f, path, &data_start);
    tensor *t = NULL;
    if (header) {
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(header, name);
        if (!entry) err_set("%s: no tensor named %s", path, name);
        else t = read_entry(f, path, name, entry, data_start);
    }
    cJSON_Delete(header);
    fclose(f);
    return t;
}

tensor *fixture_tensor_in(const char *dir, const char *file, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return fixture_tensor(path, name);
}
