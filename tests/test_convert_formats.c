// Tests of `clipc shards` on the formats standard datasets are published in, each written by the
// test in the exact published layout: CIFAR-10 and CIFAR-100 binary records, MNIST-layout IDX files,
// Karpathy-split JSON, webdataset tar shards (with a corrupt member, a sample lacking its caption or
// image, and a truncated archive) given as a brace pattern, numbered class folders (ImageNet-V2) and
// a synset subset (ImageNet-R); brace expansion; and the real Fashion-MNIST test split.
// Usage: test_convert_formats FASHION_MNIST_DIR
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
#include "convert/convert.h"
#include "common/fsutil.h"
#include "image/image.h"
#include "shards/manifest.h"
#include "convert/pattern.h"
#include "data_testutil.h"
#include "convert_test.h"

static const char *fashion_dir;

static char *read_text(const char *dir, const char *name) {
    char *path = testutil_path(dir, name);
    char *text = (char *)fs_read_all(path, NULL);
    if (!text) fail_msg("%s", err_msg());
    free(path);
    return text;
}

static void expect_error(int rc, const char *message) {
    assert_int_not_equal(rc, 0);
    if (!strstr(err_msg(), message)) fail_msg("got '%s', want '%s'", err_msg(), message);
}

// ---- brace patterns ---------------------------------------------------------------------------

static void expect_expansion(const char *spec, const char *joined) {
    char **paths = NULL;
    int n = pattern_expand(spec, &paths);
    if (n < 0) fail_msg("%s: %s", spec, err_msg());
    char got[1024] = "";
    for (int i = 0; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? " " : "", paths[i]);
    assert_string_equal(got, joined);
    pattern_free(paths, n);
}

static void test_patterns(void **state) {
    (void)state;
    expect_expansion("data/{00000..00003}.tar", "data/00000.tar data/00001.tar data/00002.tar data/00003.tar");
    expect_expansion("{8..11}", "8 9 10 11");
    expect_expansion("{1..003}", "001 002 003");
    expect_expansion("{3..1}", "3 2 1");
    expect_expansion("{0..10..5}", "0 5 10");
    expect_expansion("{a,b}{0..1}", "a0 a1 b0 b1");
    expect_expansion("x{a,{b,c}d}y", "xay xbdy xcdy");
    expect_expansion("a.tar::b{1,2}.tar", "a.tar b1.tar b2.tar");
    expect_expansion("plain.tar", "plain.tar");
    char **paths = NULL;
    expect_error(pattern_expand("data/{0..3.tar", &paths) < 0 ? -1 : 0, "unbalanced braces");
    expect_error(pattern_expand("data/0}.tar", &paths) < 0 ? -1 : 0, "unbalanced braces");
    expect_error(pattern_expand("data/{abc}.tar", &paths) < 0 ? -1 : 0, "neither a list");
    expect_error(pattern_expand("a.tar::", &paths) < 0 ? -1 : 0, "empty pattern");
    expect_error(pattern_expand("{0..99999}{0..99999}", &paths) < 0 ? -1 : 0, "more than");
}

// ---- CIFAR --------------------------------------------------------------------------------------

// The pixel byte of CIFAR record k at (plane c, position p): a pattern the test can recompute.
static uint8_t cifar_value(int k, int c, int p) { return (uint8_t)(k * 31 + c * 85 + p * 7); }

// Writes count records starting at k: [coarse label] label, then the red, green and blue planes.
static void write_cifar_file(const char *dir, const char *name, int k, int count, bool hundred) {
    size_t record = (hundred ? 2 : 1) + 3072, n = 0;
    uint8_t *bytes = malloc(record * (size_t)count);
    for (int i = 0; i < count; i++, k++) {
        if (hundred) bytes[n++] = (uint8_t)(k % 20);  // coarse label
        bytes[n++] = (uint8_t)(hundred ? (k * 7) % 100 : k % 10);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++) bytes[n++] = cifar_value(k, c, p);
    }
    char *path = testutil_path(dir, name);
    assert_int_equal(testutil_write_file(path, bytes, n), 0);
    free(path);
    free(bytes);
}

