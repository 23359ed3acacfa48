// Tests of `clipc shards`: CSV/TSV, class folders and Fashion-MNIST inputs, resizing, skipped
// inputs and their report, resuming after an interruption, and each bad input.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/error.h"
#include "cli/commands.h"
#include "convert/convert.h"
#include "common/fsutil.h"
#include "image/image.h"
#include "shards/manifest.h"
#include "shards/shard.h"
#include "data_testutil.h"
#include "convert_test.h"

#define tmp testutil_dir

// Writes a.jpg 64x48, b.png 30x40, c.webp 50x50, bad.jpg (garbage), trunc.jpg (half a JPEG).
static char *write_images(const char *name) {
    char *dir = make_dir(name);
    image_rgb a = testutil_picture(64, 48, 1), b = testutil_picture(30, 40, 2), c = testutil_picture(50, 50, 3);
    char *pa = testutil_path(dir, "a.jpg"), *pb = testutil_path(dir, "b.png"), *pc = testutil_path(dir, "c.webp");
    char *bad = testutil_path(dir, "bad.jpg"), *trunc = testutil_path(dir, "trunc.jpg");
    assert_int_equal(testutil_write_jpeg(pa, &a, 95), 0);
    assert_int_equal(testutil_write_png(pb, &b), 0);
    assert_int_equal(testutil_write_webp(pc, &c, true), 0);
    write_text(bad, "\xff\xd8\xff this is not a jpeg at all");
    assert_int_equal(testutil_write_jpeg(trunc, &a, 95), 0);
    struct stat st;
    stat(trunc, &st);
    assert_int_equal(testutil_truncate(trunc, (long)st.st_size * 2 / 3), 0);  // cut inside the image data
    free(pa), free(pb), free(pc), free(bad), free(trunc);
    image_rgb_free(&a), image_rgb_free(&b), image_rgb_free(&c);
    return dir;
}

static void test_csv(void **state) {
    (void)state;
    char *img = write_images("csv-images"), *csv = sub("list.csv"), *out = sub("csv-out");
    write_text(csv,
               "id,filepath,title\r\n"
               "1,a.jpg,\"a, \"\"quoted\"\" cat\"\r\n"
               "2,bad.jpg,bad\n"
               "3,b.png,caf\xc3\xa9 \xe2\x98\x95\n"
               "\n"
               "4,missing.jpg,gone\n"
               "5,trunc.jpg,cut\n"
               "6,c.webp,\"two\nlines\"\n");
    assert_int_equal(shards("--csv", csv, "--out", out, "--csv-separator", ",", "--image-root", img, "--max-size", "32",
                            "--shard-size", "2", "--workers", "2", NULL),
                     0);
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 3);
    int a = find_key(&c, "a.jpg"), b = find_key(&c, "b.png"), w = find_key(&c, "c.webp");
    assert_string_equal(c.captions[a], "a, \"quoted\" cat");
    assert_string_equal(c.captions[b], "caf\xc3\xa9 \xe2\x98\x95");
    assert_string_equal(c.captions[w], "two\nlines");
    assert_int_equal(c.w[a], 43), assert_int_equal(c.h[a], 32);  // shorter side down to 32
    assert_int_equal(c.w[b], 30), assert_int_equal(c.h[b], 40);  // never enlarged
    assert_int_equal(c.w[w], 32), assert_int_equal(c.h[w], 32);
    assert_int_equal(c.labels[a], -1);
    testutil_free_converted(&c);

    char *report_path = testutil_path(out, "skipped.tsv");
    char *report = (char *)fs_read_all(report_path, NULL);
    assert_non_null(report);
    assert_non_null(strstr(report, "bad.jpg\t"));
    assert_non_null(strstr(report, "missing.jpg\t"));
    assert_non_null(strstr(report, "trunc.jpg\t"));
    assert_non_null(strstr(report, "truncated JPEG"));
    manifest *m = manifest_load(out);
    assert_int_equal(m->skipped, 3);
    assert_int_equal(m->n_shards, 3);
    manifest_free(m);
    free(report), free(report_path), free(img), free(csv), free(out);
}

