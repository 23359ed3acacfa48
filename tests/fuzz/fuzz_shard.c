// Fuzz harness for the shard reader (shards/shard.c): the input is a recipe that the harness turns
// into an HDF5 file through the HDF5 API, then opens with shard_reader_open. Every file opens or
// fails with one line naming it; an opened shard keeps the invariants the loader relies on
// (offsets within the image blob and non-decreasing, labels within the class names) and its
// images read back.
//
// Why a recipe and not the file's bytes: clipc's part is the validation of a shard's structure
// (attributes, datasets, their types, shapes, sizes and values), which a recipe reaches directly.
// Random bytes in an HDF5 file mostly exercise libhdf5's own parser, which has bugs of its own
// (1.10.8 loops forever in H5HG_read on a damaged global heap: docs/reliability.md).
//
// Recipe: byte 0 gives the number of samples written (0-15). Then, one byte each, the kind of
// the root attributes format, version, num_samples, image_encoding, made_by (0 absent, 1 the
// right value, 2 a string from the input, 3 an integer from the input, 4 a float) and
// class_names (0 absent, 1 1-4 strings, 2 a scalar string, 3 an integer, 4 an empty list). Then
// the kind of the pairs images/image_offsets, captions/caption_offsets, keys/key_offsets (see
// write_pair), of labels and of skipped (see write_labels, write_skipped). Lengths, bytes and
// values come from the rest of the input; an exhausted input reads as zeros.
#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shards/shard.h"
#include "fuzz_check.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p, *end;
} stream;

static uint64_t take(stream *s, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)(s->p < s->end ? *s->p++ : 0) << (8 * i);
    return v;
}

static void take_bytes(stream *s, uint8_t *dst, size_t n) {
    size_t have = (size_t)(s->end - s->p), k = n < have ? n : have;
    if (k) memcpy(dst, s->p, k);
    memset(dst + k, 0, n - k);
    s->p += k;
}

// A string of 0-15 bytes from the input (NUL bytes end it early).
static char *take_string(stream *s) {
    size_t n = take(s, 1) % 16;
    char *str = xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++) str[i] = (char)take(s, 1);
    return str;
}

// ---- attributes ------------------------------------------------------------------------------

static void put_attr(hid_t f, const char *name, hid_t type, hid_t space, hid_t mem_type, const void *value) {
    hid_t a = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, mem_type, value), H5Aclose(a);
}

static void put_strings(hid_t f, const char *name, const char *const *values, int n, bool scalar) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    put_attr(f, name, t, space, t, values);
    H5Sclose(space);
    H5Tclose(t);
}

static void put_scalar(hid_t f, const char *name, hid_t type, hid_t mem_type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    put_attr(f, name, type, space, mem_type, value);
    H5Sclose(space);
}

// A root attribute whose right value is the string `right`, or (right NULL) the integer right_int.
static void write_attr(hid_t f, stream *s, const char *name, const char *right, int64_t right_int) {
    uint64_t kind = take(s, 1) % 5;
    if (kind == 1 && right) put_strings(f, name, &right, 1, true);
    if (kind == 1 && !right) put_scalar(f, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &right_int);
    if (kind == 2) {
        char *str = take_string(s);
        put_strings(f, name, (const char *const *)&str, 1, true);
        free(str);
    }
    if (kind == 3) {
        int64_t v = (int64_t)take(s, 8);
        put_scalar(f, name, take(s, 1) % 2 ? H5T_STD_I32LE : H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
    }
    if (kind == 4) put_scalar(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &(double){1.0});
}

static void write_class_names(hid_t f, stream *s) {
    uint64_t kind = take(s, 1) % 5;
    char *names[4] = {0};
    int n = kind == 1 ? 1 + (int)(take(s, 1) % 4) : kind == 2 ? 1 : 0;
    for (int i = 0; i < n; i++) names[i] = take_string(s);
    if (kind == 1 || kind == 2) put_strings(f, "class_names", (const char *const *)names, n, kind == 2);
    if (kind == 3) put_scalar(f, "class_names", H5T_STD_I32LE, H5T_NATIVE_INT64, &(int64_t){3});
    if (kind == 4) put_strings(f, "class_names", (const char *const *)names, 0, false);
    for (int i = 0; i < n; i++) free(names[i]);
}

// ---- datasets --------------------------------------------------------------------------------

static void put_dataset(hid_t f, const char *name, hid_t type, hid_t mem_type, const void *data, hsize_t n, int rank) {
    hsize_t dims[2] = {rank == 2 ? 1 : n, n};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0 && n > 0) H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
}

// A dataset declaring 2^40 elements, chunked, with nothing ever written: it costs a few bytes of
// file but reads as that many fill values.
static void put_huge(hid_t f, const char *name, hid_t type) {
    hsize_t dims[1] = {(hsize_t)1 << 40}, chunk[1] = {1024};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    hid_t d = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
}