// Checks the converted records first..first+count of a CIFAR split: keys, labels, exact pixels.
static void check_cifar(const char *out, const char *prefix, const char *split, int first, int count, bool hundred) {
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, count);
    for (int i = 0; i < count; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s/%s/%05d", prefix, split, i);
        int s = find_key(&c, key), k = first + i;
        assert_int_equal(c.labels[s], hundred ? (k * 7) % 100 : k % 10);
        assert_int_equal(c.w[s], 32), assert_int_equal(c.h[s], 32);
        for (int p = 0; p < 1024; p++)
            for (int ch = 0; ch < 3; ch++) assert_int_equal(c.pixels[s].rgb[3 * p + ch], cifar_value(k, ch, p));
    }
    testutil_free_converted(&c);
}

static void test_cifar10(void **state) {
    (void)state;
    char *dir = make_dir("cifar-10-batches-bin"), *out = sub("c10-train"), *test_out = sub("c10-test");
    for (int b = 0; b < 5; b++) {
        char name[32];
        snprintf(name, sizeof name, "data_batch_%d.bin", b + 1);
        write_cifar_file(dir, name, 3 * b, 3, false);  // 3 records each: k = 0..14 in order
    }
    write_cifar_file(dir, "test_batch.bin", 100, 4, false);
    char *meta = testutil_path(dir, "batches.meta.txt");
    write_text(meta, "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n");
    assert_int_equal(shards("--cifar10", dir, "--out", out, "--shard-size", "4", NULL), 0);
    check_cifar(out, "cifar10", "train", 0, 15, false);
    assert_int_equal(shards("--cifar10", dir, "--split", "test", "--out", test_out, NULL), 0);
    check_cifar(test_out, "cifar10", "test", 100, 4, false);
    manifest *m = manifest_load(test_out);
    assert_int_equal(m->n_classes, 10);
    assert_string_equal(m->class_names[9], "truck");
    manifest_free(m);

    char *bad_out = sub("c10-bad"), *batch = testutil_path(dir, "test_batch.bin");
    assert_int_equal(testutil_truncate(batch, 3073 + 100), 0);
    expect_error(shards("--cifar10", dir, "--split", "test", "--out", bad_out, NULL), "not a whole number of 3073-byte");
    write_text(meta, "airplane\nautomobile\n");
    expect_error(shards("--cifar10", dir, "--out", bad_out, NULL), "is not a class");
    expect_error(shards("--cifar10", dir, "--split", "val", "--out", bad_out, NULL), "--split");
    free(dir), free(out), free(test_out), free(meta), free(bad_out), free(batch);
}

static void test_cifar100(void **state) {
    (void)state;
    char *dir = make_dir("cifar-100-binary"), *out = sub("c100-train");
    write_cifar_file(dir, "train.bin", 0, 20, true);
    write_cifar_file(dir, "test.bin", 50, 2, true);
    char *fine = testutil_path(dir, "fine_label_names.txt"), *coarse = testutil_path(dir, "coarse_label_names.txt");
    FILE *f = fopen(fine, "w");
    for (int c = 0; c < 100; c++) fprintf(f, c == 1 ? "aquarium_fish\n" : "class_%d\n", c);
    fclose(f);
    f = fopen(coarse, "w");
    for (int c = 0; c < 20; c++) fprintf(f, "superclass_%d\n", c);
    fclose(f);
    free(fine), free(coarse);
    assert_int_equal(shards("--cifar100", dir, "--out", out, NULL), 0);
    check_cifar(out, "cifar100", "train", 0, 20, true);  // the fine label, not the coarse one
    manifest *m = manifest_load(out);
    assert_int_equal(m->n_classes, 100);
    assert_string_equal(m->class_names[1], "aquarium fish");  // '_' as CLIP spells it
    assert_string_equal(m->class_names[42], "class 42");
    manifest_free(m);
    free(dir), free(out);
}