static void test_lossless_and_upscale(void **state) {
    (void)state;
    char *img = write_images("tsv-images"), *tsv = sub("list.tsv"), *out = sub("tsv-out"), *up = sub("tsv-up");
    char *out_min = sub("tsv-min");
    write_text(tsv, "filepath\ttitle\nb.png\tpng picture\nc.webp\twebp picture\n");
    assert_int_equal(shards("--csv", tsv, "--out", out, "--image-root", img, "--max-size", "0", "--lossless", NULL), 0);
    testutil_converted c;
    read_converted(out, &c);
    image_rgb b = testutil_picture(30, 40, 2), w = testutil_picture(50, 50, 3);
    assert_memory_equal(c.pixels[0].rgb, b.rgb, 30 * 40 * 3);  // lossless: pixel-identical
    assert_memory_equal(c.pixels[1].rgb, w.rgb, 50 * 50 * 3);
    testutil_free_converted(&c);
    image_rgb_free(&b), image_rgb_free(&w);

    assert_int_equal(shards("--csv", tsv, "--out", up, "--image-root", img, "--max-size", "32", "--upscale", NULL), 0);
    read_converted(up, &c);
    assert_int_equal(c.w[0], 32), assert_int_equal(c.h[0], 43);
    testutil_free_converted(&c);
    assert_int_equal(shards("--csv", tsv, "--out", out_min, "--image-root", img, "--min-size", "36", NULL), 0);
    read_converted(out_min, &c);
    assert_int_equal(c.w[0], 36), assert_int_equal(c.h[0], 48);
    testutil_free_converted(&c);
    free(img), free(tsv), free(out), free(up), free(out_min);
}

static void make_class_folders(const char *root) {
    const char *files[] = {"cat/1.jpg", "cat/2.png", "dog/1.jpg", "zebra/x.webp", "dog/notes.txt", ".hidden/1.jpg"};
    const char *dirs[] = {"cat", "dog", "zebra", ".hidden"};
    for (int i = 0; i < 4; i++) {
        char *d = testutil_path(root, dirs[i]);
        assert_int_equal(fs_mkdirs(d), 0);
        free(d);
    }
    image_rgb p = testutil_picture(20, 20, 5);
    for (int i = 0; i < 6; i++) {
        char *f = testutil_path(root, files[i]);
        if (strstr(f, ".png")) testutil_write_png(f, &p);
        else if (strstr(f, ".webp")) testutil_write_webp(f, &p, false);
        else if (strstr(f, ".txt")) write_text(f, "not an image");
        else testutil_write_jpeg(f, &p, 90);
        free(f);
    }
    image_rgb_free(&p);
}

static void check_folders(const char *out, const char *const *names) {
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 4);
    const char *keys[] = {"cat/1.jpg", "cat/2.png", "dog/1.jpg", "zebra/x.webp"};
    const int labels[] = {0, 0, 1, 2};
    for (int k = 0; k < 4; k++) {
        int i = find_key(&c, keys[k]);
        assert_int_equal(c.labels[i], labels[k]);
        assert_non_null(strstr(c.captions[i], names[labels[k]]));
    }
    testutil_free_converted(&c);
    manifest *m = manifest_load(out);
    assert_int_equal(m->n_classes, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(m->class_names[i], names[i]);
    shard_reader *r = shard_reader_open(m->shards[0].resolved_path);
    assert_int_equal(shard_reader_num_classes(r), 3);
    assert_string_equal(shard_reader_class_name(r, 1), names[1]);
    shard_reader_close(r);
    manifest_free(m);
}

static void test_folders(void **state) {
    (void)state;
    char *root = make_dir("classes"), *out = sub("classes-out"), *out_map = sub("classes-map"), *out_list = sub("classes-list");
    make_class_folders(root);
    assert_int_equal(shards("--folders", root, "--out", out, NULL), 0);
    const char *const folder_names[] = {"cat", "dog", "zebra"};
    check_folders(out, folder_names);

    char *map = sub("synsets.txt"), *list = sub("names.txt"), *short_list = sub("short.txt");
    write_text(map, "zebra Equus quagga\ncat Felis catus, house cat\ndog\tCanis familiaris\n");
    assert_int_equal(shards("--folders", root, "--out", out_map, "--class-names", map, NULL), 0);
    const char *const mapped[] = {"Felis catus, house cat", "Canis familiaris", "Equus quagga"};
    check_folders(out_map, mapped);

    write_text(list, "Cat\r\nDog\r\nZebra\r\n");
    assert_int_equal(shards("--folders", root, "--out", out_list, "--class-names", list, NULL), 0);
    const char *const listed[] = {"Cat", "Dog", "Zebra"};
    check_folders(out_list, listed);

    write_text(short_list, "Cat\nDog\n");
    char *out_bad = sub("classes-bad");
    assert_int_equal(shards("--folders", root, "--out", out_bad, "--class-names", short_list, NULL), 1);
    assert_non_null(strstr(err_msg(), "2 lines for 3 class folders"));
    free(root), free(out), free(out_map), free(out_list), free(map), free(list), free(short_list), free(out_bad);
}

