#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; big-endian hosts would need byte swapping");

#define ST_MAX_HEADER (100u << 20)  // the reference implementation's limit
#define ST_MAX_EXACT (1ull << 53)   // JSON numbers are doubles: integers above are inexact

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_DTYPE_BOOL] = {"BOOL", 1}, [ST_DTYPE_U8] = {"U8", 1},     [ST_DTYPE_I8] = {"I8", 1},
    [ST_DTYPE_I16] = {"I16", 2},   [ST_DTYPE_U16] = {"U16", 2},   [ST_DTYPE_F16] = {"F16", 2},
    [ST_DTYPE_BF16] = {"BF16", 2}, [ST_DTYPE_I32] = {"I32", 4},   [ST_DTYPE_U32] = {"U32", 4},
    [ST_DTYPE_F32] = {"F32", 4},   [ST_DTYPE_F64] = {"F64", 8},   [ST_DTYPE_I64] = {"I64", 8},
    [ST_DTYPE_U64] = {"U64", 8},
};

const char *st_dtype_name(st_dtype dtype) {
    CLIPC_ASSERT((unsigned)dtype < ST_DTYPE_COUNT);
    return dtype_info[dtype].name;
}

size_t st_dtype_size(st_dtype dtype) {
    CLIPC_ASSERT((unsigned)dtype < ST_DTYPE_COUNT);
    return dtype_info[dtype].size;
}

int st_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(dtype_info[i].name, name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

// numel * element size of a shape, or -1 when it overflows.
static int shape_nbytes(const int64_t *shape, int ndim, st_dtype dtype, int64_t *numel,
                        size_t *nbytes) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return -1;
    uint64_t bytes;
    if (n > INT64_MAX || __builtin_mul_overflow(n, st_dtype_size(dtype), &bytes) ||
        bytes > SIZE_MAX)
        return -1;
    *numel = (int64_t)n;
    *nbytes = (size_t)bytes;
    return 0;
}

// Reader ------------------------------------------------------------------------------------------

struct st_file {
    char *path;
    uint8_t *map;
    size_t size;
    cJSON *header;           // owns the tensor names and metadata strings
    const cJSON *metadata;   // "__metadata__" or NULL
    st_tensor *tensors;      // (n) in data-offset order
    int n;
    const st_tensor **by_name;  // (n) tensors sorted by name
    void **copies;           // (n) aligned copies of misaligned tensors, or NULL
    void (*release)(void *); // st_open_tensors: frees the owner of the tensors' names and data
    void *owner;
};

// Per-tensor data offsets while validating, relative to the data region.
typedef struct {
    uint64_t begin, end;
    int index;
} st_span;

__attribute__((format(printf, 2, 3))) static int file_error(const st_file *f, const char *fmt,
                                                            ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set("%s: %s", f->path, msg);
}

static int json_to_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= (double)ST_MAX_EXACT) || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int map_file(st_file *f) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_errno(f->path);
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0)
        err_errno(f->path);
    else if (!S_ISREG(st.st_mode))
        file_error(f, "not a regular file");
    else if (st.st_size == 0)
        file_error(f, "empty file (no safetensors header)");
    else if (st.st_size < 8)
        file_error(f, "truncated header length (file has %lld bytes, the length field needs 8)",
                   (long long)st.st_size);
    else {
        f->size = (size_t)st.st_size;
        void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
            err_errno(f->path);
        else
            f->map = map, rc = 0;
    }
    close(fd);
    return rc;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int parse_header(st_file *f, uint64_t header_len) {
    const char *text = (const char *)f->map + 8;
    if (memchr(text, '\0', header_len)) return file_error(f, "header contains a NUL byte");
    size_t start = 0;  // the header is not NUL-terminated: stay within header_len
    while (start < header_len && strchr(" \t\r\n", text[start])) start++;
    if (start >= header_len || text[start] != '{')
        return file_error(f, "header is not a JSON object");
    const char *end = NULL;
    f->header = cJSON_ParseWithLengthOpts(text, header_len, &end, false);
    if (!f->header)
        return file_error(f, "invalid JSON header (error near byte %td of %llu)",
                          end ? end - text : 0, (unsigned long long)header_len);
    for (const char *p = end; p < text + header_len; p++)
        if (!strchr(" \t\r\n", *p))
            return file_error(f, "invalid JSON header (trailing bytes at byte %td)", p - text);
    return 0;
}

