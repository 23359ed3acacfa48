// Tests the safetensors reader and writer: round trips of every dtype (rank 0 and empty tensors
// included), the OpenCLIP fixture files, every malformed-file defect, atomic replacement when a
// write fails, and the F16/BF16 <-> F32 conversions.
// Usage: test_safetensors FIXTURES_DIR
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "model/config.h"
#include "model/safetensors.h"

static const char *fixtures_dir;
static char tmp_dir[256];

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmp_dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

// A file with the given header text and data_len bytes of data (header length as given, or the
// header's own length when header_len is -1).
static void write_st(const char *path, const char *header, long long header_len, size_t data_len) {
    size_t hl = strlen(header);
    uint64_t field = header_len < 0 ? hl : (uint64_t)header_len;
    uint8_t *buf = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(field >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (uint8_t)i;
    write_bytes(path, buf, 8 + hl + data_len);
    free(buf);
}

static void expect_open_error(const char *path, const char *defect) {
    err_clear();
    st_file *f = st_open(path);
    if (f) st_close(f);
    assert_null(f);
    if (!strstr(err_msg(), path) || !strstr(err_msg(), defect))
        fail_msg("for %s expected an error with '%s', got '%s'", path, defect, err_msg());
}

static int count_tmp_leftovers(void) {
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

// Round trips -------------------------------------------------------------------------------------

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[3];
} spec;

static const spec specs[] = {
    {"bool", ST_DTYPE_BOOL, 2, {2, 3}}, {"u8", ST_DTYPE_U8, 2, {2, 3}},
    {"i8", ST_DTYPE_I8, 1, {5}},        {"i16", ST_DTYPE_I16, 2, {3, 1}},
    {"u16", ST_DTYPE_U16, 1, {3}},      {"f16", ST_DTYPE_F16, 3, {1, 3, 1}},
    {"bf16", ST_DTYPE_BF16, 2, {2, 3}}, {"i32", ST_DTYPE_I32, 1, {7}},
    {"u32", ST_DTYPE_U32, 1, {1}},      {"f32", ST_DTYPE_F32, 2, {4, 3}},
    {"f64", ST_DTYPE_F64, 1, {3}},      {"i64", ST_DTYPE_I64, 2, {2, 2}},
    {"u64", ST_DTYPE_U64, 1, {2}},      {"scalar", ST_DTYPE_F32, 0, {0}},
    {"empty", ST_DTYPE_I64, 2, {0, 5}}, {"empty_bf16", ST_DTYPE_BF16, 1, {0}},
    {"a.f32", ST_DTYPE_F32, 1, {1}},
};
#define N_SPECS (int)(sizeof specs / sizeof *specs)

static size_t spec_nbytes(const spec *s) {
    size_t n = st_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) n *= (size_t)s->shape[d];
    return n;
}

static void fill_pattern(uint8_t *buf, size_t n, int seed) {
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(seed * 31 + i * 7 + 1);
}