static void write_idx(const char *path, const uint8_t *head, size_t head_len, const uint8_t *data, size_t n) {
    gzFile f = gzopen(path, "wb");
    gzwrite(f, head, (unsigned)head_len);
    if (n) gzwrite(f, data, (unsigned)n);
    gzclose(f);
}

// Writes a Fashion-MNIST-like train split of n 28x28 images (pixel (i*7 + p) % 256, label i % 10).
static char *write_fashion(const char *name, int n, bool truncate_labels) {
    char *dir = make_dir(name);
    uint8_t *pixels = malloc((size_t)n * 784), labels[64];
    for (int i = 0; i < n; i++) {
        labels[i] = (uint8_t)(i % 10);
        for (int p = 0; p < 784; p++) pixels[i * 784 + p] = (uint8_t)((i * 7 + p) % 256);
    }
    uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28}, lh[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    char *ip = testutil_path(dir, "train-images-idx3-ubyte.gz"), *lp = testutil_path(dir, "train-labels-idx1-ubyte.gz");
    write_idx(ip, ih, 16, pixels, (size_t)n * 784);
    write_idx(lp, lh, 8, labels, truncate_labels ? (size_t)n - 1 : (size_t)n);
    free(ip), free(lp), free(pixels);
    return dir;
}

static void test_fashion_mnist(void **state) {
    (void)state;
    char *dir = write_fashion("fmnist", 12, false), *out = sub("fmnist-out"), *out2 = sub("fmnist-out2");
    assert_int_equal(shards("--fashion-mnist", dir, "--split", "train", "--out", out, "--shard-size", "5", NULL), 0);
    testutil_converted c, again;
    read_converted(out, &c);
    assert_int_equal(c.n, 12);
    int templates_seen = 0;
    for (int i = 0; i < 12; i++) {
        char key[64];
        snprintf(key, sizeof key, "fashion-mnist/train/%05d", i);
        assert_string_equal(c.keys[i], key);
        assert_int_equal(c.labels[i], i % 10);
        assert_int_equal(c.w[i], 28), assert_int_equal(c.h[i], 28);  // kept at 28x28
        for (int p = 0; p < 784; p++)
            for (int ch = 0; ch < 3; ch++) assert_int_equal(c.pixels[i].rgb[3 * p + ch], (i * 7 + p) % 256);
        templates_seen |= strstr(c.captions[i], "blurry") ? 1 : strstr(c.captions[i], "cropped") ? 2 : 0;
    }
    assert_non_null(strstr(c.captions[9], "Ankle boot"));
    assert_true(templates_seen == 3);  // templates vary
    manifest *m = manifest_load(out);
    assert_int_equal(m->n_classes, 10);
    assert_string_equal(m->class_names[0], "T-shirt/top");
    manifest_free(m);
    assert_int_equal(shards("--fashion-mnist", dir, "--out", out2, "--shard-size", "5", NULL), 0);
    read_converted(out2, &again);
    for (int i = 0; i < 12; i++) assert_string_equal(c.captions[i], again.captions[i]);  // deterministic
    testutil_free_converted(&c), testutil_free_converted(&again);

    char *bad = write_fashion("fmnist-bad", 12, true), *out_bad = sub("fmnist-bad-out");
    assert_int_equal(shards("--fashion-mnist", bad, "--out", out_bad, NULL), 1);
    assert_non_null(strstr(err_msg(), "train-labels-idx1-ubyte.gz: truncated"));
    assert_int_equal(shards("--fashion-mnist", dir, "--out", out_bad, "--split", "valid", NULL), 1);
    assert_non_null(strstr(err_msg(), "--split"));
    char *images = testutil_path(bad, "train-images-idx3-ubyte.gz");
    write_idx(images, (const uint8_t *)"\0\0\x08\x01\0\0\0\x01", 8, (const uint8_t *)"x", 1);
    assert_int_equal(shards("--fashion-mnist", bad, "--out", out_bad, NULL), 1);
    assert_non_null(strstr(err_msg(), "not an IDX file of 3-dimensional"));
    free(dir), free(out), free(out2), free(bad), free(out_bad), free(images);
}

static void record_progress(void *ctx, const convert_progress *p) { ((int *)ctx)[p->shard] = p->reused ? 1 : 2; }

