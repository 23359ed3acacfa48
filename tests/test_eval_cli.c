// End-to-end tests of `clipc eval`, `clipc embed` and `clipc classify` on a tiny random model saved
// from clip_model_init, with small labelled shards and captioned shards (several captions per image,
// made by `clipc shards --csv`): JSON fields and their consistency, confusion PNG, safetensors and
// .npy outputs (shapes, unit rows, keys), the single-file transform equal to the loader's,
// probabilities summing to 1, and one-line errors for bad input.
// Usage: test_eval_cli CLIPC_BINARY VOCAB CONFIGS_DIR
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "cli_run.h"
#include "eval_test.h"

#include "common/error.h"
#include "common/fsutil.h"
#include "data_testutil.h"
#include "model/clip.h"
#include "model/safetensors.h"

static const char *clipc, *vocab, *configs;
static char *work;

enum { E = EVAL_TEST_E, N_LABELLED = 17, N_IMAGES = EVAL_TEST_IMAGES, N_CAPTIONS = EVAL_TEST_CAPTIONS };

// The common flags: the tiny model and the vocabulary.
static char common[2048];

static char *in_work(const char *name) { return testutil_path(work, name); }

static void write_text(const char *name, const char *text) { eval_test_write(work, name, text); }

// The picture of labelled sample 3 as files: lossless WebP (the shard's own encoding), PNG, JPEG.
static void write_image_files(void) {
    image_rgb img = testutil_picture(40, 30, 3);
    char *webp = in_work("s3.webp"), *png = in_work("s3.png"), *jpg = in_work("s3.jpg");
    assert_int_equal(testutil_write_webp(webp, &img, true), 0);
    assert_int_equal(testutil_write_png(png, &img), 0);
    assert_int_equal(testutil_write_jpeg(jpg, &img, 95), 0);
    image_rgb_free(&img);
    free(webp), free(png), free(jpg);
    write_text("bad.jpg", "\xff\xd8\xff\xe0 this is not really a JPEG file");
}

static int setup(void **state) {
    (void)state;
    work = testutil_tmpdir();
    eval_test_save_model(work, "tiny.safetensors", 1);
    int sizes[2] = {10, 7};
    free(testutil_make_dataset(work, sizes, 2, 40, 30, true, -1, 0));  // labelled set in work/
    eval_test_captioned_shards(clipc, work);
    write_image_files();
    snprintf(common, sizeof common, "--pretrained %s/tiny.safetensors --vocab %s --batch-size 8 --workers 1", work, vocab);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    testutil_rmtree(work);
    free(work);
    return 0;
}

static cJSON *read_json(const char *name) { return eval_test_read_json(work, name); }

static double number(const cJSON *o, const char *key) { return eval_test_number(o, key); }

static void check_zeroshot_entry(const cJSON *z) {
    assert_int_equal((int)number(z, "n"), N_LABELLED);
    assert_int_equal((int)number(z, "n_classes"), 3);
    double top1 = number(z, "top1");
    assert_true(top1 >= 0 && top1 <= 1);
    assert_float_equal(number(z, "top5"), 1.0, 0);  // 3 classes: always within the top 5
    const cJSON *confusion = cJSON_GetObjectItemCaseSensitive(z, "confusion");
    const cJSON *per_class = cJSON_GetObjectItemCaseSensitive(z, "per_class");
    assert_int_equal(cJSON_GetArraySize(confusion), 3);
    assert_int_equal(cJSON_GetArraySize(per_class), 3);
    double total = 0, diagonal = 0, mean_acc = 0;
    for (int c = 0; c < 3; c++) {
        const cJSON *row = cJSON_GetArrayItem(confusion, c), *pc = cJSON_GetArrayItem(per_class, c);
        double row_total = 0;
        for (int p = 0; p < 3; p++) row_total += cJSON_GetArrayItem(row, p)->valuedouble;
        diagonal += cJSON_GetArrayItem(row, c)->valuedouble;
        total += row_total;
        assert_float_equal(number(pc, "n"), row_total, 0);  // labels k % 3: 6, 6 and 5 samples
        assert_float_equal(number(pc, "accuracy"), cJSON_GetArrayItem(row, c)->valuedouble / row_total, 1e-12);
        mean_acc += number(pc, "accuracy") / 3;
    }
    assert_float_equal(total, N_LABELLED, 0);
    assert_float_equal(diagonal / total, top1, 1e-12);
    assert_float_equal(number(z, "mean_per_class_accuracy"), mean_acc, 1e-12);
}

