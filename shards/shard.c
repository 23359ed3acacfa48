#include "shards/shard.h"

#include <hdf5.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"
#include "common/error.h"

// The serial HDF5 library is not thread-safe: every call below runs under this lock.
static pthread_mutex_t hdf5_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local bool hdf5_silenced;  // a thread-safe HDF5 build keeps error printing per thread

static void hdf5_enter(void) {
    pthread_mutex_lock(&hdf5_lock);
    if (!hdf5_silenced) H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hdf5_silenced = true;
}

// Clears this thread's error stack: HDF5 keeps it per thread and does not free it at thread exit.
static void hdf5_leave(void) {
    H5Eclear2(H5E_DEFAULT);
    pthread_mutex_unlock(&hdf5_lock);
}

// ---- writing -------------------------------------------------------------------------------

static hid_t vlen_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// Writes a string attribute (n == 0: scalar holding values[0]; else a 1-D array of n strings).
static int write_string_attr(hid_t loc, const char *name, const char *const *values, int n) {
    hid_t t = vlen_string_type();
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(loc, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, values) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
    return rc;
}

static int write_int_attr(hid_t loc, const char *name, hid_t file_type, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &value) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

static int write_dataset(hid_t f, const char *name, hid_t file_type, hid_t mem_type, const void *data,
                         uint64_t n) {
    hsize_t dims[1] = {n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(f, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 ? -1 : 0;
    if (rc == 0 && n > 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = -1;
    if (d >= 0) H5Dclose(d);
    H5Sclose(space);
    return rc;
}

// Concatenates n byte strings into one blob with n + 1 offsets.
static uint8_t *blob_join(int64_t n, const uint8_t *const *items, const size_t *sizes, uint64_t *offsets) {
    offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) offsets[i + 1] = offsets[i] + sizes[i];
    uint8_t *blob = xmalloc(offsets[n] ? offsets[n] : 1);
    for (int64_t i = 0; i < n; i++) memcpy(blob + offsets[i], items[i], sizes[i]);
    return blob;
}

static int write_blob(hid_t f, const char *name, const char *offsets_name, int64_t n,
                      const uint8_t *const *items, const size_t *sizes) {
    uint64_t *offsets = xmalloc((size_t)(n + 1) * sizeof(uint64_t));
    uint8_t *blob = blob_join(n, items, sizes, offsets);
    int rc = write_dataset(f, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, blob, offsets[n]);
    if (rc == 0) rc = write_dataset(f, offsets_name, H5T_STD_U64LE, H5T_NATIVE_UINT64, offsets, (uint64_t)n + 1);
    free(blob);
    free(offsets);
    return rc;
}

static int write_text_blob(hid_t f, const char *name, const char *offsets_name, int64_t n,
                           const char *const *texts) {
    size_t *sizes = xmalloc((size_t)(n ? n : 1) * sizeof(size_t));
    for (int64_t i = 0; i < n; i++) sizes[i] = strlen(texts[i]);
    int rc = write_blob(f, name, offsets_name, n, (const uint8_t *const *)texts, sizes);
    free(sizes);
    return rc;
}

static int write_contents(hid_t f, const shard_contents *c) {
    const char *format = SHARD_FORMAT_NAME, *encoding = SHARD_IMAGE_ENCODING;
    if (write_string_attr(f, "format", &format, 0) || write_int_attr(f, "version", H5T_STD_I32LE, SHARD_FORMAT_VERSION) ||
        write_int_attr(f, "num_samples", H5T_STD_I64LE, c->n) || write_string_attr(f, "image_encoding", &encoding, 0))
        return -1;
    if (c->made_by && write_string_attr(f, "made_by", &c->made_by, 0)) return -1;
    if (c->labels && write_string_attr(f, "class_names", c->class_names, c->n_classes)) return -1;
    if (write_blob(f, "images", "image_offsets", c->n, c->images, c->image_sizes) ||
        write_text_blob(f, "captions", "caption_offsets", c->n, c->captions) ||
        write_text_blob(f, "keys", "key_offsets", c->n, c->keys))
        return -1;
    if (c->labels && write_dataset(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, c->labels, (uint64_t)c->n)) return -1;
    if (c->skipped && write_dataset(f, "skipped", H5T_STD_U8LE, H5T_NATIVE_UINT8, c->skipped, strlen(c->skipped)))
        return -1;
    return 0;
}

static int write_shard(const char *tmp, void *contents) {
    hdf5_enter();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);  // dense storage for many class names
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    int rc = f < 0 ? -1 : write_contents(f, contents);
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    hdf5_leave();
    return rc == 0 ? 0 : err_set("cannot write the shard (HDF5 error; disk full or not writable?)");
}

int shard_write(const char *path, const shard_contents *c) {
    CLIPC_ASSERT(!c->labels || (c->class_names && c->n_classes > 0));
    return atomic_file_write(path, write_shard, (void *)c);
}

// ---- reading -------------------------------------------------------------------------------

// n NUL-terminated strings read from a blob with offsets (text + start[i]).
typedef struct {
    char *text;
    uint64_t *start;  // (n)
} text_table;

struct shard_reader {
    char *path;
    hid_t file, images;
    int64_t n;
    uint64_t *image_offsets;  // (n + 1)
    text_table captions, keys;
    int32_t *labels;          // (n) or NULL
    char **class_names;       // (n_classes)
    int n_classes;
    char *made_by, *skipped;
};

static int defect(const char *path, const char *what) { return err_set("%s: %s", path, what); }

static char *read_string_attr(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    hid_t space = H5Aget_space(a);
    char *out = NULL;
    if (H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_npoints(space) == 1) {
        if (H5Tis_variable_str(t) > 0) {
            char *v = NULL;
            if (H5Aread(a, t, &v) >= 0 && v) out = xstrdup(v);
            H5free_memory(v);
        } else {
            size_t size = H5Tget_size(t);
            out = xcalloc(size + 1, 1);
            if (H5Aread(a, t, out) < 0) free(out), out = NULL;
        }
    }
    H5Sclose(space);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

static int read_int_attr(hid_t loc, const char *name, int64_t *value) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int rc = H5Tget_class(t) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, value) >= 0 ? 0 : -1;
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int read_class_names(shard_reader *r) {
    if (H5Aexists(r->file, "class_names") <= 0) return 0;
    hid_t a = H5Aopen(r->file, "class_names", H5P_DEFAULT);
    hid_t space = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    hid_t t = vlen_string_type();
    char **v = xcalloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    int rc = n > 0 && n < (1 << 24) && H5Aread(a, t, v) >= 0 ? 0 : -1;
    if (rc == 0) {
        r->n_classes = (int)n;
        r->class_names = xcalloc((size_t)n, sizeof(char *));
        for (int i = 0; i < n; i++) r->class_names[i] = xstrdup(v[i] ? v[i] : "");
    }
    for (hssize_t i = 0; rc == 0 && i < n; i++) H5free_memory(v[i]);
    free(v);
    H5Tclose(t);
    H5Sclose(space);
    H5Aclose(a);
    return rc == 0 ? 0 : defect(r->path, "attribute 'class_names' is not a list of strings");
}

// Length of a 1-D dataset, -1 when it is missing or not 1-D, -2 when the file stores fewer
// elements than it declares (damaged, or made to exhaust memory: a dataset can declare 2^40
// elements in a few bytes).
static int64_t dataset_length(hid_t f, const char *name) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hsize_t dims[1] = {0};
    int64_t n = H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, dims, NULL) == 1
                    ? (int64_t)dims[0]
                    : -1;
    size_t elem = type >= 0 ? H5Tget_size(type) : 0;
    if (n > 0 && (elem == 0 || (uint64_t)n > H5Dget_storage_size(d) / elem)) n = -2;
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    return n;
}