static void test_roundtrip_all_dtypes(void **state) {
    (void)state;
    uint8_t data[N_SPECS][64];
    st_writer *w = st_writer_init();
    for (int i = N_SPECS - 1; i >= 0; i--) {  // added out of order: the writer sorts
        fill_pattern(data[i], spec_nbytes(&specs[i]), i);
        assert_int_equal(st_writer_add(w, specs[i].name, specs[i].dtype, specs[i].shape,
                                       specs[i].ndim, data[i]), 0);
    }
    st_writer_set_metadata(w, "format", "pt");
    st_writer_set_metadata(w, "note", "first");
    st_writer_set_metadata(w, "note", "\"quoted\" \\ unicode \xc3\xa9");
    const char *path = tmp_path("all.safetensors");
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);

    st_file *f = st_open(path);
    assert_non_null(f);
    assert_string_equal(st_path(f), path);
    assert_int_equal(st_count(f), N_SPECS);
    for (int i = 0; i < N_SPECS; i++) {
        const st_tensor *t = st_find(f, specs[i].name);
        assert_non_null(t);
        assert_string_equal(t->name, specs[i].name);
        assert_int_equal(t->dtype, specs[i].dtype);
        assert_int_equal(t->ndim, specs[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], specs[i].shape[d]);
            numel *= specs[i].shape[d];
        }
        assert_int_equal(t->numel, numel);
        assert_int_equal(t->nbytes, spec_nbytes(&specs[i]));
        assert_int_equal((uintptr_t)t->data % st_dtype_size(t->dtype), 0);
        if (t->nbytes) assert_memory_equal(t->data, data[i], t->nbytes);
    }
    assert_null(st_find(f, "missing"));
    assert_null(st_find(f, ""));
    assert_string_equal(st_metadata(f, "format"), "pt");
    assert_string_equal(st_metadata(f, "note"), "\"quoted\" \\ unicode \xc3\xa9");
    assert_null(st_metadata(f, "absent"));
    // The reference layout: larger dtypes first, then names in byte order, data contiguous.
    for (int i = 1; i < st_count(f); i++) {
        const st_tensor *a = st_get(f, i - 1), *b = st_get(f, i);
        assert_true(a->dtype > b->dtype || (a->dtype == b->dtype && strcmp(a->name, b->name) < 0));
    }
    st_close(f);

    FILE *raw = fopen(path, "rb");
    uint8_t len[8];
    assert_int_equal(fread(len, 1, 8, raw), 8);
    fclose(raw);
    assert_int_equal(len[0] % 8, 0);  // header padded so that data stays aligned
}

static void test_empty_file_list(void **state) {
    (void)state;
    st_writer *w = st_writer_init();
    const char *path = tmp_path("none.safetensors");
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);
    st_file *f = st_open(path);
    assert_non_null(f);
    assert_int_equal(st_count(f), 0);
    assert_null(st_find(f, "x"));
    assert_null(st_metadata(f, "x"));
    st_close(f);
}

static void test_writer_rejects(void **state) {
    (void)state;
    st_writer *w = st_writer_init();
    int64_t shape[9] = {2, 2, 1, 1, 1, 1, 1, 1, 1};
    float v[4] = {0};
    assert_int_equal(st_writer_add(w, "a", ST_DTYPE_F32, shape, 2, v), 0);
    assert_int_equal(st_writer_add(w, "a", ST_DTYPE_F32, shape, 2, v), -1);
    assert_non_null(strstr(err_msg(), "tensor 'a': added twice"));
    assert_int_equal(st_writer_add(w, "__metadata__", ST_DTYPE_F32, shape, 2, v), -1);
    assert_non_null(strstr(err_msg(), "reserved name"));
    assert_int_equal(st_writer_add(w, "deep", ST_DTYPE_F32, shape, 9, v), -1);
    assert_non_null(strstr(err_msg(), "rank 9"));
    int64_t negative[1] = {-1};
    assert_int_equal(st_writer_add(w, "neg", ST_DTYPE_F32, negative, 1, v), -1);
    assert_non_null(strstr(err_msg(), "negative dimension"));
    assert_int_equal(st_writer_add(w, "null", ST_DTYPE_F32, shape, 2, NULL), -1);
    assert_non_null(strstr(err_msg(), "no data"));
    int64_t huge[2] = {INT64_MAX / 2, 4};
    assert_int_equal(st_writer_add(w, "huge", ST_DTYPE_F32, huge, 2, v), -1);
    assert_non_null(strstr(err_msg(), "too large"));
    int64_t zero[1] = {0};
    assert_int_equal(st_writer_add(w, "nothing", ST_DTYPE_F32, zero, 1, NULL), 0);
    assert_int_equal(st_writer_set_metadata(w, "k", NULL), -1);
    assert_non_null(strstr(err_msg(), "metadata 'k': missing"));
    st_writer_free(w);
}

// Fixtures ----------------------------------------------------------------------------------------

static st_file *open_fixture(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixtures_dir, name);
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", err_msg());
    return f;
}

static void expect_shape(const st_file *f, const char *name, st_dtype dtype, int ndim, ...) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor '%s'", st_path(f), name);
    assert_int_equal(t->dtype, dtype);
    assert_int_equal(t->ndim, ndim);
    va_list ap;
    va_start(ap, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], va_arg(ap, int));
    va_end(ap);
}