// ---- MNIST-layout IDX ---------------------------------------------------------------------------

static void write_idx_file(const char *path, const uint8_t *head, size_t head_len, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");  // unpacked, as torchvision leaves them
    fwrite(head, 1, head_len, f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_mnist(void **state) {
    (void)state;
    char *dir = make_dir("mnist-raw"), *out = sub("mnist-test"), *named = sub("mnist-named"), *names = sub("kmnist.txt");
    uint8_t pixels[6 * 28 * 28], labels[6];
    for (int i = 0; i < 6; i++) {
        labels[i] = (uint8_t)(9 - i);
        for (int p = 0; p < 784; p++) pixels[i * 784 + p] = (uint8_t)(p + 3 * i);
    }
    uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 28, 0, 0, 0, 28}, lh[8] = {0, 0, 8, 1, 0, 0, 0, 6};
    char *ip = testutil_path(dir, "t10k-images-idx3-ubyte"), *lp = testutil_path(dir, "t10k-labels-idx1-ubyte");
    write_idx_file(ip, ih, 16, pixels, sizeof pixels);
    write_idx_file(lp, lh, 8, labels, 6);
    assert_int_equal(shards("--mnist", dir, "--split", "test", "--out", out, NULL), 0);
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 6);
    int s = find_key(&c, "mnist/test/00002");
    assert_int_equal(c.labels[s], 7);
    assert_non_null(strstr(c.captions[s], "7"));
    for (int p = 0; p < 784; p++) assert_int_equal(c.pixels[s].rgb[3 * p + 1], (p + 6) % 256);
    testutil_free_converted(&c);
    manifest *m = manifest_load(out);
    assert_string_equal(m->class_names[3], "3");  // digits
    manifest_free(m);

    write_text(names, "# KMNIST's classes\no\nki\nsu\ntsu\nna\nha\nma\nya\nre\nwo\n");
    assert_int_equal(shards("--mnist", dir, "--split", "test", "--class-names", names, "--out", named, NULL), 0);
    m = manifest_load(named);
    assert_int_equal(m->n_classes, 10);
    assert_string_equal(m->class_names[9], "wo");
    manifest_free(m);
    char *missing = sub("mnist-missing");
    expect_error(shards("--mnist", dir, "--out", missing, NULL), "train-images-idx3-ubyte.gz");
    free(dir), free(out), free(named), free(names), free(ip), free(lp), free(missing);
}

// ---- Karpathy-split JSON ------------------------------------------------------------------------

static void write_picture(const char *dir, const char *name, int seed) {
    char *path = testutil_path(dir, name);
    image_rgb img = testutil_picture(40, 30, seed);
    assert_int_equal(testutil_write_png(path, &img), 0);
    image_rgb_free(&img);
    free(path);
}

