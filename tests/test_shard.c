// Tests of the shard format and the manifest: round trips and every defect the reader must name.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "image/image.h"
#include "shards/manifest.h"
#include "shards/shard.h"
#include "data_testutil.h"

#define tmp testutil_dir

#define N 4
static const char *const captions[N] = {"a cat, on a mat", "caf\xc3\xa9 \xe2\x98\x95 \"quoted\"\ttab", "", "line\nbreak"};
static const char *const keys[N] = {"k0", "k/1", "k2", "k3"};
static const char *const classes[2] = {"T-shirt/top", "Ankle boot"};
static const int32_t labels[N] = {1, 0, 1, 1};

// Writes a 4-sample shard; lossless images (or lossy when lossless is false). Returns its path.
static char *write_shard(const char *name, bool lossless, image_rgb *pictures) {
    uint8_t *images[N];
    size_t sizes[N];
    for (int i = 0; i < N; i++) {
        pictures[i] = testutil_picture(40 + 8 * i, 30 + 4 * i, i);
        assert_int_equal(image_encode_webp(&pictures[i], pictures[i].width, pictures[i].height, 90, lossless, &images[i], &sizes[i]), 0);
    }
    shard_contents c = {.n = N, .images = (const uint8_t *const *)images, .image_sizes = sizes, .captions = captions,
                        .keys = keys, .labels = labels, .class_names = classes, .n_classes = 2,
                        .made_by = "{\"tool\":\"test\"}", .skipped = "bad\tx.jpg\tcorrupt JPEG\n"};
    char *path = testutil_path(tmp, name);
    assert_int_equal(shard_write(path, &c), 0);
    for (int i = 0; i < N; i++) free(images[i]);
    return path;
}

static void decode_all(shard_reader *r, int64_t i, image_rgb *out) {
    size_t size = shard_reader_image_offset(r, i + 1) - shard_reader_image_offset(r, i);
    uint8_t *bytes = malloc(size);
    assert_int_equal(shard_reader_read_images(r, i, 1, bytes), 0);
    assert_int_equal(image_decode(bytes, size, 0, out), 0);
    free(bytes);
}

static void check_round_trip(bool lossless, double min_psnr) {
    image_rgb pictures[N];
    char *path = write_shard(lossless ? "lossless.h5" : "lossy.h5", lossless, pictures);
    shard_reader *r = shard_reader_open(path);
    assert_non_null(r);
    assert_int_equal(shard_reader_count(r), N);
    assert_int_equal(shard_reader_num_classes(r), 2);
    assert_string_equal(shard_reader_class_name(r, 0), classes[0]);
    assert_string_equal(shard_reader_made_by(r), "{\"tool\":\"test\"}");
    assert_string_equal(shard_reader_skipped(r), "bad\tx.jpg\tcorrupt JPEG\n");
    for (int i = 0; i < N; i++) {
        assert_memory_equal(shard_reader_caption(r, i), captions[i], strlen(captions[i]) + 1);
        assert_string_equal(shard_reader_key(r, i), keys[i]);
        assert_int_equal(shard_reader_label(r, i), labels[i]);
        image_rgb img;
        decode_all(r, i, &img);
        assert_int_equal(img.width, pictures[i].width);
        assert_int_equal(img.height, pictures[i].height);
        double psnr = testutil_psnr(img.rgb, pictures[i].rgb, (size_t)img.width * img.height);
        if (lossless) assert_true(isinf(psnr));
        else assert_true(psnr >= min_psnr);
        image_rgb_free(&img);
        image_rgb_free(&pictures[i]);
    }
    shard_reader_close(r);
    free(path);
}

static void test_round_trip_lossless(void **state) {
    (void)state;
    check_round_trip(true, 0);
}

// Lossy WebP at quality 90 keeps these smooth pictures above 30 dB PSNR.
static void test_round_trip_lossy(void **state) {
    (void)state;
    check_round_trip(false, 30.0);
}

