// End-to-end tests of `clipc benchmark` with two tiny random models (one given with --model) on two
// sets (a labelled set for zero-shot classification, a captioned set for retrieval): every run's
// JSON, the merged CSV and Markdown table checked against those files and against `clipc eval`,
// a re-run that skips the finished runs and leaves their files alone, the runs shared among ranks
// (RANK, WORLD_SIZE), and one-line errors for bad input.
// Usage: test_benchmark_cli CLIPC_BINARY VOCAB CONFIGS_DIR
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "cli_run.h"
#include "eval_test.h"

#include "common/error.h"
#include "common/fsutil.h"
#include "data_testutil.h"

static const char *clipc, *vocab, *configs;
static char *work;
static char common[4096];  // models, sets and options of the benchmark

enum { N_LABELLED = 17 };
static const char *const models[] = {"a", "b"};
static const char *const sets[] = {"digits", "pics"};

static char *in_work(const char *name) { return testutil_path(work, name); }

static int setup(void **state) {
    testutil_setup(state);
    work = testutil_dir;
    eval_test_save_model(work, "a.safetensors", 1);
    eval_test_save_model(work, "b.safetensors", 2);
    char *zs = in_work("zs"), *conf = in_work("zsconf");
    assert_int_equal(fs_mkdirs(zs), 0);
    assert_int_equal(fs_mkdirs(conf), 0);
    int sizes[2] = {10, 7};
    free(testutil_make_dataset(zs, sizes, 2, 40, 30, true, -1, 0));  // classes zero, one, two
    eval_test_captioned_shards(clipc, work);
    eval_test_write(conf, "digits-templates.txt", "# test templates\na photo of the number {}.\n{} written down\n");
    snprintf(common, sizeof common,
             "--pretrained a=%s/a.safetensors::b=%s/b.safetensors --model ::%s/tiny.json --zeroshot digits=%s "
             "--retrieval pics=%s/ret --zeroshot-configs %s --vocab %s --batch-size 8 --workers 1 --output %s/bench",
             work, work, work, zs, work, conf, vocab, work);
    free(zs), free(conf);
    return 0;
}

static cJSON *read_json(const char *name) { return eval_test_read_json(work, name); }

static cJSON *run_json(int model, int set) {
    char name[64];
    snprintf(name, sizeof name, "bench/%s/%s.json", models[model], sets[set]);
    return read_json(name);
}

// The number at o[object][key], or o[key] when object is NULL.
static double number(const cJSON *o, const char *object, const char *key) {
    return eval_test_number(object ? cJSON_GetObjectItemCaseSensitive(o, object) : o, key);
}

static const char *string(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int benchmark(char *out, size_t cap, const char *env, const char *extra) {
    return cli_run(out, cap, "%s %s benchmark %s %s", env, clipc, common, extra);
}

// The CSV row of (model, set), split at commas (the test's paths hold none).
static int csv_fields(const char *csv, const char *model, const char *set, char fields[16][256]) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "\n%s,", model);
    for (const char *line = strstr(csv, prefix); line; line = strstr(line + 1, prefix)) {
        int n = 0;
        const char *p = line + 1;
        while (n < 16) {
            size_t len = strcspn(p, ",\n");
            snprintf(fields[n++], 256, "%.*s", (int)len, p);
            if (p[len] != ',') break;
            p += len + 1;
        }
        if (!strcmp(fields[2], set)) return n;
    }
    fail_msg("no CSV row for %s on %s", model, set);
    return 0;
}