static int length_defect(const shard_reader *r, const char *name, int64_t n) {
    if (n == -2) return err_set("%s: dataset '%s' declares more elements than the file stores (truncated or corrupt file)", r->path, name);
    return err_set("%s: dataset '%s' is missing or not 1-D", r->path, name);
}

// Reads a whole 1-D dataset of `expected` elements (-1: any length) into a new buffer.
static void *read_dataset(shard_reader *r, const char *name, hid_t mem_type, size_t elem, int64_t expected,
                          int64_t *length) {
    int64_t n = dataset_length(r->file, name);
    if (n < 0 || (expected >= 0 && n != expected)) {
        if (n < 0) length_defect(r, name, n);
        else err_set("%s: dataset '%s' has %lld elements, expected %lld", r->path, name, (long long)n, (long long)expected);
        return NULL;
    }
    void *buf = xmalloc((size_t)(n ? n : 1) * elem);
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
    herr_t st = n ? H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    H5Dclose(d);
    if (st < 0) {
        free(buf);
        err_set("%s: dataset '%s' cannot be read (truncated or corrupt file)", r->path, name);
        return NULL;
    }
    if (length) *length = n;
    return buf;
}

static int check_offsets(const shard_reader *r, const char *name, const uint64_t *off, int64_t n, uint64_t blob) {
    if (off[0] != 0) return err_set("%s: '%s' does not start at 0", r->path, name);
    for (int64_t i = 0; i < n; i++)
        if (off[i + 1] < off[i]) return err_set("%s: '%s' decreases at sample %lld", r->path, name, (long long)i);
    if (off[n] != blob)
        return err_set("%s: '%s' ends at %llu but its blob holds %llu bytes", r->path, name,
                       (unsigned long long)off[n], (unsigned long long)blob);
    return 0;
}