static void test_read_image_runs(void **state) {
    (void)state;
    image_rgb pictures[N];
    char *path = write_shard("runs.h5", true, pictures);
    shard_reader *r = shard_reader_open(path);
    size_t all = shard_reader_image_offset(r, N);
    uint8_t *run = malloc(all), *one = malloc(all);
    assert_int_equal(shard_reader_read_images(r, 0, N, run), 0);
    for (int i = 0; i < N; i++) {
        size_t off = shard_reader_image_offset(r, i), len = shard_reader_image_offset(r, i + 1) - off;
        assert_int_equal(shard_reader_read_images(r, i, 1, one), 0);
        assert_memory_equal(run + off, one, len);
        image_rgb_free(&pictures[i]);
    }
    free(run), free(one);
    shard_reader_close(r);
    free(path);
}

// Opening must fail with a message holding the path and `defect`.
static void expect_defect(const char *path, const char *defect) {
    err_clear();
    shard_reader *r = shard_reader_open(path);
    assert_null(r);
    if (!strstr(err_msg(), path) || !strstr(err_msg(), defect)) fail_msg("got '%s', want '%s'", err_msg(), defect);
}

static void test_missing_and_not_hdf5(void **state) {
    (void)state;
    char *missing = testutil_path(tmp, "nope.h5"), *text = testutil_path(tmp, "text.h5");
    expect_defect(missing, "No such file");
    assert_int_equal(testutil_write_file(text, "hello", 5), 0);
    expect_defect(text, "not an HDF5 file");
    free(missing), free(text);
}

static void test_truncated(void **state) {
    (void)state;
    image_rgb pictures[N];
    char *path = write_shard("trunc.h5", true, pictures);
    for (int i = 0; i < N; i++) image_rgb_free(&pictures[i]);
    assert_int_equal(testutil_truncate(path, 3000), 0);
    expect_defect(path, "truncated");
    free(path);
}

// Rewrites one attribute or dataset of a valid shard, then expects `defect` on open.
typedef void (*damage_fn)(hid_t file);

static void expect_damage(const char *name, damage_fn damage, const char *defect) {
    image_rgb pictures[N];
    char *path = write_shard(name, true, pictures);
    for (int i = 0; i < N; i++) image_rgb_free(&pictures[i]);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    damage(f);
    H5Fclose(f);
    expect_defect(path, defect);
    free(path);
}

static void set_int_attr(hid_t f, const char *name, int64_t v) {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}

static void set_u64(hid_t f, const char *name, int index, uint64_t v) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t start[1] = {(hsize_t)index}, count[1] = {1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(1, count, NULL);
    H5Dwrite(d, H5T_NATIVE_UINT64, ms, fs, H5P_DEFAULT, &v);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
}

static void damage_version(hid_t f) { set_int_attr(f, "version", 7); }
static void damage_count(hid_t f) { set_int_attr(f, "num_samples", 5); }
static void damage_format(hid_t f) { H5Adelete(f, "format"); }
static void damage_offsets_end(hid_t f) { set_u64(f, "image_offsets", N, 1u << 30); }
static void damage_offsets_order(hid_t f) { set_u64(f, "caption_offsets", 1, 1000); }
static void damage_labels(hid_t f) {
    hid_t d = H5Dopen2(f, "labels", H5P_DEFAULT);
    int32_t bad[N] = {0, 1, 5, 0};
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, bad);
    H5Dclose(d);
}
static void damage_missing_keys(hid_t f) { H5Ldelete(f, "key_offsets", H5P_DEFAULT); }

static void test_defects(void **state) {
    (void)state;
    expect_damage("version.h5", damage_version, "version 7");
    expect_damage("count.h5", damage_count, "'image_offsets' has 5 elements, expected 6");
    expect_damage("format.h5", damage_format, "not a clipc shard");
    expect_damage("end.h5", damage_offsets_end, "'image_offsets' ends at");
    expect_damage("order.h5", damage_offsets_order, "'caption_offsets' decreases at sample 1");
    expect_damage("labels.h5", damage_labels, "label 5 of sample 2 is outside the 2 classes");
    expect_damage("keys.h5", damage_missing_keys, "'key_offsets' is missing");
}