static void check_direction(const cJSON *d, int queries, int candidates) {
    assert_int_equal((int)number(d, "n_queries"), queries);
    double r1 = number(d, "R@1"), r5 = number(d, "R@5"), r10 = number(d, "R@10");
    assert_true(0 <= r1 && r1 <= r5 && r5 <= r10 && r10 <= 1);
    if (candidates <= 10) assert_float_equal(r10, 1.0, 0);
    double mean = number(d, "mean_rank"), median = number(d, "median_rank");
    assert_true(mean >= 1 && mean <= candidates && median >= 1 && median <= candidates);
}

static void test_eval_json(void **state) {
    (void)state;
    char out[16384];
    int rc = cli_run(out, sizeof out, "%s eval %s --zeroshot %s::%s/manifest.json --retrieval %s/ret --templates %s/zeroshot/fashion-mnist-templates.txt --output %s/res/results.json",
                 clipc, common, work, work, work, configs, work);
    if (rc != 0) fail_msg("eval: %s", out);
    assert_non_null(strstr(out, "zero-shot"));
    assert_non_null(strstr(out, "image->text"));
    cJSON *j = read_json("res/results.json");
    const cJSON *zs = cJSON_GetObjectItemCaseSensitive(j, "zeroshot");
    assert_int_equal(cJSON_GetArraySize(zs), 2);  // two sets in one call, the same data
    check_zeroshot_entry(cJSON_GetArrayItem(zs, 0));
    check_zeroshot_entry(cJSON_GetArrayItem(zs, 1));
    assert_float_equal(number(cJSON_GetArrayItem(zs, 0), "top1"), number(cJSON_GetArrayItem(zs, 1), "top1"), 0);
    const cJSON *png = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(zs, 0), "confusion_png");
    assert_true(cJSON_IsString(png));
    size_t size = 0;
    uint8_t *bytes = fs_read_all(png->valuestring, &size);
    assert_non_null(bytes);
    assert_true(size > 8 && !memcmp(bytes, "\x89PNG", 4));
    free(bytes);
    const cJSON *ret = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "retrieval"), 0);
    assert_non_null(ret);
    assert_int_equal((int)number(ret, "n_images"), N_IMAGES);  // same key: one image, several captions
    assert_int_equal((int)number(ret, "n_texts"), N_CAPTIONS);
    check_direction(cJSON_GetObjectItemCaseSensitive(ret, "image_to_text"), N_IMAGES, N_CAPTIONS);
    check_direction(cJSON_GetObjectItemCaseSensitive(ret, "text_to_image"), N_CAPTIONS, N_IMAGES);
    cJSON_Delete(j);
}

static double dot(const float *a, const float *b) {
    double s = 0;
    for (int e = 0; e < E; e++) s += (double)a[e] * b[e];
    return s;
}

