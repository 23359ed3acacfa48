// End-to-end tests of `clipc finetune` on Fashion-MNIST: a clip-tiny model trained briefly here
// (7,500 images, under a minute on 2 cores) is adapted with K = 16 shots per class; the linear
// probe and fine-tuning must beat its zero-shot accuracy, WiSE-FT's alpha 0 must be the zero-shot
// accuracy, the saved heads and weights must load; the probe with the same seed must give the same
// file byte for byte, K = 1 must use the fixed L2 strength; bad input is a message, not a crash.
// Usage: test_finetune_cli CLIPC_BINARY FASHION_MNIST_DIR VOCAB CONFIGS_DIR
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_run.h"
#include "common/fsutil.h"
#include "shards/manifest.h"
#include "finetune/head.h"
#include "model/clip.h"
#include "model/safetensors.h"

static const char *clipc, *fmnist, *vocab, *configs;
static char work[256], checkpoint[512];

// `clipc finetune` on the split made by setup, with the given extra flags; on the CPU, where the
// results compared bit for bit are deterministic.
static int finetune(char *out, size_t cap, const char *out_dir, const char *extra) {
    return cli_run(out, cap,
                   "%s finetune --checkpoint %s --vocab %s --train-data %s/fm-train --test-data %s/fm-test "
                   "--zeroshot-templates %s/zeroshot/fashion-mnist-templates.txt --test-num-samples 1000 "
                   "--out-dir %s/%s --output %s/%s.json --device cpu %s",
                   clipc, checkpoint, vocab, work, work, configs, work, out_dir, work, out_dir, extra);
}

// Writes a manifest of shards [first, last) of src with absolute shard paths.
static void write_subset(const manifest *src, int first, int last, const char *name) {
    manifest m = *src;
    manifest_shard *shards = calloc((size_t)(last - first), sizeof(manifest_shard));
    for (int i = first; i < last; i++) shards[i - first] = (manifest_shard){src->shards[i].resolved_path, NULL,
                                                                            src->shards[i].num_samples, 0};
    m.shards = shards, m.n_shards = last - first;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/%s", work, name);
    assert_int_equal(fs_mkdirs(dir), 0);
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    assert_int_equal(manifest_save(path, &m), 0);
    free(shards);
}

// Fashion-MNIST's test split in 4 shards: 3 to train on and draw shots from, 1 to test on; a
// clip-tiny model trained on the 3 for one short epoch.
static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_finetune_XXXXXX");
    assert_non_null(mkdtemp(work));
    static char out[16384];
    int rc = cli_run(out, sizeof out, "%s shards --fashion-mnist %s --split test --shard-size 2500 --out %s/all", clipc,
                     fmnist, work);
    if (rc != 0) fail_msg("shards: %s", out);
    char path[512];
    snprintf(path, sizeof path, "%s/all/manifest.json", work);
    manifest *all = manifest_load(path);
    assert_non_null(all);
    assert_int_equal(all->n_shards, 4);
    write_subset(all, 0, 3, "fm-train");
    write_subset(all, 3, 4, "fm-test");
    manifest_free(all);
    rc = cli_run(out, sizeof out,
                 "%s train --model clip-tiny --model-configs %s/models --vocab %s --train-data %s/fm-train "
                 "--batch-size 128 --epochs 1 --lr 1e-3 --warmup 5 --workers 2 --seed 0 --logs %s/logs --name m --device cpu",
                 clipc, configs, vocab, work, work);
    if (rc != 0) fail_msg("train: %s", out);
    snprintf(checkpoint, sizeof checkpoint, "%s/logs/m/checkpoints/epoch_1/model.safetensors", work);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return cli_run(NULL, 0, "rm -rf %s", work);
}

static cJSON *read_report(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.json", work, name);
    size_t size;
    uint8_t *text = fs_read_all(path, &size);
    assert_non_null(text);
    cJSON *r = cJSON_Parse((const char *)text);
    free(text);
    assert_non_null(r);
    return r;
}