static void test_empty_shard(void **state) {
    (void)state;
    shard_contents c = {.n = 0};
    char *path = testutil_path(tmp, "empty.h5");
    assert_int_equal(shard_write(path, &c), 0);
    shard_reader *r = shard_reader_open(path);
    assert_non_null(r);
    assert_int_equal(shard_reader_count(r), 0);
    assert_int_equal(shard_reader_label(r, 0), -1);
    shard_reader_close(r);
    free(path);
}

static void write_text(const char *name, const char *text, char **path) {
    *path = testutil_path(tmp, name);
    assert_int_equal(testutil_write_file(*path, text, strlen(text)), 0);
}

static void expect_manifest_error(const char *name, const char *text, const char *defect) {
    char *path;
    write_text(name, text, &path);
    assert_null(manifest_load(path));
    if (!strstr(err_msg(), path) || !strstr(err_msg(), defect)) fail_msg("got '%s', want '%s'", err_msg(), defect);
    free(path);
}

static void test_manifest(void **state) {
    (void)state;
    char *path;
    write_text("m.json",
               "{\"format\":\"clipc-manifest\",\"version\":1,\"num_samples\":5,\"class_names\":[\"a\",\"b\"],"
               "\"made_by\":{\"tool\":\"x\"},\"shards\":[{\"path\":\"s0.h5\",\"num_samples\":2},"
               "{\"path\":\"/abs/s1.h5\",\"num_samples\":3,\"skipped\":1}]}",
               &path);
    manifest *m = manifest_load(path);
    assert_non_null(m);
    assert_int_equal(m->n_shards, 2);
    assert_int_equal(m->num_samples, 5);
    assert_int_equal(m->n_classes, 2);
    assert_string_equal(m->class_names[1], "b");
    assert_string_equal(m->shards[1].resolved_path, "/abs/s1.h5");
    char *expect = testutil_path(tmp, "s0.h5");
    assert_string_equal(m->shards[0].resolved_path, expect);
    assert_string_equal(m->made_by, "{\"tool\":\"x\"}");
    // save, load again: same content
    char *copy = testutil_path(tmp, "copy.json");
    assert_int_equal(manifest_save(copy, m), 0);
    manifest *m2 = manifest_load(copy);
    assert_non_null(m2);
    assert_int_equal(m2->num_samples, 5);
    assert_int_equal(m2->skipped, 1);
    assert_string_equal(m2->shards[1].path, "/abs/s1.h5");
    manifest_free(m2);
    manifest_free(m);
    free(expect), free(copy), free(path);

    expect_manifest_error("bad1.json", "{not json", "not valid JSON");
    expect_manifest_error("bad2.json", "{\"format\":\"other\"}", "not a clipc manifest");
    expect_manifest_error("bad3.json", "{\"format\":\"clipc-manifest\",\"version\":2}", "version");
    expect_manifest_error("bad4.json",
                          "{\"format\":\"clipc-manifest\",\"version\":1,\"num_samples\":4,\"shards\":[{\"path\":\"a\","
                          "\"num_samples\":3}]}",
                          "shards hold 3 samples but num_samples is 4");
    expect_manifest_error("bad5.json",
                          "{\"format\":\"clipc-manifest\",\"version\":1,\"num_samples\":3,\"shards\":[{\"num_samples\":3}]}",
                          "shards[0].path");
    expect_manifest_error("bad6.json",
                          "{\"format\":\"clipc-manifest\",\"version\":1,\"num_samples\":3,\"shards\":[{\"path\":\"a\","
                          "\"num_samples\":-3}]}",
                          "'num_samples' is missing or not a count");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_lossless), cmocka_unit_test(test_round_trip_lossy),
        cmocka_unit_test(test_read_image_runs),     cmocka_unit_test(test_missing_and_not_hdf5),
        cmocka_unit_test(test_truncated),           cmocka_unit_test(test_defects),
        cmocka_unit_test(test_empty_shard),         cmocka_unit_test(test_manifest),
    };
    return cmocka_run_group_tests(tests, testutil_setup, testutil_teardown);
}