static int read_metadata(st_file *f, const cJSON *meta) {
    if (f->metadata) return file_error(f, "duplicate __metadata__");
    if (!cJSON_IsObject(meta)) return file_error(f, "__metadata__ is not a JSON object");
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return file_error(f, "__metadata__ value of '%s' is not a string", e->string);
        for (const cJSON *p = meta->child; p != e; p = p->next)
            if (strcmp(p->string, e->string) == 0)
                return file_error(f, "duplicate __metadata__ key '%s'", e->string);
    }
    f->metadata = meta;
    return 0;
}

static int read_shape(st_file *f, const cJSON *entry, st_tensor *t) {
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    if (!cJSON_IsArray(shape)) return file_error(f, "tensor '%s': missing shape", t->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return file_error(f, "tensor '%s': rank %d exceeds the supported %d", t->name, ndim,
                          ST_MAX_DIMS);
    t->ndim = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        uint64_t v;
        if (json_to_u64(d, &v))
            return file_error(f, "tensor '%s': shape entries must be non-negative integers",
                              t->name);
        t->shape[t->ndim++] = (int64_t)v;
    }
    if (shape_nbytes(t->shape, t->ndim, t->dtype, &t->numel, &t->nbytes))
        return file_error(f, "tensor '%s': shape is too large", t->name);
    return 0;
}

static void format_shape(const st_tensor *t, char *buf, size_t cap) {
    size_t len = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %lld" : "%lld",
                                (long long)t->shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static int read_tensor(st_file *f, const cJSON *entry, uint64_t data_size, st_tensor *t,
                       st_span *span) {
    t->name = entry->string;
    if (!cJSON_IsObject(entry)) return file_error(f, "tensor '%s': not a JSON object", t->name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype)) return file_error(f, "tensor '%s': missing dtype", t->name);
    if (st_dtype_parse(dtype->valuestring, &t->dtype))
        return file_error(f, "tensor '%s': unknown dtype '%s'", t->name, dtype->valuestring);
    if (read_shape(f, entry, t)) return -1;
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_to_u64(offsets->child, &span->begin) || json_to_u64(offsets->child->next, &span->end))
        return file_error(f, "tensor '%s': data_offsets must be two non-negative integers",
                          t->name);
    if (span->begin > span->end)
        return file_error(f, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                          t->name, (unsigned long long)span->begin, (unsigned long long)span->end);
    if (span->end > data_size)
        return file_error(f, "tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                          "region (%llu bytes; truncated file?)", t->name,
                          (unsigned long long)span->begin, (unsigned long long)span->end,
                          (unsigned long long)data_size);
    if (span->end - span->begin != t->nbytes) {
        char shape[128];
        format_shape(t, shape, sizeof shape);
        return file_error(f, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s "
                          "of %s needs %zu", t->name, (unsigned long long)span->begin,
                          (unsigned long long)span->end,
                          (unsigned long long)(span->end - span->begin), shape,
                          st_dtype_name(t->dtype), t->nbytes);
    }
    return 0;
}