static void test_karpathy(void **state) {
    (void)state;
    char *root = make_dir("coco"), *val = make_dir("coco/val2014"), *json = sub("dataset_coco.json");
    char *out = sub("coco-test"), *train = sub("coco-train");
    write_picture(val, "COCO_val2014_000000391895.jpg", 1);
    write_picture(val, "COCO_val2014_000000522418.jpg", 2);
    write_picture(root, "1000092795.jpg", 3);
    write_text(json,
               "{\"info\": {\"note\": \"a \\\"quoted\\\" [text] {x}\", \"n\": [1, 2.5e3, true, null]},\n"
               " \"images\" : [\n"
               " {\"filepath\": \"val2014\", \"sentids\": [0, 1, 2, 3, 4], \"filename\": \"COCO_val2014_000000391895.jpg\",\n"
               "  \"imgid\": 0, \"split\": \"test\", \"sentences\": [\n"
               "   {\"tokens\": [\"a\", \"man\"], \"raw\": \"A man with a red helmet on a small moped on a dirt road. \", \"imgid\": 0, \"sentid\": 0},\n"
               "   {\"tokens\": [], \"raw\": \"Man riding a motor bike on a dirt road on the countryside.\", \"imgid\": 0, \"sentid\": 1},\n"
               "   {\"tokens\": [], \"raw\": \"A man riding on the back of a motorcycle.\", \"imgid\": 0, \"sentid\": 2},\n"
               "   {\"tokens\": [], \"raw\": \"A dirt path with a young person on a motor bike \\u00e9.\", \"imgid\": 0, \"sentid\": 3},\n"
               "   {\"tokens\": [], \"raw\": \"A man in a red shirt and a red hat is on a motorcycle on a hill side.\\n\", \"imgid\": 0, \"sentid\": 4}],\n"
               "  \"cocoid\": 391895},\n"
               " {\"filepath\": \"val2014\", \"filename\": \"COCO_val2014_000000522418.jpg\", \"split\": \"restval\",\n"
               "  \"sentences\": [{\"raw\": \"A woman wearing a net on her head cutting a cake.\"}], \"cocoid\": 522418},\n"
               " {\"filename\": \"1000092795.jpg\", \"split\": \"test\",\n"
               "  \"sentences\": [{\"raw\": \"Two young guys with shaggy hair look at their hands.\"},\n"
               "                 {\"raw\": \"Two young, White males are outside near many bushes.\"}]}],\n"
               " \"dataset\": \"coco\"}\n");
    assert_int_equal(shards("--karpathy", json, "--image-root", root, "--out", out, NULL), 0);  // split test
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 7);
    const char *coco_key = "val2014/COCO_val2014_000000391895.jpg";
    int grouped = 0;
    for (int i = 0; i < c.n; i++) grouped += !strcmp(c.keys[i], coco_key);
    assert_int_equal(grouped, 5);  // five captions, one key: one image for retrieval
    assert_string_equal(c.captions[0], "A man with a red helmet on a small moped on a dirt road.");
    assert_string_equal(c.captions[3], "A dirt path with a young person on a motor bike \xc3\xa9.");
    assert_string_equal(c.captions[4], "A man in a red shirt and a red hat is on a motorcycle on a hill side.");
    assert_string_equal(c.keys[5], "1000092795.jpg");
    assert_int_equal(c.labels[0], -1);
    testutil_free_converted(&c);

    assert_int_equal(shards("--karpathy", json, "--image-root", root, "--split", "train+restval", "--out", train, NULL), 0);
    read_converted(train, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.keys[0], "val2014/COCO_val2014_000000522418.jpg");
    testutil_free_converted(&c);

    char *bad = sub("coco-bad");
    expect_error(shards("--karpathy", json, "--split", "val", "--out", bad, NULL), "no image of split 'val'");
    write_text(json, "{\"images\": [{\"filename\": \"x.jpg\", \"split\": \"test\", \"sentences\": [{\"tokens\": []}]}]}");
    expect_error(shards("--karpathy", json, "--out", bad, NULL), "images[0].sentences[0] has no \"raw\"");
    write_text(json, "{\"annotations\": []}");
    expect_error(shards("--karpathy", json, "--out", bad, NULL), "no \"images\" array");
    write_text(json, "{\"images\": [");
    expect_error(shards("--karpathy", json, "--out", bad, NULL), "not valid JSON");
    free(root), free(val), free(json), free(out), free(train), free(bad);
}

// ---- webdataset tar shards ----------------------------------------------------------------------

typedef struct {
    uint8_t *bytes;
    size_t n;
} tar_buf;

static void tar_append(tar_buf *t, const void *data, size_t size) {
    t->bytes = realloc(t->bytes, t->n + size);
    memcpy(t->bytes + t->n, data, size);
    t->n += size;
}