static size_t data_region_size(const st_file *f) {
    struct stat st;
    assert_int_equal(stat(st_path(f), &st), 0);
    FILE *raw = fopen(st_path(f), "rb");
    uint8_t len[8];
    assert_int_equal(fread(len, 1, 8, raw), 8);
    fclose(raw);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len[i];
    return (size_t)st.st_size - 8 - n;
}

// Every shape follows from config.json, so any fixture folder laid out like this one passes.
static void test_fixture_weights(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", fixtures_dir);
    clip_config c;
    if (clip_config_load(path, &c)) fail_msg("%s", err_msg());
    st_file *f = open_fixture("weights.safetensors");
    int grid = c.vision.image_size / c.vision.patch_size;
    int vw = c.vision.width, tw = c.text.width;
    int mlp = (int)(vw * c.vision.mlp_ratio);
    expect_shape(f, "logit_scale", ST_DTYPE_F32, 0);
    expect_shape(f, "token_embedding.weight", ST_DTYPE_F32, 2, c.text.vocab_size, tw);
    expect_shape(f, "positional_embedding", ST_DTYPE_F32, 2, c.text.context_length, tw);
    expect_shape(f, "text_projection", ST_DTYPE_F32, 2, tw, c.embed_dim);
    expect_shape(f, "ln_final.weight", ST_DTYPE_F32, 1, tw);
    expect_shape(f, "visual.conv1.weight", ST_DTYPE_F32, 4, vw, 3, c.vision.patch_size,
                 c.vision.patch_size);
    expect_shape(f, "visual.class_embedding", ST_DTYPE_F32, 1, vw);
    expect_shape(f, "visual.positional_embedding", ST_DTYPE_F32, 2, grid * grid + 1, vw);
    expect_shape(f, "visual.proj", ST_DTYPE_F32, 2, vw, c.embed_dim);
    char name[128];
    for (int l = 0; l < c.vision.layers; l++) {
        snprintf(name, sizeof name, "visual.transformer.resblocks.%d.attn.in_proj_weight", l);
        expect_shape(f, name, ST_DTYPE_F32, 2, 3 * vw, vw);
        snprintf(name, sizeof name, "visual.transformer.resblocks.%d.mlp.c_fc.weight", l);
        expect_shape(f, name, ST_DTYPE_F32, 2, mlp, vw);
    }
    for (int l = 0; l < c.text.layers; l++) {
        snprintf(name, sizeof name, "transformer.resblocks.%d.attn.out_proj.weight", l);
        expect_shape(f, name, ST_DTYPE_F32, 2, tw, tw);
        snprintf(name, sizeof name, "transformer.resblocks.%d.mlp.c_proj.bias", l);
        expect_shape(f, name, ST_DTYPE_F32, 1, tw);
    }
    // 12 tensors per block (ln_1, attn in/out, ln_2, c_fc, c_proj: weights and biases), 8 vision
    // and 5 text tensors outside the blocks, plus logit_scale.
    assert_int_equal(st_count(f), 12 * (c.vision.layers + c.text.layers) + 8 + 5 + 1);
    size_t total = 0;
    for (int i = 0; i < st_count(f); i++) {
        assert_int_equal(st_get(f, i)->dtype, ST_DTYPE_F32);
        total += st_get(f, i)->nbytes;
    }
    assert_int_equal(total, data_region_size(f));
    const char *meta = st_metadata(f, "config");
    assert_non_null(meta);
    clip_config from_meta;
    assert_int_equal(clip_config_parse(meta, "weights.safetensors:config", &from_meta), 0);
    assert_int_equal(from_meta.embed_dim, c.embed_dim);
    assert_int_equal(from_meta.vision.width, c.vision.width);
    assert_int_equal(from_meta.text.layers, c.text.layers);
    st_close(f);
}

