// eval_test: the fixtures of the end-to-end evaluation command tests (include after cmocka.h): a
// tiny random CLIP model saved as a clipc checkpoint, and captioned shards with several captions
// per image, made by `clipc shards --csv`.
#ifndef CLIPC_TESTS_EVAL_TEST_H
#define CLIPC_TESTS_EVAL_TEST_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "data_testutil.h"
#include "model/clip.h"

enum { EVAL_TEST_E = 32, EVAL_TEST_IMAGES = 4, EVAL_TEST_CAPTIONS = 7 };

static const char EVAL_TEST_TINY[] =
    "{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"layers\": 1, \"width\": 32, \"head_width\": 16,"
    " \"mlp_ratio\": 2.0, \"patch_size\": 8}, \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408,"
    " \"width\": 32, \"heads\": 2, \"layers\": 1}}";

static inline void eval_test_write(const char *dir, const char *name, const char *text) {
    char *path = testutil_path(dir, name);
    assert_int_equal(testutil_write_file(path, text, strlen(text)), 0);
    free(path);
}

// Parses DIR/NAME as JSON (a failure fails the test).
static inline cJSON *eval_test_read_json(const char *dir, const char *name) {
    char *path = testutil_path(dir, name);
    char *text = (char *)fs_read_all(path, NULL);
    if (!text) fail_msg("%s", err_msg());
    cJSON *j = cJSON_Parse(text);
    if (!j) fail_msg("%s: not JSON", path);
    free(text);
    free(path);
    return j;
}

// The number at key of o (a missing or non-number key fails the test).
static inline double eval_test_number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("no number '%s'", key);
    return v->valuedouble;
}

// Writes DIR/tiny.json and DIR/<weights> (a clipc checkpoint, config in its metadata) initialized
// from seed.
static inline void eval_test_save_model(const char *dir, const char *weights, uint64_t seed) {
    eval_test_write(dir, "tiny.json", EVAL_TEST_TINY);
    char *cfg_path = testutil_path(dir, "tiny.json"), *path = testutil_path(dir, weights);
    clip_config cfg;
    assert_int_equal(clip_config_load(cfg_path, &cfg), 0);
    clip_model *m = clip_model_init(&cfg, seed);
    assert_non_null(m);
    assert_int_equal(clip_model_save(m, path, NULL), 0);
    clip_model_free(m);
    free(cfg_path);
    free(path);
}

// DIR/ret: four pictures with 2, 1, 3 and 1 captions (one CSV row per caption), converted to shards.
static inline void eval_test_captioned_shards(const char *clipc, const char *dir) {
    static const int captions_per_image[EVAL_TEST_IMAGES] = {2, 1, 3, 1};
    char *tsv = xstrdup("filepath\ttitle\n");
    for (int i = 0; i < EVAL_TEST_IMAGES; i++) {
        char name[32], row[512];
        snprintf(name, sizeof name, "p%d.png", i);
        char *path = testutil_path(dir, name);
        image_rgb img = testutil_picture(48, 36, 100 + i);
        assert_int_equal(testutil_write_png(path, &img), 0);
        image_rgb_free(&img);
        for (int c = 0; c < captions_per_image[i]; c++) {
            snprintf(row, sizeof row, "%s\tpicture %d, caption %d\n", path, i, c);
            tsv = xrealloc(tsv, strlen(tsv) + strlen(row) + 1);
            strcat(tsv, row);
        }
        free(path);
    }
    eval_test_write(dir, "captions.tsv", tsv);
    free(tsv);
    char out[8192];
    int rc = cli_run(out, sizeof out, "%s shards --csv %s/captions.tsv --out %s/ret", clipc, dir, dir);
    if (rc != 0) fail_msg("shards: %s", out);
}

#endif