// Appends a ustar member (as Python's tarfile writes for img2dataset): header, data, padding.
static void tar_add(tar_buf *t, const char *name, const void *data, size_t size) {
    char h[512] = {0};
    snprintf(h, 100, "%s", name);
    snprintf(h + 100, 8, "%07o", 0644);
    snprintf(h + 108, 8, "%07o", 1000);
    snprintf(h + 116, 8, "%07o", 1000);
    snprintf(h + 124, 12, "%011zo", size);
    snprintf(h + 136, 12, "%011o", 1700000000);
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar\0" "00", 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += (uint8_t)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
    tar_append(t, h, 512);
    tar_append(t, data, size);
    static const uint8_t zeros[512];
    tar_append(t, zeros, (512 - size % 512) % 512);
}

static void tar_add_text(tar_buf *t, const char *name, const char *text) { tar_add(t, name, text, strlen(text)); }

static void tar_add_image(tar_buf *t, const char *name, int seed) {
    char *path = sub("member.tmp");
    image_rgb img = testutil_picture(36, 24, seed);
    int rc = strstr(name, ".png") ? testutil_write_png(path, &img)
             : strstr(name, ".webp") ? testutil_write_webp(path, &img, true)
                                     : testutil_write_jpeg(path, &img, 95);
    assert_int_equal(rc, 0);
    size_t size = 0;
    uint8_t *bytes = fs_read_all(path, &size);
    tar_add(t, name, bytes, size);
    free(bytes), free(path);
    image_rgb_free(&img);
}

// Writes the tar, keeping only its first `keep` bytes when keep > 0 (an interrupted download).
static void tar_write(tar_buf *t, const char *dir, const char *name, size_t keep) {
    static const uint8_t end[1024];
    tar_append(t, end, sizeof end);
    char *path = testutil_path(dir, name);
    assert_int_equal(testutil_write_file(path, t->bytes, keep ? keep : t->n), 0);
    free(path);
    free(t->bytes);
}

// 00000.tar: good samples (jpg, png, webp with .json metadata), a corrupt JPEG, a sample without
// an image, one without a caption. 00001.tar: one good sample, then cut inside the next image.
static void write_shards(const char *dir) {
    tar_buf t = {0};
    tar_add_image(&t, "000000000.jpg", 0);
    tar_add_text(&t, "000000000.txt", "a red bus on a bridge");
    tar_add_text(&t, "000000000.json", "{\"url\": \"http://example.com/0.jpg\", \"key\": \"000000000\", \"status\": \"success\"}");
    tar_add_image(&t, "000000001.png", 1);
    tar_add_text(&t, "000000001.txt", "two cats");
    tar_add_text(&t, "000000002.txt", "a broken picture");
    tar_add_text(&t, "000000002.jpg", "\xff\xd8\xff\xe0 not really a JPEG");
    tar_add_text(&t, "000000003.txt", "a caption without a picture");
    tar_add_image(&t, "000000004.webp", 4);
    tar_add_image(&t, "000000005.JPG", 5);
    tar_add_text(&t, "000000005.txt", "upper-case extension");
    tar_write(&t, dir, "00000.tar", 0);
    memset(&t, 0, sizeof t);
    tar_add_image(&t, "000010000.jpg", 6);
    tar_add_text(&t, "000010000.txt", "the second shard");
    tar_add_text(&t, "000010001.txt", "cut short");
    size_t before = t.n;
    tar_add_image(&t, "000010001.jpg", 7);
    tar_write(&t, dir, "00001.tar", before + 512 + 300);  // header plus 300 bytes of the JPEG
}