static void test_fixture_inputs_expected(void **state) {
    (void)state;
    st_file *in = open_fixture("inputs.safetensors");
    const st_tensor *tokens = st_find(in, "tokens");
    assert_non_null(tokens);
    assert_int_equal(tokens->dtype, ST_DTYPE_I64);
    assert_int_equal(tokens->ndim, 2);
    int batch = (int)tokens->shape[0], ctx = (int)tokens->shape[1];
    const int64_t *ids = tokens->data;
    for (int b = 0; b < batch; b++) {
        assert_int_equal(ids[b * ctx], 49406);  // start of text
        int64_t max = 0;
        for (int i = 0; i < ctx; i++) max = ids[b * ctx + i] > max ? ids[b * ctx + i] : max;
        assert_int_equal(max, 49407);  // end of text is the largest id
    }
    const st_tensor *images = st_find(in, "images");
    assert_non_null(images);
    assert_int_equal(images->ndim, 4);
    assert_int_equal(images->shape[0], batch);
    assert_int_equal(images->shape[1], 3);
    const st_tensor *raw = st_find(in, "images_unnormalized");
    assert_non_null(raw);
    for (int64_t i = 0; i < raw->numel; i++) {
        float v = ((const float *)raw->data)[i];
        assert_true(v >= 0 && v <= 1);
    }
    assert_non_null(st_metadata(in, "captions"));
    st_close(in);

    st_file *ex = open_fixture("expected.safetensors");
    expect_shape(ex, "logits_per_image", ST_DTYPE_F32, 2, batch, batch);
    expect_shape(ex, "logits_per_text", ST_DTYPE_F32, 2, batch, batch);
    expect_shape(ex, "clip_loss", ST_DTYPE_F32, 0);
    expect_shape(ex, "logit_scale", ST_DTYPE_F32, 0);
    const float *lpi = st_find(ex, "logits_per_image")->data;
    const float *lpt = st_find(ex, "logits_per_text")->data;
    for (int i = 0; i < batch; i++)
        for (int j = 0; j < batch; j++) {
            float a = lpi[i * batch + j], b = lpt[j * batch + i];
            assert_true(fabsf(a - b) <= 1e-5f * (1 + fabsf(a)));
        }
    st_close(ex);

    const char *others[] = {"debug.safetensors", "losses.safetensors"};
    for (int i = 0; i < 2; i++) {
        st_file *f = open_fixture(others[i]);
        assert_true(st_count(f) > 0);
        assert_non_null(st_metadata(f, "open_clip_version"));
        st_close(f);
    }
}

// Rewriting a real file through the writer keeps every tensor and metadata entry.
static void test_fixture_rewrite(void **state) {
    (void)state;
    st_file *f = open_fixture("weights.safetensors");
    st_writer *w = st_writer_init();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        assert_int_equal(st_writer_add(w, t->name, t->dtype, t->shape, t->ndim, t->data), 0);
    }
    st_writer_set_metadata(w, "config", st_metadata(f, "config"));
    const char *path = tmp_path("rewritten.safetensors");
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);
    st_file *g = st_open(path);
    assert_non_null(g);
    assert_int_equal(st_count(g), st_count(f));
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *a = st_get(f, i), *b = st_find(g, a->name);
        assert_non_null(b);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    assert_string_equal(st_metadata(g, "config"), st_metadata(f, "config"));
    st_close(g);
    st_close(f);
}

// Malformed files ---------------------------------------------------------------------------------

static void test_missing_and_short_files(void **state) {
    (void)state;
    expect_open_error(tmp_path("does-not-exist.safetensors"), "No such file");
    expect_open_error(tmp_dir, "not a regular file");
    const char *empty = tmp_path("empty.safetensors");
    write_bytes(empty, "", 0);
    expect_open_error(empty, "empty file");
    const char *shorter = tmp_path("short.safetensors");
    write_bytes(shorter, "\x10\0\0\0\0", 5);
    expect_open_error(shorter, "truncated header length");
    const char *beyond = tmp_path("beyond.safetensors");
    write_st(beyond, "{}", 1000, 0);
    expect_open_error(beyond, "header length 1000 exceeds");
    const char *huge = tmp_path("huge.safetensors");
    write_st(huge, "{}", (long long)1 << 62, 0);
    expect_open_error(huge, "exceeds");
}

typedef struct {
    const char *file;
    const char *header;
    size_t data_len;
    const char *defect;
} bad_case;