static void test_resume(void **state) {
    (void)state;
    char *dir = make_dir("resume-images"), *csv = sub("resume.csv"), *out = sub("resume-out");
    FILE *f = fopen(csv, "w");
    fprintf(f, "filepath\ttitle\n");
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "%d.png", i);
        char *p = testutil_path(dir, name);
        image_rgb img = testutil_picture(24, 24, i);
        testutil_write_png(p, &img);
        image_rgb_free(&img);
        fprintf(f, "%s\tpicture %d\n", p, i);
        free(p);
    }
    fclose(f);
    convert_options o;
    convert_options_default(&o);
    o.input = csv, o.out_dir = out, o.shard_size = 2, o.workers = 2;
    int seen[3] = {0};
    o.progress = record_progress, o.progress_ctx = seen;
    convert_summary sum;
    assert_int_equal(convert_run(&o, &sum), 0);
    assert_int_equal(sum.samples, 6);
    char *manifest_path = testutil_path(out, "manifest.json");
    size_t first_len = 0;
    char *first_manifest = (char *)fs_read_all(manifest_path, &first_len);

    // interrupted: shard 1 never written, shard 2 cut short, no manifest
    char *s0 = testutil_path(out, "shard-00000.h5"), *s1 = testutil_path(out, "shard-00001.h5"), *s2 = testutil_path(out, "shard-00002.h5");
    struct stat before, after;
    stat(s0, &before);
    remove(s1), remove(manifest_path);
    testutil_truncate(s2, 1000);
    memset(seen, 0, sizeof seen);
    assert_int_equal(convert_run(&o, &sum), 0);
    assert_int_equal(seen[0], 1), assert_int_equal(seen[1], 2), assert_int_equal(seen[2], 2);
    assert_int_equal(sum.shards_reused, 1);
    stat(s0, &after);
    assert_int_equal(before.st_ino, after.st_ino);  // the finished shard was left alone
    size_t second_len = 0;
    char *second_manifest = (char *)fs_read_all(manifest_path, &second_len);
    assert_int_equal(first_len, second_len);
    assert_memory_equal(first_manifest, second_manifest, first_len);

    o.quality = 50;  // other options: refuse to mix shards
    assert_int_equal(convert_run(&o, &sum), -1);
    assert_non_null(strstr(err_msg(), "made with other options"));
    free(first_manifest), free(second_manifest), free(manifest_path), free(s0), free(s1), free(s2);
    free(dir), free(csv), free(out);
}

// Converting a CSV of this text must fail with `message`.
static void expect_csv_error(const char *csv, const char *out, const char *text, const char *message) {
    write_text(csv, text);
    assert_int_equal(shards("--csv", csv, "--out", out, NULL), 1);
    if (!strstr(err_msg(), message)) fail_msg("got '%s', want '%s'", err_msg(), message);
}

static void test_bad_inputs(void **state) {
    (void)state;
    char *csv = sub("bad.csv"), *out = sub("bad-out");
    expect_csv_error(csv, out, "path\ttitle\nx.jpg\tx\n", "no column 'filepath'");
    expect_csv_error(csv, out, "filepath\ttitle\nx.jpg\t\"open quote\n", ":2: unterminated quoted field");
    expect_csv_error(csv, out, "filepath\ttitle\nx.jpg\n", ":2: 1 fields");
    expect_csv_error(csv, out, "filepath\ttitle\nnothere.jpg\tx\n", "none of the 1 inputs");
    expect_csv_error(csv, out, "", "empty file");
    assert_int_equal(shards("--csv", csv, "--out", out, "--csv-separator", "ab", NULL), 1);
    assert_int_equal(shards("--csv", "/nonexistent.csv", "--out", out, NULL), 1);
    assert_non_null(strstr(err_msg(), "/nonexistent.csv"));
    assert_int_equal(shards("--out", out, NULL), 2);
    assert_int_equal(shards("--csv", csv, "--folders", out, "--out", out, NULL), 2);
    assert_int_equal(shards("--csv", csv, "--out", out, "--qualty", "3", NULL), 2);
    assert_non_null(strstr(err_msg(), "did you mean '--quality'"));
    assert_int_equal(shards("--folders", "/nonexistent-root", "--out", out, NULL), 1);
    free(csv), free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv),           cmocka_unit_test(test_lossless_and_upscale),
        cmocka_unit_test(test_folders),       cmocka_unit_test(test_fashion_mnist),
        cmocka_unit_test(test_resume),        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, testutil_setup, testutil_teardown);
}