static void test_embed_safetensors(void **state) {
    (void)state;
    char out[8192];
    write_text("texts.txt", "a photo of a cat\n\na red square\nzero\n");
    int rc = cli_run(out, sizeof out, "%s embed %s --images %s %s/s3.webp %s/s3.png --texts %s/texts.txt --output %s/emb.safetensors",
                 clipc, common, work, work, work, work, work);
    if (rc != 0) fail_msg("embed: %s", out);
    char *path = in_work("emb.safetensors");
    st_file *f = st_open(path);
    assert_non_null(f);
    const st_tensor *img = st_find(f, "image_embeddings"), *txt = st_find(f, "text_embeddings");
    assert_non_null(img);
    assert_non_null(txt);
    assert_int_equal(img->dtype, ST_DTYPE_F32);
    assert_int_equal(img->shape[0], N_LABELLED + 2);
    assert_int_equal(img->shape[1], E);
    assert_int_equal(txt->shape[0], 3);  // the empty line is skipped
    const float *rows = img->data;
    for (int i = 0; i < N_LABELLED + 2; i++) assert_float_equal(dot(rows + i * E, rows + i * E), 1.0, 1e-5);
    // A lossless WebP file of sample 3's picture takes the loader's path: the same embedding.
    for (int e = 0; e < E; e++) assert_float_equal(rows[N_LABELLED * E + e], rows[3 * E + e], 1e-5);
    // PNG: decoded, cropped and scaled by the same libwebp rescaler: nearly the same embedding.
    assert_true(dot(rows + (N_LABELLED + 1) * E, rows + 3 * E) > 0.999);
    cJSON *keys = cJSON_Parse(st_metadata(f, "image_keys")), *texts = cJSON_Parse(st_metadata(f, "texts"));
    assert_int_equal(cJSON_GetArraySize(keys), N_LABELLED + 2);
    assert_string_equal(cJSON_GetArrayItem(keys, 3)->valuestring, "s3");
    assert_non_null(strstr(cJSON_GetArrayItem(keys, N_LABELLED)->valuestring, "s3.webp"));
    assert_string_equal(cJSON_GetArrayItem(texts, 1)->valuestring, "a red square");
    assert_non_null(st_metadata(f, "clipc.config"));
    cJSON_Delete(keys);
    cJSON_Delete(texts);
    st_close(f);
    free(path);
}

// Parses a .npy v1.0 float32 file: checks the preamble and header, returns the data (malloc'ed).
static float *read_npy(const char *name, long *rows, long *cols) {
    char *path = in_work(name);
    size_t size = 0;
    uint8_t *b = fs_read_all(path, &size);
    assert_non_null(b);
    assert_memory_equal(b, "\x93NUMPY\x01\x00", 8);
    size_t header = (size_t)b[8] | (size_t)b[9] << 8;
    assert_int_equal((10 + header) % 64, 0);
    assert_int_equal(b[10 + header - 1], '\n');
    char *dict = strndup((char *)b + 10, header);
    assert_non_null(strstr(dict, "'descr': '<f4'"));
    assert_non_null(strstr(dict, "'fortran_order': False"));
    assert_int_equal(sscanf(strstr(dict, "'shape': ("), "'shape': (%ld, %ld)", rows, cols), 2);
    assert_int_equal(size, 10 + header + (size_t)(*rows * *cols) * 4);
    float *data = malloc(size - 10 - header);
    memcpy(data, b + 10 + header, size - 10 - header);
    free(dict), free(b), free(path);
    return data;
}

static void test_embed_npy_from_stdin(void **state) {
    (void)state;
    char out[8192];
    int rc = cli_run(out, sizeof out, "printf 'first text\\nsecond text\\n' | %s embed %s --texts - --output %s/t.npy", clipc,
                 common, work);
    if (rc != 0) fail_msg("embed: %s", out);
    long rows = 0, cols = 0;
    float *data = read_npy("t.npy", &rows, &cols);
    assert_int_equal(rows, 2);
    assert_int_equal(cols, E);
    for (int i = 0; i < 2; i++) assert_float_equal(dot(data + i * E, data + i * E), 1.0, 1e-5);
    free(data);
    char *keys_path = in_work("t.keys.txt");
    char *keys = (char *)fs_read_all(keys_path, NULL);
    assert_non_null(keys);
    assert_string_equal(keys, "first text\nsecond text\n");
    free(keys), free(keys_path);
    rc = cli_run(out, sizeof out, "%s embed %s --texts - --images %s --output %s/both.npy < /dev/null", clipc, common, work, work);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "both.npy"));
}