static const bad_case bad_cases[] = {
    {"badjson", "{\"a\": ", 0, "invalid JSON header"},
    {"trailing", "{} x", 0, "trailing bytes"},
    {"array", "[1, 2]", 0, "not a JSON object"},
    {"zero", "", 0, "not a JSON object"},
    {"spaces", "        ", 8, "not a JSON object"},
    {"nul", "{\"a\0\": 1}", 0, "NUL byte"},
    {"notobj", "{\"w\": 3}", 0, "tensor 'w': not a JSON object"},
    {"nodtype", "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, "tensor 'w': missing dtype"},
    {"dtype", "{\"w\": {\"dtype\": \"F8\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
     "tensor 'w': unknown dtype 'F8'"},
    {"noshape", "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, "tensor 'w': missing shape"},
    {"negshape", "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
     "tensor 'w': shape entries must be non-negative"},
    {"fracshape", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4,
     "tensor 'w': shape entries must be non-negative integers"},
    {"rank", "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}",
     1, "tensor 'w': rank 9"},
    {"bigshape", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
     "\"data_offsets\": [0, 4]}}", 4, "tensor 'w': shape is too large"},
    {"nooffsets", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, "tensor 'w': data_offsets must"},
    {"offsets3", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
     "tensor 'w': data_offsets must"},
    {"reversed", "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", 4,
     "tensor 'w': data_offsets [4, 0] end before"},
    {"outofrange", "{\"w\": {\"dtype\": \"F32\", \"shape\": [25], \"data_offsets\": [0, 100]}}", 16,
     "tensor 'w': data_offsets [0, 100] run past the end of the data region (16 bytes"},
    {"inconsistent", "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 8]}}", 8,
     "tensor 'w': data_offsets [0, 8] hold 8 bytes but shape [4] of F32 needs 16"},
    {"overlap", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
     "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12,
     "tensor 'b' overlaps tensor 'a'"},
    {"emptyinside", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
     "\"b\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}", 8,
     "tensor 'b' overlaps tensor 'a'"},
    {"gap", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, "
     "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [12, 20]}}", 20,
     "gap of 4 bytes before tensor 'b'"},
    {"uncovered", "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 12,
     "4 bytes after the last tensor"},
    {"dup", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
     "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
     "duplicate tensor name 'a'"},
    {"metaobj", "{\"__metadata__\": [1]}", 0, "__metadata__ is not a JSON object"},
    {"metaval", "{\"__metadata__\": {\"k\": 1}}", 0, "__metadata__ value of 'k' is not a string"},
    {"metadup", "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, "duplicate __metadata__ key 'k'"},
    {"metatwice", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0, "duplicate __metadata__"},
};

static void test_malformed_headers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.safetensors", bad_cases[i].file);
        const char *path = tmp_path(name);
        // The "nul" header holds a NUL byte, so its length is not strlen's.
        size_t hl = strcmp(bad_cases[i].file, "nul") == 0 ? 9 : strlen(bad_cases[i].header);
        uint8_t *buf = calloc(1, 8 + hl + bad_cases[i].data_len);
        buf[0] = (uint8_t)hl;
        memcpy(buf + 8, bad_cases[i].header, hl);
        write_bytes(path, buf, 8 + hl + bad_cases[i].data_len);
        free(buf);
        expect_open_error(path, bad_cases[i].defect);
    }
}

// Every truncation of a valid file fails cleanly; corrupting any byte never crashes.
static void test_truncations_and_corruptions(void **state) {
    (void)state;
    st_writer *w = st_writer_init();
    float a[3] = {1, 2, 3};
    int64_t b[2] = {7, 8};
    int64_t s3[1] = {3}, s2[1] = {2};
    st_writer_add(w, "a", ST_DTYPE_F32, s3, 1, a);
    st_writer_add(w, "b", ST_DTYPE_I64, s2, 1, b);
    st_writer_set_metadata(w, "k", "v");
    const char *good = tmp_path("good.safetensors");
    assert_int_equal(st_writer_write(w, good), 0);
    st_writer_free(w);
    FILE *f = fopen(good, "rb");
    uint8_t bytes[512];
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    assert_true(n > 40 && n < sizeof bytes);

    const char *cut = tmp_path("cut.safetensors");
    for (size_t len = 0; len < n; len++) {
        write_bytes(cut, bytes, len);
        err_clear();
        st_file *g = st_open(cut);
        assert_null(g);
        assert_non_null(strstr(err_msg(), cut));
    }
    const char *truncated_data = tmp_path("truncated-data.safetensors");
    write_bytes(truncated_data, bytes, n - 4);
    expect_open_error(truncated_data, "run past the end of the data region");

    const uint8_t probes[] = {0, '"', '{', '}', '[', ']', ',', '-', '9', 0xff};
    const char *mutated = tmp_path("mutated.safetensors");
    for (size_t pos = 0; pos < n; pos++)
        for (size_t p = 0; p < sizeof probes; p++) {
            uint8_t copy[512];
            memcpy(copy, bytes, n);
            copy[pos] = probes[p];
            write_bytes(mutated, copy, n);
            st_file *g = st_open(mutated);
            if (g) {
                for (int i = 0; i < st_count(g); i++) {  // touch every byte handed out
                    const st_tensor *t = st_get(g, i);
                    volatile uint8_t sum = 0;
                    for (size_t k = 0; k < t->nbytes; k++) sum += ((const uint8_t *)t->data)[k];
                }
                st_close(g);
            } else {
                assert_non_null(strstr(err_msg(), mutated));
            }
        }
}

// A header whose length is not a multiple of 8 leaves data misaligned: the reader copies it.
static void test_misaligned_data(void **state) {
    (void)state;
    const char *header = "{\"x\": {\"dtype\": \"F64\", \"shape\": [2], \"data_offsets\": [0, 16]}}";
    const char *path = tmp_path("misaligned.safetensors");
    size_t hl = strlen(header);
    assert_true(hl % 8 != 0);
    uint8_t buf[256] = {0};
    buf[0] = (uint8_t)hl;
    memcpy(buf + 8, header, hl);
    double values[2] = {1.5, -2.25};
    memcpy(buf + 8 + hl, values, 16);
    write_bytes(path, buf, 8 + hl + 16);
    st_file *f = st_open(path);
    assert_non_null(f);
    const st_tensor *t = st_find(f, "x");
    assert_int_equal((uintptr_t)t->data % 8, 0);
    assert_true(((const double *)t->data)[0] == 1.5 && ((const double *)t->data)[1] == -2.25);
    st_close(f);
}

// Atomic writes -----------------------------------------------------------------------------------

static void write_version(const char *path, float value, int64_t count) {
    float *data = malloc((size_t)count * sizeof *data);
    for (int64_t i = 0; i < count; i++) data[i] = value;
    st_writer *w = st_writer_init();
    assert_int_equal(st_writer_add(w, "v", ST_DTYPE_F32, &count, 1, data), 0);
    int rc = st_writer_write(w, path);
    st_writer_free(w);
    free(data);
    assert_int_equal(rc, 0);
}

static void expect_version(const char *path, float value, int64_t count) {
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", err_msg());
    const st_tensor *t = st_find(f, "v");
    assert_non_null(t);
    assert_int_equal(t->numel, count);
    assert_true(((const float *)t->data)[count - 1] == value);
    st_close(f);
}

static void test_atomic_replace(void **state) {
    (void)state;
    const char *path = tmp_path("model.safetensors");
    write_version(path, 1.0f, 4);
    write_version(path, 2.0f, 8);
    expect_version(path, 2.0f, 8);
    assert_int_equal(count_tmp_leftovers(), 0);
}

// The file size limit makes the write fail half-way (EFBIG), as a full disk would.
static void test_atomic_write_failure_keeps_old_file(void **state) {
    (void)state;
    const char *path = tmp_path("kept.safetensors");
    write_version(path, 1.0f, 4);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {4096, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int64_t count = 100000;
    float *big = calloc((size_t)count, sizeof *big);
    st_writer *w = st_writer_init();
    st_writer_add(w, "v", ST_DTYPE_F32, &count, 1, big);
    int rc = st_writer_write(w, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    st_writer_free(w);
    free(big);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err_msg(), path));
    assert_non_null(strstr(err_msg(), "write failed"));
    expect_version(path, 1.0f, 4);
    assert_int_equal(count_tmp_leftovers(), 0);
}

static void test_atomic_write_bad_targets(void **state) {
    (void)state;
    write_version(tmp_path("x"), 1.0f, 1);  // leaves a valid file to compare against below
    st_writer *w = st_writer_init();
    int64_t one = 1;
    float v = 3;
    st_writer_add(w, "v", ST_DTYPE_F32, &one, 1, &v);
    const char *no_dir = tmp_path("missing-dir/out.safetensors");
    assert_int_equal(st_writer_write(w, no_dir), -1);
    assert_non_null(strstr(err_msg(), no_dir));
    assert_non_null(strstr(err_msg(), "cannot create temporary file"));

    const char *dir = tmp_path("a-directory");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(st_writer_write(w, dir), -1);
    assert_non_null(strstr(err_msg(), "cannot rename"));
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_tmp_leftovers(), 0);

    if (geteuid() != 0) {  // root writes into read-only directories anyway
        const char *ro = tmp_path("read-only");
        assert_int_equal(mkdir(ro, 0755), 0);
        char target[600];
        snprintf(target, sizeof target, "%s/m.safetensors", ro);
        write_version(target, 1.0f, 2);
        assert_int_equal(chmod(ro, 0555), 0);
        assert_int_equal(st_writer_write(w, target), -1);
        assert_non_null(strstr(err_msg(), "Permission denied"));
        chmod(ro, 0755);
        expect_version(target, 1.0f, 2);
    }
    st_writer_free(w);
    expect_version(tmp_path("x"), 1.0f, 1);
}