static int compare_spans(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

// The spans must tile [0, data_size) exactly: no overlap, no gap, nothing left over.
// spans are sorted and f->tensors placed in their order.
static int check_layout(st_file *f, const st_span *spans, uint64_t data_size) {
    uint64_t covered = 0;
    const char *last = NULL;
    for (int i = 0; i < f->n; i++) {
        const char *name = f->tensors[i].name;
        if (spans[i].begin < covered)
            return file_error(f, "tensor '%s' overlaps tensor '%s' (data_offsets [%llu, %llu])",
                              name, last, (unsigned long long)spans[i].begin,
                              (unsigned long long)spans[i].end);
        if (spans[i].begin > covered)
            return file_error(f, "gap of %llu bytes before tensor '%s' (data_offsets must cover "
                              "the data region)", (unsigned long long)(spans[i].begin - covered),
                              name);
        if (spans[i].end > spans[i].begin) last = name;
        covered = spans[i].end;
    }
    if (covered != data_size)
        return file_error(f, "%llu bytes after the last tensor are not covered by data_offsets",
                          (unsigned long long)(data_size - covered));
    return 0;
}

static int compare_names(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int index_names(st_file *f) {
    f->by_name = xmalloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, compare_names);
    for (int i = 1; i < f->n; i++)
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
            return file_error(f, "duplicate tensor name '%s'", f->by_name[i]->name);
    return 0;
}

// Orders tensors by data offset and points them at their data, copying any whose address is not
// aligned to its element size (possible when the header length is not a multiple of 8).
static void place_tensors(st_file *f, const st_span *spans, const st_tensor *unsorted,
                          const uint8_t *data) {
    for (int i = 0; i < f->n; i++) {
        st_tensor *t = &f->tensors[i];
        *t = unsorted[spans[i].index];
        t->data = data + spans[i].begin;
        size_t align = st_dtype_size(t->dtype);
        if (t->nbytes && (uintptr_t)t->data % align) {
            f->copies[i] = xmalloc(t->nbytes);
            memcpy(f->copies[i], t->data, t->nbytes);
            t->data = f->copies[i];
        }
    }
}

static int read_tensors(st_file *f, uint64_t header_len) {
    uint64_t data_size = f->size - 8 - header_len;
    int count = 0;
    for (const cJSON *e = f->header->child; e; e = e->next) count += strcmp(e->string, "__metadata__") != 0;
    st_tensor *unsorted = xcalloc((size_t)count + 1, sizeof *unsorted);
    st_span *spans = xcalloc((size_t)count + 1, sizeof *spans);
    f->tensors = xcalloc((size_t)count + 1, sizeof *f->tensors);
    f->copies = xcalloc((size_t)count + 1, sizeof *f->copies);
    int rc = 0;
    for (const cJSON *e = f->header->child; e && rc == 0; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            rc = read_metadata(f, e);
            continue;
        }
        spans[f->n].index = f->n;
        rc = read_tensor(f, e, data_size, &unsorted[f->n], &spans[f->n]);
        f->n++;
    }
    if (rc == 0) {
        qsort(spans, (size_t)f->n, sizeof *spans, compare_spans);
        place_tensors(f, spans, unsorted, f->map + 8 + header_len);
        rc = index_names(f);
    }
    if (rc == 0) rc = check_layout(f, spans, data_size);
    free(unsorted);
    free(spans);
    return rc;
}

st_file *st_open(const char *path) {
    st_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    int rc = map_file(f);
    if (rc == 0) {
        uint64_t header_len = read_le64(f->map);
        if (header_len > f->size - 8)
            rc = file_error(f, "header length %llu exceeds the %zu bytes that follow it "
                            "(truncated, or not a safetensors file?)", (unsigned long long)header_len,
                            f->size - 8);
        else if (header_len > ST_MAX_HEADER)
            rc = file_error(f, "header length %llu exceeds the %u-byte limit",
                            (unsigned long long)header_len, ST_MAX_HEADER);
        else
            rc = parse_header(f, header_len);
        if (rc == 0) rc = read_tensors(f, header_len);
    }
    if (rc == 0) return f;
    st_close(f);
    return NULL;
}

st_file *st_open_tensors(const char *path, const st_tensor *tensors, int n, void (*release)(void *), void *owner) {
    st_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    f->release = release, f->owner = owner;
    f->n = n;
    f->tensors = xcalloc((size_t)n + 1, sizeof *f->tensors);
    memcpy(f->tensors, tensors, (size_t)n * sizeof *tensors);
    if (index_names(f) == 0) return f;
    st_close(f);
    return NULL;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->release) f->release(f->owner);
    for (int i = 0; f->copies && i < f->n; i++) free(f->copies[i]);
    free(f->copies);
    free(f->by_name);
    free(f->tensors);
    cJSON_Delete(f->header);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }

int st_count(const st_file *f) { return f->n; }

const st_tensor *st_get(const st_file *f, int i) {
    CLIPC_ASSERT(i >= 0 && i < f->n);
    return &f->tensors[i];
}

const st_tensor *st_find(const st_file *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    const cJSON *v = f->metadata ? cJSON_GetObjectItemCaseSensitive(f->metadata, key) : NULL;
    return v ? v->valuestring : NULL;
}

// Writer ------------------------------------------------------------------------------------------

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_entry;

struct st_writer {
    st_entry *entries;
    int n, cap;
    cJSON *metadata;
};

st_writer *st_writer_init(void) {
    st_writer *w = xcalloc(1, sizeof *w);
    w->metadata = cJSON_CreateObject();
    return w;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->entries[i].name);
    free(w->entries);
    cJSON_Delete(w->metadata);
    free(w);
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, const int64_t *shape, int ndim,
                  const void *data) {
    if (strcmp(name, "__metadata__") == 0)
        return err_set("tensor '%s': reserved name", name);
    if ((unsigned)dtype >= ST_DTYPE_COUNT) return err_set("tensor '%s': invalid dtype", name);
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return err_set("tensor '%s': rank %d outside [0, %d]", name, ndim, ST_MAX_DIMS);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return err_set("tensor '%s': added twice", name);
    st_entry e = {.dtype = dtype, .ndim = ndim, .data = data};
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return err_set("tensor '%s': negative dimension", name);
        e.shape[i] = shape[i];
    }
    int64_t numel;
    if (shape_nbytes(e.shape, ndim, dtype, &numel, &e.nbytes))
        return err_set("tensor '%s': shape is too large", name);
    if (e.nbytes && !data) return err_set("tensor '%s': no data", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = xrealloc(w->entries, (size_t)w->cap * sizeof *w->entries);
    }
    e.name = xstrdup(name);
    w->entries[w->n++] = e;
    return 0;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (!key || !value) return err_set("metadata '%s': missing key or value", key ? key : "");
    cJSON *v = cJSON_CreateString(value);
    if (cJSON_GetObjectItemCaseSensitive(w->metadata, key))
        cJSON_ReplaceItemInObjectCaseSensitive(w->metadata, key, v);
    else
        cJSON_AddItemToObject(w->metadata, key, v);
    return 0;
}

// The reference layout: larger dtypes first (keeping every tensor aligned), then by name.
static int compare_entries(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static char *json_int_list(const int64_t *v, int n) {
    char *buf = xmalloc(24 * (size_t)(n + 1));
    size_t len = (size_t)sprintf(buf, "[");
    for (int i = 0; i < n; i++) len += (size_t)sprintf(buf + len, i ? ",%lld" : "%lld", (long long)v[i]);
    sprintf(buf + len, "]");
    return buf;
}

static void add_raw_list(cJSON *obj, const char *key, const int64_t *v, int n) {
    char *text = json_int_list(v, n);
    cJSON_AddRawToObject(obj, key, text);
    free(text);
}

// The header JSON, padded with spaces to a multiple of 8 bytes so that data stays aligned.
static char *build_header(const st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    if (w->metadata->child)
        cJSON_AddItemToObject(root, "__metadata__", cJSON_Duplicate(w->metadata, true));
    int64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        const st_entry *e = &w->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", st_dtype_name(e->dtype));
        add_raw_list(t, "shape", e->shape, e->ndim);
        int64_t span[2] = {offset, offset + (int64_t)e->nbytes};
        add_raw_list(t, "data_offsets", span, 2);
        offset = span[1];
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CLIPC_ASSERT(json);
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    json = xrealloc(json, padded + 1);
    memset(json + n, ' ', padded - n);
    json[padded] = '\0';
    *len = padded;
    return json;
}

// Returns 0, or -1 with errno set.
static int write_all(FILE *out, const st_writer *w, const char *header, size_t header_len) {
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    if (fwrite(len_le, 1, 8, out) != 8 || fwrite(header, 1, header_len, out) != header_len)
        return -1;
    for (int i = 0; i < w->n; i++)
        if (w->entries[i].nbytes &&
            fwrite(w->entries[i].data, 1, w->entries[i].nbytes, out) != w->entries[i].nbytes)
            return -1;
    return fflush(out) == 0 && fsync(fileno(out)) == 0 ? 0 : -1;
}

typedef struct {
    const st_writer *w;
    const char *header;
    size_t header_len;
} write_job;

static int write_file(const char *tmp, void *ctx) {
    const write_job *job = ctx;
    FILE *out = fopen(tmp, "wb");
    if (!out) return err_set("cannot create temporary file: %s", strerror(errno));
    int rc = write_all(out, job->w, job->header, job->header_len), saved = errno;
    if (fclose(out) != 0 && rc == 0) rc = -1, saved = errno;
    return rc == 0 ? 0 : err_set("write failed: %s", strerror(saved));
}

int st_writer_write(st_writer *w, const char *path) {
    if (w->n) qsort(w->entries, (size_t)w->n, sizeof *w->entries, compare_entries);
    write_job job = {.w = w};
    char *header = build_header(w, &job.header_len);
    job.header = header;
    int rc = atomic_file_write(path, write_file, &job);
    free(header);
    return rc;
}

// Conversion --------------------------------------------------------------------------------------

static uint32_t float_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_float(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | mant << 13);
    if (exp != 0) return bits_float(sign | (exp + 112) << 23 | mant << 13);
    if (mant == 0) return bits_float(sign);
    int shift = 0;
    while (!(mant & 0x400)) mant <<= 1, shift++;
    return bits_float(sign | (uint32_t)(113 - shift) << 23 | (mant & 0x3ff) << 13);
}