static void test_classify_probabilities(void **state) {
    (void)state;
    char out[8192];
    int rc = cli_run(out, sizeof out, "%s classify %s --labels 'red, green,blue' --output %s/cls.json %s/s3.webp %s/s3.png %s/s3.jpg",
                 clipc, common, work, work, work, work);
    if (rc != 0) fail_msg("classify: %s", out);
    assert_non_null(strstr(out, "image\tlabel\tred\tgreen\tblue\n"));
    cJSON *j = read_json("cls.json");
    assert_int_equal(cJSON_GetArraySize(j), 3);
    for (int i = 0; i < 3; i++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(j, i), "probabilities");
        assert_int_equal(cJSON_GetArraySize(p), 3);
        double sum = number(p, "red") + number(p, "green") + number(p, "blue");
        assert_float_equal(sum, 1.0, 1e-5);
        assert_true(number(p, "red") > 0 && number(p, "green") > 0 && number(p, "blue") > 0);
    }
    cJSON_Delete(j);
}

// The command fails with status `status` and one line that contains `needle`.
static void expect_error(int status, const char *needle, const char *fmt, const char *arg) {
    char cmd[4096], out[8192];
    snprintf(cmd, sizeof cmd, fmt, arg);
    int rc = cli_run(out, sizeof out, "%s %s", clipc, cmd);
    if (rc != status || !strstr(out, needle)) fail_msg("'%s': status %d, output: %s", cmd, rc, out);
    assert_non_null(strchr(out, '\n'));
    assert_int_equal(strchr(out, '\n')[1], '\0');  // exactly one line
}

static void test_bad_input(void **state) {
    (void)state;
    char args[4096];
    snprintf(args, sizeof args, "--vocab %s --labels a,b %s/s3.png --pretrained", vocab, work);
    expect_error(1, "/missing.safetensors", "classify %s /missing.safetensors", args);
    // Wrong config for the weights: a strict load names the key and the file.
    write_text("wide.json", "{\"embed_dim\": 48, \"vision_cfg\": {\"image_size\": 32, \"layers\": 1, \"width\": 32, "
                            "\"head_width\": 16, \"patch_size\": 8}, \"text_cfg\": {\"width\": 32, \"heads\": 2, \"layers\": 1}}");
    char wrong[4096];
    snprintf(wrong, sizeof wrong, "eval %s --model %s/wide.json --zeroshot %s --templates %s/zeroshot/fashion-mnist-templates.txt",
             common, work, work, configs);
    expect_error(1, "tiny.safetensors", "%s", wrong);
    expect_error(1, "proj", "%s", wrong);
    // A corrupt image file given to classify.
    snprintf(args, sizeof args, "classify %s --labels a,b %s/s3.png %s/bad.jpg", common, work, work);
    expect_error(1, "bad.jpg", "%s", args);
    // Unknown flag: a usage error that suggests the nearest name.
    expect_error(2, "zeroshot", "eval --zershot %s", work);
    // Weights without the config metadata and no --model.
    st_writer *w = st_writer_init();
    float x = 1;
    int64_t shape[1] = {1};
    assert_int_equal(st_writer_add(w, "logit_scale", ST_DTYPE_F32, shape, 0, &x), 0);
    char *bare = in_work("bare.safetensors");
    assert_int_equal(st_writer_write(w, bare), 0);
    st_writer_free(w);
    snprintf(args, sizeof args, "embed --pretrained %s --vocab %s --texts %s/texts.txt --output %s/x.npy", bare, vocab, work, work);
    expect_error(1, "--model", "%s", args);
    free(bare);
    // Shards without labels for zero-shot.
    snprintf(args, sizeof args, "eval %s --zeroshot %s/ret --templates %s/zeroshot/fashion-mnist-templates.txt", common, work, configs);
    expect_error(1, "no labels", "%s", args);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CLIPC_BINARY VOCAB CONFIGS_DIR\n", argv[0]);
        return 2;
    }
    clipc = argv[1], vocab = argv[2], configs = argv[3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_json),
        cmocka_unit_test(test_embed_safetensors),
        cmocka_unit_test(test_embed_npy_from_stdin),
        cmocka_unit_test(test_classify_probabilities),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