// Conversion --------------------------------------------------------------------------------------

static uint16_t to_half(float x, st_dtype dtype) {
    uint16_t h;
    assert_int_equal(st_convert(&x, ST_DTYPE_F32, &h, dtype, 1), 0);
    return h;
}

static float from_half(uint16_t h, st_dtype dtype) {
    float x;
    assert_int_equal(st_convert(&h, dtype, &x, ST_DTYPE_F32, 1), 0);
    return x;
}

static void test_half_round_trips_exhaustive(void **state) {
    (void)state;
    st_dtype halves[2] = {ST_DTYPE_F16, ST_DTYPE_BF16};
    for (int k = 0; k < 2; k++)
        for (uint32_t h = 0; h < 65536; h++) {
            float x = from_half((uint16_t)h, halves[k]);
            uint16_t back = to_half(x, halves[k]);
            if (isnan(x))
                assert_true(isnan(from_half(back, halves[k])));
            else if (back != h)
                fail_msg("%s 0x%04x -> %g -> 0x%04x", st_dtype_name(halves[k]), h, x, back);
        }
}

static void test_half_known_values(void **state) {
    (void)state;
    assert_int_equal(to_half(1.0f, ST_DTYPE_F16), 0x3c00);
    assert_int_equal(to_half(-2.0f, ST_DTYPE_F16), 0xc000);
    assert_int_equal(to_half(65504.0f, ST_DTYPE_F16), 0x7bff);
    assert_int_equal(to_half(65519.0f, ST_DTYPE_F16), 0x7bff);
    assert_int_equal(to_half(65520.0f, ST_DTYPE_F16), 0x7c00);  // tie rounds to even: infinity
    assert_int_equal(to_half(INFINITY, ST_DTYPE_F16), 0x7c00);
    assert_int_equal(to_half(-0.0f, ST_DTYPE_F16), 0x8000);
    assert_int_equal(to_half(ldexpf(1, -24), ST_DTYPE_F16), 0x0001);  // smallest subnormal
    assert_int_equal(to_half(ldexpf(1, -25), ST_DTYPE_F16), 0x0000);  // tie to even: zero
    assert_int_equal(to_half(ldexpf(3, -26), ST_DTYPE_F16), 0x0001);
    assert_int_equal(to_half(ldexpf(3, -25), ST_DTYPE_F16), 0x0002);  // tie 1.5 -> 2
    assert_int_equal(to_half(1.0f + ldexpf(1, -11), ST_DTYPE_F16), 0x3c00);  // tie to even
    assert_int_equal(to_half(1.0f + ldexpf(3, -11), ST_DTYPE_F16), 0x3c02);
    assert_true(isnan(from_half(to_half(NAN, ST_DTYPE_F16), ST_DTYPE_F16)));
    assert_true(from_half(0x0001, ST_DTYPE_F16) == ldexpf(1, -24));
    assert_true(from_half(0x3555, ST_DTYPE_F16) == 0.333251953125f);
    assert_int_equal(to_half(1.0f, ST_DTYPE_BF16), 0x3f80);
    assert_int_equal(to_half(1.0f + ldexpf(1, -8), ST_DTYPE_BF16), 0x3f80);  // tie to even
    assert_int_equal(to_half(1.0f + ldexpf(3, -8), ST_DTYPE_BF16), 0x3f82);
    assert_int_equal(to_half(3.4e38f, ST_DTYPE_BF16), 0x7f80);  // rounds past the largest: inf
    assert_true(isnan(from_half(to_half(NAN, ST_DTYPE_BF16), ST_DTYPE_BF16)));
    assert_true(from_half(0xc0a0, ST_DTYPE_BF16) == -5.0f);
}

