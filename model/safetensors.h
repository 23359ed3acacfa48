// safetensors: reader and writer of the safetensors tensor file format, plus F16/BF16 <-> F32
// conversion on the host.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data region) plus an
// optional "__metadata__" object of string -> string, then the raw little-endian C-order data.
// The reader maps the file and validates every part of the header before handing out pointers;
// the writer lays tensors out as the reference implementation does (by dtype, largest first, then
// by name) and replaces the target file atomically.
#ifndef CLIPC_MODEL_SAFETENSORS_H
#define CLIPC_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

// In the reference implementation's order, so that sorting by it gives the same layout.
typedef enum {
    ST_DTYPE_BOOL,
    ST_DTYPE_U8,
    ST_DTYPE_I8,
    ST_DTYPE_I16,
    ST_DTYPE_U16,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_I32,
    ST_DTYPE_U32,
    ST_DTYPE_F32,
    ST_DTYPE_F64,
    ST_DTYPE_I64,
    ST_DTYPE_U64,
    ST_DTYPE_COUNT,
} st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;     // product of shape (1 for rank 0)
    const void *data;  // numel elements, aligned to the element size; valid until st_close
    size_t nbytes;
} st_tensor;

// "F32", "BF16", ...
const char *st_dtype_name(st_dtype dtype);
size_t st_dtype_size(st_dtype dtype);
// Parses a dtype name. Returns 0, or -1 (no message) when unknown.
int st_dtype_parse(const char *name, st_dtype *out);

// Reader ------------------------------------------------------------------------------------------
typedef struct st_file st_file;

// Maps and validates a file. NULL with err_msg() "<path>: <defect>" on any problem.
st_file *st_open(const char *path);
void st_close(st_file *f);
// The same reader over n tensors held elsewhere (another format's, read into memory): path names
// them in messages; their names and data stay owned by owner, which st_close (and a failure)
// passes to release. NULL with err_msg() for a duplicate name.
st_file *st_open_tensors(const char *path, const st_tensor *tensors, int n, void (*release)(void *), void *owner);
const char *st_path(const st_file *f);
// Tensors in file order (by data offset), 0 <= i < st_count(f).
int st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, int i);
// NULL when absent (no message set).
const st_tensor *st_find(const st_file *f, const char *name);
// The "__metadata__" value of key, or NULL when absent.
const char *st_metadata(const st_file *f, const char *key);

// Writer ------------------------------------------------------------------------------------------
typedef struct st_writer st_writer;

st_writer *st_writer_init(void);
void st_writer_free(st_writer *w);
// Adds a tensor; name is copied, data is borrowed until st_writer_write returns and must hold
// prod(shape) elements (may be NULL when that is 0). Returns -1 for a duplicate or invalid name,
// a negative dimension or ndim outside [0, ST_MAX_DIMS].
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, const int64_t *shape, int ndim,
                  const void *data);
// Sets (or replaces) a "__metadata__" entry; both strings are copied.
int st_writer_set_metadata(st_writer *w, const char *key, const char *value);
// Writes the file atomically: to "<path>.tmp.<pid>", flushed and fsync'ed, renamed over path,
// then the directory is fsync'ed. On failure path is untouched and the temporary removed.
int st_writer_write(st_writer *w, const char *path);

// Conversion --------------------------------------------------------------------------------------
// Converts n elements between the floating dtypes F16, BF16, F32 and F64 (round to nearest even;
// NaN stays NaN, overflow becomes infinity). src and dst must not overlap. Returns 0, or -1 for
// another dtype.
int st_convert(const void *src, st_dtype src_dtype, void *dst, st_dtype dst_dtype, size_t n);

#endif