static uint16_t f32_to_f16(float x) {
    uint32_t u = float_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);  // NaN, quiet
    if (a >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to infinity
    if (a >= 0x38800000u) {                      // normal half: rebias, round to nearest even
        a += ((uint32_t)(15 - 127) << 23) + 0xfff + ((a >> 13) & 1);
        return sign | (uint16_t)(a >> 13);
    }
    // Subnormal or zero: adding 0.5f lines the half's 2^-24 quantum up with float's last bit, so
    // the FPU's round-to-nearest-even does the rounding.
    float r = bits_float(a) + 0.5f;
    return sign | (uint16_t)(float_bits(r) - 0x3f000000u);
}

static float bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

static uint16_t f32_to_bf16(float x) {
    uint32_t u = float_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(u >> 16 | 0x40);  // NaN, quiet
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static bool is_floating(st_dtype d) {
    return d == ST_DTYPE_F16 || d == ST_DTYPE_BF16 || d == ST_DTYPE_F32 || d == ST_DTYPE_F64;
}

static double load_element(const void *src, st_dtype dtype, size_t i) {
    switch (dtype) {
    case ST_DTYPE_F16: return f16_to_f32(((const uint16_t *)src)[i]);
    case ST_DTYPE_BF16: return bf16_to_f32(((const uint16_t *)src)[i]);
    case ST_DTYPE_F32: return ((const float *)src)[i];
    default: return ((const double *)src)[i];
    }
}

static void store_element(void *dst, st_dtype dtype, size_t i, double v) {
    switch (dtype) {
    case ST_DTYPE_F16: ((uint16_t *)dst)[i] = f32_to_f16((float)v); break;
    case ST_DTYPE_BF16: ((uint16_t *)dst)[i] = f32_to_bf16((float)v); break;
    case ST_DTYPE_F32: ((float *)dst)[i] = (float)v; break;
    default: ((double *)dst)[i] = v; break;
    }
}

int st_convert(const void *src, st_dtype src_dtype, void *dst, st_dtype dst_dtype, size_t n) {
    if (!is_floating(src_dtype) || !is_floating(dst_dtype))
        return err_set("cannot convert %s to %s (only F16, BF16, F32 and F64 convert)",
                       st_dtype_name(src_dtype), st_dtype_name(dst_dtype));
    for (size_t i = 0; i < n; i++) store_element(dst, dst_dtype, i, load_element(src, src_dtype, i));
    return 0;
}