static double number(const cJSON *r, const char *section, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(section ? cJSON_GetObjectItemCaseSensitive(r, section) : r, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void check_head_file(const char *path, const char *kind) {
    linear_head h;
    char got[32], **names = NULL;
    assert_int_equal(linear_head_load(path, &h, got, &names), 0);
    assert_string_equal(got, kind);
    assert_int_equal(h.n_classes, 10);
    assert_int_equal(h.dim, 128);
    assert_string_equal(names[9], "Ankle boot");
    for (int c = 0; c < 10; c++) free(names[c]);
    free(names);
    linear_head_free(&h);
}

// The weights file loads, strictly, into a model built from its own metadata.
static void check_model_file(const char *path) {
    st_file *f = st_open(path);
    assert_non_null(f);
    clip_config cfg;
    assert_int_equal(clip_config_parse(st_metadata(f, "clipc.config"), path, &cfg), 0);
    st_close(f);
    clip_model *m = clip_model_init(&cfg, 0);
    assert_non_null(m);
    assert_int_equal(clip_model_load(m, path), 0);
    clip_model_free(m);
}

static void test_sixteen_shots_beat_zeroshot(void **state) {
    (void)state;
    static char out[65536];
    int rc = finetune(out, sizeof out, "k16", "--shots 16 --epochs 20 --lr 1e-3 --seed 1");
    print_message("%s", strstr(out, "\nmethod") ? strstr(out, "\nmethod") : out);
    if (rc != 0) fail_msg("finetune: %s", out);
    cJSON *r = read_report("k16");
    double zs = number(r, "zeroshot", "top1"), probe = number(r, "linear_probe", "top1");
    assert_int_equal((int)number(r, NULL, "test_images"), 1000);
    assert_true(probe > zs);
    const cJSON *table = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "finetune"), "wiseft");
    assert_int_equal(cJSON_GetArraySize(table), 5);
    assert_true(number(cJSON_GetArrayItem(table, 0), NULL, "alpha") == 0);
    assert_true(number(cJSON_GetArrayItem(table, 0), NULL, "top1") == zs);
    assert_true(number(r, "finetune", "top1") > zs);
    // best_top1 and best_alpha are the table's highest top1 and its (first) alpha.
    int best = 0;
    for (int i = 1; i < cJSON_GetArraySize(table); i++)
        if (number(cJSON_GetArrayItem(table, i), NULL, "top1") > number(cJSON_GetArrayItem(table, best), NULL, "top1")) best = i;
    assert_true(number(r, "finetune", "best_top1") == number(cJSON_GetArrayItem(table, best), NULL, "top1"));
    assert_true(number(r, "finetune", "best_alpha") == number(cJSON_GetArrayItem(table, best), NULL, "alpha"));
    char path[512];
    snprintf(path, sizeof path, "%s/k16/probe.safetensors", work);
    check_head_file(path, HEAD_KIND_PROBE);
    snprintf(path, sizeof path, "%s/k16/finetuned.head.safetensors", work);
    check_head_file(path, HEAD_KIND_FINETUNED);
    snprintf(path, sizeof path, "%s/k16/wiseft.head.safetensors", work);
    check_head_file(path, HEAD_KIND_FINETUNED);
    snprintf(path, sizeof path, "%s/k16/finetuned.safetensors", work);
    check_model_file(path);
    snprintf(path, sizeof path, "%s/k16/wiseft.safetensors", work);
    check_model_file(path);
    snprintf(path, sizeof path, "%s/k16/shots/manifest.json", work);
    manifest *m = manifest_load(path);
    assert_non_null(m);
    assert_int_equal(m->num_samples, 160);
    manifest_free(m);
    cJSON_Delete(r);
}

// The probe alone: the same seed gives the same head file; one shot uses the fixed strength.
static void test_probe_deterministic_and_one_shot(void **state) {
    (void)state;
    static char out[65536];
    assert_int_equal(finetune(out, sizeof out, "p4a", "--method probe --shots 4 --seed 3"), 0);
    assert_int_equal(finetune(out, sizeof out, "p4b", "--method probe --shots 4 --seed 3"), 0);
    assert_int_equal(cli_run(out, sizeof out, "cmp %s/p4a/probe.safetensors %s/p4b/probe.safetensors", work, work), 0);
    cJSON *r = read_report("p4a");
    assert_null(cJSON_GetObjectItemCaseSensitive(r, "finetune"));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "linear_probe"),
                                                         "lambda_selection")->valuestring, "held-out");
    cJSON_Delete(r);
    int rc = finetune(out, sizeof out, "p1", "--method probe --shots 1");
    if (rc != 0) fail_msg("finetune: %s", out);
    r = read_report("p1");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "linear_probe"),
                                                         "lambda_selection")->valuestring, "fixed");
    cJSON_Delete(r);
}

static void test_bad_input(void **state) {
    (void)state;
    static char out[65536];
    assert_int_equal(finetune(out, sizeof out, "bad", "--method probe --shots 1000"), 1);
    assert_non_null(strstr(out, "clipc finetune: "));
    assert_non_null(strstr(out, "fewer than the 1000 shots"));
    assert_int_equal(finetune(out, sizeof out, "bad", "--method knn"), 2);
    assert_non_null(strstr(out, "--method must be probe, finetune or all"));
    assert_int_equal(finetune(out, sizeof out, "bad", "--shotz 4"), 2);
    assert_non_null(strstr(out, "shots"));
    assert_int_equal(cli_run(out, sizeof out, "%s finetune --checkpoint %s", clipc, checkpoint), 2);
    assert_non_null(strstr(out, "are required"));
    // A truncated checkpoint, and a file that is not a CLIP state dict.
    assert_int_equal(cli_run(out, sizeof out, "head -c 1000 %s > %s/trunc.safetensors && %s finetune --checkpoint "
                             "%s/trunc.safetensors --train-data %s/fm-train --test-data %s/fm-test --out-dir %s/bad --vocab %s",
                             checkpoint, work, clipc, work, work, work, work, vocab), 1);
    assert_non_null(strstr(out, "trunc.safetensors"));
    assert_int_equal(cli_run(out, sizeof out, "%s finetune --checkpoint %s/k16/probe.safetensors --train-data %s/fm-train "
                             "--test-data %s/fm-test --out-dir %s/bad --vocab %s",
                             clipc, work, work, work, work, vocab), 1);
    assert_non_null(strstr(out, "probe.safetensors"));
    // A missing test set (the last --test-data wins).
    assert_int_equal(finetune(out, sizeof out, "bad", "--method probe --shots 2 --test-data /nonexistent/manifest.json"), 1);
    assert_non_null(strstr(out, "/nonexistent/manifest.json"));
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: test_finetune_cli CLIPC_BINARY FASHION_MNIST_DIR VOCAB CONFIGS_DIR\n");
        return 2;
    }
    clipc = argv[1], fmnist = argv[2], vocab = argv[3], configs = argv[4];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sixteen_shots_beat_zeroshot),
        cmocka_unit_test(test_probe_deterministic_and_one_shot),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