// The table's cells for one run equal its JSON file: CSV fractions, Markdown percentages.
static void check_table_row(const char *csv, const char *md, int model, int set) {
    cJSON *j = run_json(model, set);
    char f[16][256], row[512];
    assert_int_equal(csv_fields(csv, models[model], sets[set], f), 15);
    assert_string_equal(f[1], string(j, "pretrained"));
    if (set == 0) {
        assert_string_equal(f[3], "zeroshot_classification");
        assert_int_equal(atoi(f[4]), N_LABELLED);
        const char *keys[] = {"acc1", "acc5", "mean_per_class_recall"};
        for (int k = 0; k < 3; k++) assert_float_equal(atof(f[6 + k]), number(j, "metrics", keys[k]), 5e-7);
        assert_string_equal(f[9], "");  // no retrieval metrics
        snprintf(row, sizeof row, "| %s | digits | 17 | %.2f | %.2f | %.2f |", models[model],
                 100 * number(j, "metrics", "acc1"), 100 * number(j, "metrics", "acc5"),
                 100 * number(j, "metrics", "mean_per_class_recall"));
    } else {
        assert_string_equal(f[3], "zeroshot_retrieval");
        assert_int_equal(atoi(f[4]), EVAL_TEST_IMAGES);
        assert_int_equal(atoi(f[5]), EVAL_TEST_CAPTIONS);
        assert_string_equal(f[6], "");  // no classification metrics
        const char *keys[] = {"image_retrieval_recall@1", "image_retrieval_recall@5", "image_retrieval_recall@10",
                              "text_retrieval_recall@1",  "text_retrieval_recall@5",  "text_retrieval_recall@10"};
        for (int k = 0; k < 6; k++) assert_float_equal(atof(f[9 + k]), number(j, "metrics", keys[k]), 5e-7);
        snprintf(row, sizeof row, "| %s | pics | 4 | 7 | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |", models[model],
                 100 * number(j, "metrics", keys[3]), 100 * number(j, "metrics", keys[4]), 100 * number(j, "metrics", keys[5]),
                 100 * number(j, "metrics", keys[0]), 100 * number(j, "metrics", keys[1]), 100 * number(j, "metrics", keys[2]));
    }
    if (!strstr(md, row)) fail_msg("Markdown lacks '%s':\n%s", row, md);
    cJSON_Delete(j);
}

static void check_tables(const char *stdout_text) {
    char *csv_path = in_work("bench/results.csv"), *md_path = in_work("bench/results.md");
    char *csv = (char *)fs_read_all(csv_path, NULL), *md = (char *)fs_read_all(md_path, NULL);
    assert_non_null(csv);
    assert_non_null(md);
    assert_non_null(strstr(csv, "model,pretrained,dataset,task,images,texts,acc1,acc5,mean_per_class_recall,"));
    assert_non_null(strstr(stdout_text, md));  // the Markdown is what was printed
    for (int m = 0; m < 2; m++)
        for (int s = 0; s < 2; s++) check_table_row(csv, md, m, s);
    free(csv), free(md), free(csv_path), free(md_path);
}

static void test_runs_and_table(void **state) {
    (void)state;
    static char out[65536];
    int rc = benchmark(out, sizeof out, "", "");
    if (rc != 0) fail_msg("benchmark: %s", out);
    assert_non_null(strstr(out, "[1/4] a on digits (zero-shot classification)"));
    assert_non_null(strstr(out, "[4/4] b on pics: done -> "));
    assert_non_null(strstr(out, "ETA"));
    check_tables(out);
    cJSON *j = run_json(1, 0);
    assert_non_null(strstr(string(j, "model_config"), "tiny.json"));  // --model for b only
    assert_non_null(strstr(string(j, "templates"), "zsconf/digits-templates.txt"));  // NAME-templates.txt
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "classnames")));  // the shards' names
    assert_int_equal((int)number(j, "details", "n_classes"), 3);
    cJSON_Delete(j);
    j = run_json(0, 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "model_config")));
    cJSON_Delete(j);

    // The same numbers as `clipc eval` of model a.
    rc = cli_run(out, sizeof out, "%s eval --pretrained %s/a.safetensors --vocab %s --batch-size 8 --workers 1 "
                 "--zeroshot %s/zs --templates %s/zsconf/digits-templates.txt --retrieval %s/ret --output %s/eval.json",
                 clipc, work, vocab, work, work, work, work);
    if (rc != 0) fail_msg("eval: %s", out);
    cJSON *e = read_json("eval.json"), *zs = run_json(0, 0), *ret = run_json(0, 1);
    const cJSON *ez = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "zeroshot"), 0);
    const cJSON *er = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "retrieval"), 0);
    assert_float_equal(number(zs, "metrics", "acc1"), number(ez, NULL, "top1"), 0);
    assert_float_equal(number(zs, "metrics", "mean_per_class_recall"), number(ez, NULL, "mean_per_class_accuracy"), 0);
    assert_float_equal(number(ret, "metrics", "image_retrieval_recall@1"), number(er, "text_to_image", "R@1"), 0);
    assert_float_equal(number(ret, "metrics", "text_retrieval_recall@5"), number(er, "image_to_text", "R@5"), 0);
    cJSON_Delete(e), cJSON_Delete(zs), cJSON_Delete(ret);
}