// A blob and its offsets. Kinds: 0 neither; 1 consistent; 2 offsets one short; 3 offsets from the
// input; 4 the blob 2-D; 5 the blob of doubles; 6 offsets declared huge; 7 the blob declared huge.
static void write_pair(hid_t f, stream *s, const char *blob_name, const char *offsets_name, int n) {
    uint64_t kind = take(s, 1) % 8, offsets[16] = {0};
    uint8_t blob[16 * 7];
    for (int i = 0; i < n; i++) offsets[i + 1] = offsets[i] + take(s, 1) % 8;
    hsize_t blob_len = offsets[n] < sizeof blob ? offsets[n] : sizeof blob;
    take_bytes(s, blob, blob_len);
    if (kind == 3)
        for (int i = 0; i <= n; i++) offsets[i] = take(s, 1) < 128 ? take(s, 1) : take(s, 8);
    if (kind == 0) return;
    if (kind == 7) put_huge(f, blob_name, H5T_STD_U8LE);
    else if (kind == 5) put_dataset(f, blob_name, H5T_IEEE_F64LE, H5T_NATIVE_UINT8, blob, blob_len, 1);
    else put_dataset(f, blob_name, H5T_STD_U8LE, H5T_NATIVE_UINT8, blob, blob_len, kind == 4 ? 2 : 1);
    if (kind == 6) put_huge(f, offsets_name, H5T_STD_U64LE);
    else put_dataset(f, offsets_name, H5T_STD_U64LE, H5T_NATIVE_UINT64, offsets, (hsize_t)(n + (kind != 2)), 1);
}

// Labels. Kinds: 0 none; 1 n values from the input; 2 one short; 3 doubles; 4 declared huge.
static void write_labels(hid_t f, stream *s, int n) {
    uint64_t kind = take(s, 1) % 5;
    int32_t labels[16];
    for (int i = 0; i < n; i++) labels[i] = (int32_t)(take(s, 1) % 8) - 2;
    hsize_t count = (hsize_t)(kind == 2 && n > 0 ? n - 1 : n);
    if (kind == 1 || kind == 2) put_dataset(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, labels, count, 1);
    if (kind == 3) put_dataset(f, "labels", H5T_IEEE_F64LE, H5T_NATIVE_INT32, labels, (hsize_t)n, 1);
    if (kind == 4) put_huge(f, "labels", H5T_STD_I32LE);
}

// The skipped-inputs report. Kinds: 0 none; 1 bytes from the input; 2 declared huge; 3 2-D.
static void write_skipped(hid_t f, stream *s) {
    uint64_t kind = take(s, 1) % 4;
    char *text = take_string(s);
    if (kind == 1 || kind == 3) put_dataset(f, "skipped", H5T_STD_U8LE, H5T_NATIVE_UINT8, text, strlen(text), kind == 3 ? 2 : 1);
    if (kind == 2) put_huge(f, "skipped", H5T_STD_U8LE);
    free(text);
}

static void write_recipe(const char *path, const uint8_t *data, size_t size) {
    stream s = {data, data + size};
    int n = (int)(take(&s, 1) % 16);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    CLIPC_ASSERT(f >= 0);
    write_attr(f, &s, "format", SHARD_FORMAT_NAME, 0);
    write_attr(f, &s, "version", NULL, SHARD_FORMAT_VERSION);
    write_attr(f, &s, "num_samples", NULL, n);
    write_attr(f, &s, "image_encoding", SHARD_IMAGE_ENCODING, 0);
    write_attr(f, &s, "made_by", "{}", 0);
    write_class_names(f, &s);
    write_pair(f, &s, "images", "image_offsets", n);
    write_pair(f, &s, "captions", "caption_offsets", n);
    write_pair(f, &s, "keys", "key_offsets", n);
    write_labels(f, &s, n);
    write_skipped(f, &s);
    H5Fclose(f);
}

// ---- the properties --------------------------------------------------------------------------

static void check_shard(shard_reader *r, const char *path) {
    int64_t n = shard_reader_count(r);
    CLIPC_ASSERT(n >= 0 && shard_reader_image_offset(r, 0) == 0);
    for (int64_t i = 0; i < n; i++) {
        CLIPC_ASSERT(shard_reader_caption(r, i) && shard_reader_key(r, i));
        int32_t label = shard_reader_label(r, i);
        CLIPC_ASSERT(label >= -1 && label < shard_reader_num_classes(r));
        CLIPC_ASSERT(shard_reader_image_offset(r, i) <= shard_reader_image_offset(r, i + 1));
    }
    for (int c = 0; c < shard_reader_num_classes(r); c++) CLIPC_ASSERT(shard_reader_class_name(r, c) != NULL);
    uint64_t bytes = shard_reader_image_offset(r, n);
    CLIPC_ASSERT(bytes <= (1u << 20));  // a recipe writes at most 105 image bytes
    uint8_t *images = xmalloc(bytes ? bytes : 1);
    if (n > 0 && shard_reader_read_images(r, 0, n, images) != 0) FUZZ_CHECK_ERROR(path);
    free(images);
    CLIPC_ASSERT(shard_reader_made_by(r) && shard_reader_skipped(r));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool quiet;
    if (!quiet) H5Eset_auto2(H5E_DEFAULT, NULL, NULL), quiet = true;
    const char *path = fuzz_temp_file(NULL, 0, ".h5");
    write_recipe(path, data, size);
    shard_reader *r = shard_reader_open(path);
    if (!r) {
        FUZZ_CHECK_ERROR(path);
        return 0;
    }
    check_shard(r, path);
    shard_reader_close(r);
    return 0;
}