static void test_webdataset(void **state) {
    (void)state;
    char *dir = make_dir("wds"), *out = sub("wds-out"), *pattern = sub("wds/{00000..00001}.tar");
    write_shards(dir);
    assert_int_equal(shards("--webdataset", pattern, "--out", out, "--shard-size", "3", "--max-size", "0", NULL), 0);
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 4);
    const char *keys[] = {"000000000", "000000001", "000000005", "000010000"};
    const char *captions[] = {"a red bus on a bridge", "two cats", "upper-case extension", "the second shard"};
    for (int i = 0; i < 4; i++) {
        int s = find_key(&c, keys[i]);
        assert_string_equal(c.captions[s], captions[i]);
        assert_int_equal(c.w[s], 36), assert_int_equal(c.h[s], 24);
    }
    image_rgb png = testutil_picture(36, 24, 1);
    assert_true(testutil_psnr(c.pixels[find_key(&c, "000000001")].rgb, png.rgb, 36 * 24) > 30);
    image_rgb_free(&png);
    testutil_free_converted(&c);

    char *report = read_text(out, "skipped.tsv");
    assert_non_null(strstr(report, "000000002\t"));
    assert_non_null(strstr(report, "00000.tar:000000002.jpg\t"));
    assert_non_null(strstr(report, "000000003\t"));
    assert_non_null(strstr(report, "no image member"));
    assert_non_null(strstr(report, "000000004\t"));
    assert_non_null(strstr(report, "no caption"));
    assert_non_null(strstr(report, "00001.tar:000010001.jpg\t"));
    assert_non_null(strstr(report, "archive damaged after"));
    manifest *m = manifest_load(out);
    assert_int_equal(m->skipped, 5);
    assert_int_equal(m->n_shards, 3);  // 9 inputs listed, 3 a shard
    assert_int_equal(m->n_classes, 0);
    manifest_free(m);
    free(report), free(dir), free(out), free(pattern);
}

static void record_reuse(void *ctx, const convert_progress *p) { *(int *)ctx += p->reused; }

static void test_webdataset_resume(void **state) {
    (void)state;
    char *dir = make_dir("wds-resume"), *out = sub("wds-resume-out"), *pattern = sub("wds-resume/{00000..00001}.tar");
    write_shards(dir);
    convert_options o;
    convert_options_default(&o);
    o.source = CONVERT_SOURCE_WEBDATASET, o.input = pattern, o.out_dir = out, o.shard_size = 2, o.workers = 2;
    int reused = 0;
    o.progress = record_reuse, o.progress_ctx = &reused;
    convert_summary sum;
    assert_int_equal(convert_run(&o, &sum), 0);
    assert_int_equal(sum.n_shards, 5);
    assert_int_equal(reused, 0);
    char *manifest_path = testutil_path(out, "manifest.json"), *second = testutil_path(out, "shard-00001.h5");
    char *first_manifest = (char *)fs_read_all(manifest_path, NULL);
    remove(second), remove(manifest_path);  // interrupted
    assert_int_equal(convert_run(&o, &sum), 0);
    assert_int_equal(reused, 4);  // every shard but the missing one kept
    char *again = (char *)fs_read_all(manifest_path, NULL);
    assert_string_equal(first_manifest, again);

    char *missing = sub("wds-resume/{00000..00002}.tar"), *bad_out = sub("wds-missing");
    o.input = missing, o.out_dir = bad_out;
    expect_error(convert_run(&o, &sum), "00002.tar");
    free(first_manifest), free(again), free(manifest_path), free(second), free(missing), free(bad_out);
    free(dir), free(out), free(pattern);
}

// ---- ImageNet variants as class folders ---------------------------------------------------------

static void add_folder_image(const char *root, const char *folder, const char *file, int seed) {
    char *dir = testutil_path(root, folder);
    assert_int_equal(fs_mkdirs(dir), 0);
    write_picture(dir, file, seed);
    free(dir);
}