static int read_text_table(shard_reader *r, const char *name, const char *offsets_name, text_table *out) {
    int64_t blob_len = 0;
    uint64_t *off = read_dataset(r, offsets_name, H5T_NATIVE_UINT64, sizeof(uint64_t), r->n + 1, NULL);
    if (!off) return -1;
    uint8_t *blob = read_dataset(r, name, H5T_NATIVE_UINT8, 1, -1, &blob_len);
    int rc = blob ? check_offsets(r, offsets_name, off, r->n, (uint64_t)blob_len) : -1;
    if (rc == 0 && memchr(blob, 0, (size_t)blob_len)) rc = err_set("%s: '%s' holds a NUL byte", r->path, name);
    if (rc == 0) {
        out->text = xmalloc((size_t)blob_len + (size_t)r->n + 1);
        out->start = xmalloc((size_t)(r->n ? r->n : 1) * sizeof(uint64_t));
        for (int64_t i = 0; i < r->n; i++) {
            out->start[i] = off[i] + (uint64_t)i;
            memcpy(out->text + out->start[i], blob + off[i], off[i + 1] - off[i]);
            out->text[out->start[i] + off[i + 1] - off[i]] = '\0';
        }
    }
    free(blob);
    free(off);
    return rc;
}

static int read_labels(shard_reader *r) {
    bool has_labels = H5Lexists(r->file, "labels", H5P_DEFAULT) > 0;
    if (has_labels != (r->n_classes > 0))
        return defect(r->path, has_labels ? "dataset 'labels' without attribute 'class_names'"
                                          : "attribute 'class_names' without dataset 'labels'");
    if (!has_labels) return 0;
    r->labels = read_dataset(r, "labels", H5T_NATIVE_INT32, sizeof(int32_t), r->n, NULL);
    if (!r->labels) return -1;
    for (int64_t i = 0; i < r->n; i++)
        if (r->labels[i] < 0 || r->labels[i] >= r->n_classes)
            return err_set("%s: label %d of sample %lld is outside the %d classes", r->path, r->labels[i],
                           (long long)i, r->n_classes);
    return 0;
}

static int read_header(shard_reader *r) {
    char *format = read_string_attr(r->file, "format");
    bool ok = format && strcmp(format, SHARD_FORMAT_NAME) == 0;
    free(format);
    if (!ok) return defect(r->path, "not a clipc shard (root attribute 'format' is not '" SHARD_FORMAT_NAME "')");
    int64_t version = 0;
    if (read_int_attr(r->file, "version", &version)) return defect(r->path, "attribute 'version' is missing");
    if (version != SHARD_FORMAT_VERSION)
        return err_set("%s: shard format version %lld, this build reads version %d", r->path, (long long)version,
                       SHARD_FORMAT_VERSION);
    if (read_int_attr(r->file, "num_samples", &r->n) || r->n < 0)
        return defect(r->path, "attribute 'num_samples' is missing or negative");
    hsize_t file_size = 0;
    if (H5Fget_filesize(r->file, &file_size) < 0 || (uint64_t)r->n > file_size / 8)  // each sample has 8-byte offsets
        return err_set("%s: attribute 'num_samples' (%lld) is more than the file can hold", r->path, (long long)r->n);
    char *encoding = read_string_attr(r->file, "image_encoding");
    ok = encoding && strcmp(encoding, SHARD_IMAGE_ENCODING) == 0;
    free(encoding);
    if (!ok) return defect(r->path, "attribute 'image_encoding' is not '" SHARD_IMAGE_ENCODING "'");
    char *made_by = read_string_attr(r->file, "made_by");
    r->made_by = made_by ? made_by : xstrdup("");
    return 0;
}