// Against the compiler's own _Float16 conversion over a sweep of float bit patterns.
static void test_f16_matches_compiler(void **state) {
    (void)state;
#ifdef __FLT16_MAX__
    for (uint64_t bits = 0; bits <= 0xffffffffu; bits += 65521) {
        uint32_t u = (uint32_t)bits;
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x)) continue;
        _Float16 ref = (_Float16)x;
        uint16_t ref_bits;
        memcpy(&ref_bits, &ref, 2);
        uint16_t got = to_half(x, ST_DTYPE_F16);
        if (got != ref_bits) fail_msg("%a -> 0x%04x, compiler 0x%04x", x, got, ref_bits);
        assert_true(from_half(got, ST_DTYPE_F16) == (float)ref);
    }
#else
    skip();
#endif
}

static void test_convert_arrays(void **state) {
    (void)state;
    double d[4] = {0.5, -1.25, 1e300, 3.0};
    float f[4];
    assert_int_equal(st_convert(d, ST_DTYPE_F64, f, ST_DTYPE_F32, 4), 0);
    assert_true(f[0] == 0.5f && f[1] == -1.25f && isinf(f[2]) && f[3] == 3.0f);
    uint16_t bf[4];
    assert_int_equal(st_convert(f, ST_DTYPE_F32, bf, ST_DTYPE_BF16, 4), 0);
    uint16_t h[4];
    assert_int_equal(st_convert(bf, ST_DTYPE_BF16, h, ST_DTYPE_F16, 4), 0);
    double back[4];
    assert_int_equal(st_convert(h, ST_DTYPE_F16, back, ST_DTYPE_F64, 4), 0);
    assert_true(back[0] == 0.5 && back[1] == -1.25 && isinf(back[2]) && back[3] == 3.0);
    int64_t i[1] = {1};
    assert_int_equal(st_convert(i, ST_DTYPE_I64, f, ST_DTYPE_F32, 1), -1);
    assert_non_null(strstr(err_msg(), "cannot convert I64 to F32"));
}

// Setup -------------------------------------------------------------------------------------------

static int remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) return remove(path);
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
    }
    closedir(d);
    return rmdir(path);
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmp_dir, sizeof tmp_dir, "%s/clipc-st-XXXXXX", base);
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    return remove_tree(tmp_dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    fixtures_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_dtypes),
        cmocka_unit_test(test_empty_file_list),
        cmocka_unit_test(test_writer_rejects),
        cmocka_unit_test(test_fixture_weights),
        cmocka_unit_test(test_fixture_inputs_expected),
        cmocka_unit_test(test_fixture_rewrite),
        cmocka_unit_test(test_missing_and_short_files),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_truncations_and_corruptions),
        cmocka_unit_test(test_misaligned_data),
        cmocka_unit_test(test_atomic_replace),
        cmocka_unit_test(test_atomic_write_failure_keeps_old_file),
        cmocka_unit_test(test_atomic_write_bad_targets),
        cmocka_unit_test(test_half_round_trips_exhaustive),
        cmocka_unit_test(test_half_known_values),
        cmocka_unit_test(test_f16_matches_compiler),
        cmocka_unit_test(test_convert_arrays),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