static void run_stat(int model, int set, struct stat *st) {
    char name[64];
    snprintf(name, sizeof name, "bench/%s/%s.json", models[model], sets[set]);
    char *path = in_work(name);
    assert_int_equal(stat(path, st), 0);
    free(path);
}

// Counts the occurrences of needle in text.
static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void test_rerun_skips(void **state) {
    (void)state;
    static char out[65536];
    struct stat before[4], after[4];
    for (int k = 0; k < 4; k++) run_stat(k / 2, k % 2, &before[k]);
    int rc = benchmark(out, sizeof out, "", "");
    if (rc != 0) fail_msg("benchmark: %s", out);
    assert_int_equal(count(out, "already done"), 4);
    assert_int_equal(count(out, "done ->"), 0);
    for (int k = 0; k < 4; k++) {
        run_stat(k / 2, k % 2, &after[k]);
        assert_int_equal(before[k].st_ino, after[k].st_ino);  // never rewritten
        assert_int_equal(before[k].st_mtime, after[k].st_mtime);
    }
    check_tables(out);
}

static void test_ranks_share_runs(void **state) {
    (void)state;
    static char out[65536];
    char *b_pics = in_work("bench/b/pics.json"), *a_digits = in_work("bench/a/digits.json");
    assert_int_equal(remove(b_pics), 0);
    assert_int_equal(remove(a_digits), 0);
    // Rank 1 of 2 has runs 3 and 4 (b on digits, b on pics): one done, one to do.
    int rc = benchmark(out, sizeof out, "RANK=1 WORLD_SIZE=2", "");
    if (rc != 0) fail_msg("rank 1: %s", out);
    assert_non_null(strstr(out, "rank 1 of 2"));
    assert_int_equal(count(out, "already done"), 1);
    assert_non_null(strstr(out, "[2/2] b on pics: done ->"));
    assert_int_equal(access(a_digits, F_OK), -1);  // rank 0's
    assert_non_null(strstr(out, "1 of the 4 runs have no results yet"));
    rc = benchmark(out, sizeof out, "RANK=0 WORLD_SIZE=2", "");
    if (rc != 0) fail_msg("rank 0: %s", out);
    assert_non_null(strstr(out, "[1/2] a on digits: done ->"));
    assert_int_equal(count(out, "already done"), 1);
    check_tables(out);
    free(b_pics), free(a_digits);
}

// The command fails with `status`; its last line says `needle`.
static void expect_failure(int status, const char *needle, const char *env, const char *extra) {
    static char out[65536];
    int rc = benchmark(out, sizeof out, env, extra);
    if (rc != status || !strstr(out, needle)) fail_msg("'%s %s': status %d, output: %s", env, extra, rc, out);
}

static void test_bad_input(void **state) {
    (void)state;
    char extra[1024];
    // A finished run made from other inputs is not silently reused: named, and the others still run.
    snprintf(extra, sizeof extra, "--templates %s/zeroshot/fashion-mnist-templates.txt", configs);
    expect_failure(1, "bench/a/digits.json: made from other inputs (templates", "", extra);
    expect_failure(1, "RANK 2 is not within WORLD_SIZE 2", "RANK=2 WORLD_SIZE=2", "");
    expect_failure(1, "RANK 'x'", "RANK=x", "");
    snprintf(extra, sizeof extra, "--retrieval digits=%s/ret", work);
    expect_failure(1, "two datasets are named 'digits'", "", extra);
    snprintf(extra, sizeof extra, "--retrieval pics=%s/missing", work);
    expect_failure(1, "/missing", "", extra);
    snprintf(extra, sizeof extra, "--retrieval unlabelled=%s/ret --zeroshot nolabels=%s/ret --templates %s/zsconf/digits-templates.txt",
             work, work, work);
    expect_failure(1, "no labels", "", extra);
    expect_failure(2, "did you mean '--zeroshot'", "", "--zershot x");
    static char out[4096];
    int rc = cli_run(out, sizeof out, "%s benchmark --pretrained %s/a.safetensors --zeroshot %s/zs", clipc, work, work);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--output"));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CLIPC_BINARY VOCAB CONFIGS_DIR\n", argv[0]);
        return 2;
    }
    clipc = argv[1], vocab = argv[2], configs = argv[3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_and_table),
        cmocka_unit_test(test_rerun_skips),
        cmocka_unit_test(test_ranks_share_runs),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, testutil_teardown);
}