static int read_images_index(shard_reader *r) {
    r->image_offsets = read_dataset(r, "image_offsets", H5T_NATIVE_UINT64, sizeof(uint64_t), r->n + 1, NULL);
    if (!r->image_offsets) return -1;
    int64_t blob = dataset_length(r->file, "images");
    if (blob < 0) return length_defect(r, "images", blob);
    if (check_offsets(r, "image_offsets", r->image_offsets, r->n, (uint64_t)blob)) return -1;
    r->images = H5Dopen2(r->file, "images", H5P_DEFAULT);
    return 0;
}

static int read_skipped(shard_reader *r) {
    if (H5Lexists(r->file, "skipped", H5P_DEFAULT) <= 0) {
        r->skipped = xstrdup("");
        return 0;
    }
    int64_t n = 0;
    char *text = read_dataset(r, "skipped", H5T_NATIVE_UINT8, 1, -1, &n);
    if (!text) return -1;
    r->skipped = xrealloc(text, (size_t)n + 1);
    r->skipped[n] = '\0';
    return 0;
}

static int read_structure(shard_reader *r) {
    if (read_header(r) || read_images_index(r) || read_text_table(r, "captions", "caption_offsets", &r->captions) ||
        read_text_table(r, "keys", "key_offsets", &r->keys) || read_class_names(r) || read_labels(r) ||
        read_skipped(r))
        return -1;
    return 0;
}

shard_reader *shard_reader_open(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        err_errno(path);
        return NULL;
    }
    shard_reader *r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    r->images = -1;
    hdf5_enter();
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = r->file < 0 ? defect(path, "not an HDF5 file, or truncated") : read_structure(r);
    hdf5_leave();
    if (rc != 0) {
        shard_reader_close(r);
        return NULL;
    }
    return r;
}

void shard_reader_close(shard_reader *r) {
    if (!r) return;
    hdf5_enter();
    if (r->images >= 0) H5Dclose(r->images);
    if (r->file >= 0) H5Fclose(r->file);
    hdf5_leave();
    for (int i = 0; i < r->n_classes; i++) free(r->class_names[i]);
    free(r->class_names);
    free(r->captions.text);
    free(r->captions.start);
    free(r->keys.text);
    free(r->keys.start);
    free(r->image_offsets);
    free(r->labels);
    free(r->made_by);
    free(r->skipped);
    free(r->path);
    free(r);
}

const char *shard_reader_path(const shard_reader *r) { return r->path; }
int64_t shard_reader_count(const shard_reader *r) { return r->n; }
const char *shard_reader_caption(const shard_reader *r, int64_t i) { return r->captions.text + r->captions.start[i]; }
const char *shard_reader_key(const shard_reader *r, int64_t i) { return r->keys.text + r->keys.start[i]; }
int32_t shard_reader_label(const shard_reader *r, int64_t i) { return r->labels ? r->labels[i] : -1; }
int shard_reader_num_classes(const shard_reader *r) { return r->n_classes; }
const char *shard_reader_class_name(const shard_reader *r, int c) { return r->class_names[c]; }
const char *shard_reader_made_by(const shard_reader *r) { return r->made_by; }
const char *shard_reader_skipped(const shard_reader *r) { return r->skipped; }
uint64_t shard_reader_image_offset(const shard_reader *r, int64_t i) { return r->image_offsets[i]; }

int shard_reader_read_images(shard_reader *r, int64_t first, int64_t count, uint8_t *dst) {
    CLIPC_ASSERT(first >= 0 && count >= 0 && first + count <= r->n);
    hsize_t start[1] = {r->image_offsets[first]};
    hsize_t len[1] = {r->image_offsets[first + count] - r->image_offsets[first]};
    if (len[0] == 0) return 0;
    hdf5_enter();
    hid_t file_space = H5Dget_space(r->images);
    hid_t mem_space = H5Screate_simple(1, len, NULL);
    herr_t st = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, len, NULL);
    if (st >= 0) st = H5Dread(r->images, H5T_NATIVE_UINT8, mem_space, file_space, H5P_DEFAULT, dst);
    H5Sclose(mem_space);
    H5Sclose(file_space);
    hdf5_leave();
    if (st < 0)
        return err_set("%s: cannot read the images of samples %lld-%lld (truncated or corrupt file)", r->path,
                       (long long)first, (long long)(first + count - 1));
    return 0;
}