// ImageNet-V2: folders "0".."999" named by class index, listed out of numeric order by name.
static void test_numbered_folders(void **state) {
    (void)state;
    char *root = make_dir("imagenetv2"), *out = sub("imagenetv2-out"), *names = sub("names.txt");
    add_folder_image(root, "0", "a.jpeg", 1);
    add_folder_image(root, "10", "b.jpeg", 2);
    add_folder_image(root, "2", "c.jpeg", 3);
    write_text(names, "# class names, one per line in index order\n"
                      "tench\ngoldfish\ngreat white shark\ntiger shark\nhammerhead shark\nelectric ray\n"
                      "stingray\nrooster\nhen\nostrich\nbrambling\ngoldfinch\n");
    assert_int_equal(shards("--folders", root, "--class-names", names, "--out", out, NULL), 0);
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.labels[find_key(&c, "0/a.jpeg")], 0);
    assert_int_equal(c.labels[find_key(&c, "10/b.jpeg")], 10);
    assert_int_equal(c.labels[find_key(&c, "2/c.jpeg")], 2);
    assert_non_null(strstr(c.captions[find_key(&c, "10/b.jpeg")], "brambling"));
    testutil_free_converted(&c);
    manifest *m = manifest_load(out);
    assert_int_equal(m->n_classes, 12);
    manifest_free(m);
    char *short_names = sub("short-names.txt"), *bad = sub("imagenetv2-bad");
    write_text(short_names, "tench\ngoldfish\n");
    expect_error(shards("--folders", root, "--class-names", short_names, "--out", bad, NULL), "class folder '10'");
    free(root), free(out), free(names), free(short_names), free(bad);
}

// ImageNet-R and -A: a subset of the 1000 synset folders, mapped by the full synset list.
static void test_synset_subset(void **state) {
    (void)state;
    char *root = make_dir("imagenet-r"), *out = sub("imagenet-r-out"), *synsets = sub("synsets.txt");
    add_folder_image(root, "n01443537", "art_0.jpg", 1);
    add_folder_image(root, "n01494475", "cartoon_3.jpg", 2);
    write_text(synsets, "# wnid name\nn01440764 tench\nn01443537 goldfish\nn01484850 great white shark\n"
                        "n01491361 tiger shark\nn01494475 hammerhead shark\n");
    assert_int_equal(shards("--folders", root, "--class-names", synsets, "--out", out, NULL), 0);
    manifest *m = manifest_load(out);
    assert_int_equal(m->n_classes, 2);  // the subset, in ImageNet index order
    assert_string_equal(m->class_names[0], "goldfish");
    assert_string_equal(m->class_names[1], "hammerhead shark");
    manifest_free(m);
    free(root), free(out), free(synsets);
}

// ---- the real Fashion-MNIST ---------------------------------------------------------------------

static void test_fashion_mnist_real(void **state) {
    (void)state;
    char *out = sub("fashion-test");
    assert_int_equal(shards("--fashion-mnist", fashion_dir, "--split", "test", "--out", out, NULL), 0);
    testutil_converted c;
    read_converted(out, &c);
    assert_int_equal(c.n, 10000);
    int per_class[10] = {0};
    for (int i = 0; i < c.n; i++) per_class[c.labels[i]]++;
    for (int k = 0; k < 10; k++) assert_int_equal(per_class[k], 1000);
    char *images = testutil_path(fashion_dir, "t10k-images-idx3-ubyte.gz");
    gzFile f = gzopen(images, "rb");
    uint8_t head[16], first[784];
    assert_int_equal(gzread(f, head, 16), 16);
    assert_int_equal(gzread(f, first, 784), 784);
    gzclose(f);
    int s = find_key(&c, "fashion-mnist/test/00000");
    assert_int_equal(c.labels[s], 9);  // the test split starts with an ankle boot
    for (int p = 0; p < 784; p++) assert_int_equal(c.pixels[s].rgb[3 * p], first[p]);  // lossless
    testutil_free_converted(&c);
    free(images), free(out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_convert_formats FASHION_MNIST_DIR\n");
        return 2;
    }
    fashion_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patterns),         cmocka_unit_test(test_cifar10),
        cmocka_unit_test(test_cifar100),         cmocka_unit_test(test_mnist),
        cmocka_unit_test(test_karpathy),         cmocka_unit_test(test_webdataset),
        cmocka_unit_test(test_webdataset_resume), cmocka_unit_test(test_numbered_folders),
        cmocka_unit_test(test_synset_subset),    cmocka_unit_test(test_fashion_mnist_real),
    };
    return cmocka_run_group_tests(tests, testutil_setup, testutil_teardown);
}
