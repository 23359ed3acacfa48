// ModifiedResNet towers trained end to end with `clipc train` on CPU ranks over Gloo, started by
// `clipc launch` in strict device mode with the consistency check on (as tests/test_dist_train.c):
// - --use-bn-sync: 2 ranks of batch 16 log the same losses and end with the same weights and
//   BatchNorm running statistics as 1 rank of batch 32 (SyncBatchNorm: the global batch's
//   statistics, their gradients summed over the ranks);
// - without it each rank normalizes with its own half's statistics: the run differs;
// - --accum-freq 2 on 1 rank counts each sample once in num_batches_tracked;
// - `clipc eval` of the RN checkpoint runs (evaluation mode: the running statistics).
// Usage: test_rn_dist_train CLIPC_BINARY FASHION_MNIST_DIR VOCAB
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli_run.h"
#include "common/error.h"
#include "model/safetensors.h"

static const char *clipc, *fmnist, *vocab;
static char work[256];
static int port;

#define STEPS 4

// 4 steps of a global batch of 32 (128 samples) of the tiny RN config, a checkpoint at the end.
static void must_train(int ranks, const char *name, const char *extra) {
    char launch[256] = "", out[32768];
    if (ranks > 1) snprintf(launch, sizeof launch, "%s launch --nproc-per-node %d --master-port %d --", clipc, ranks, port++);
    if (cli_run(out, sizeof out,
                "cd %s && %s %s train --model rn-tiny.json --vocab %s --train-data train --train-num-samples 128 "
                "--epochs 1 --warmup 2 --lr 1e-3 --workers 1 --seed 3 --threads 1 --logs logs --name %s "
                "--log-every-n-steps 1 --dist-timeout 60 %s",
                work, launch, clipc, vocab, name, extra) != 0) {
        fputs(out, stdout);
        fail_msg("%s failed (its output above)", name);
    }
}

static const char *weights(const char *name) {
    static char paths[2][512];
    static int next;
    char *path = paths[next++ % 2];
    snprintf(path, sizeof paths[0], "%s/logs/%s/checkpoints/epoch_1/model.safetensors", work, name);
    return path;
}

// ||a - b|| / ||b|| over the float tensors whose name contains `part` ("" for all); *counters
// receives whether every num_batches_tracked is equal, and *count the first one of b.
static double rel_diff(const char *a_path, const char *b_path, const char *part, bool *counters, int64_t *count) {
    st_file *a = st_open(a_path), *b = st_open(b_path);
    if (!a || !b) fail_msg("%s", err_msg());
    double diff2 = 0, norm2 = 0;
    *counters = true, *count = -1;
    for (int i = 0; i < st_count(b); i++) {
        const st_tensor *tb = st_get(b, i), *ta = st_find(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->numel, tb->numel);
        if (tb->dtype == ST_DTYPE_I64) {
            int64_t x, y;
            memcpy(&x, ta->data, sizeof x), memcpy(&y, tb->data, sizeof y);
            *counters = *counters && x == y;
            if (*count < 0) *count = y;
            continue;
        }
        if (!strstr(tb->name, part)) continue;
        const float *x = ta->data, *y = tb->data;
        for (int64_t j = 0; j < tb->numel; j++) {
            diff2 += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
            norm2 += (double)y[j] * y[j];
        }
    }
    st_close(a);
    st_close(b);
    return sqrt(diff2 / norm2);
}

static void read_losses(const char *name, double *losses) {
    char path[512], line[2048];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, name);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: no metrics.jsonl", name);
    while (fgets(line, sizeof line, f)) {
        const char *step = strstr(line, "\"step\":"), *loss = strstr(line, "\"loss\":");
        if (strstr(line, "\"type\":\"train\"") && step && loss && atoi(step + 7) >= 1 && atoi(step + 7) <= STEPS)
            losses[atoi(step + 7) - 1] = atof(loss + 7);
    }
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_rn_dist_XXXXXX");
    assert_non_null(mkdtemp(work));
    port = 20000 + (int)((getpid() + 7919) % 20000);
    char out[8192];
    if (cli_run(out, sizeof out, "%s shards --fashion-mnist %s --split test --shard-size 2500 --out %s/train", clipc,
                fmnist, work) != 0)
        fail_msg("shards: %s", out);
    return cli_run(NULL, 0,
                   "printf '{\"embed_dim\": 32, \"vision_cfg\": {\"image_size\": 32, \"layers\": [1, 1, 1, 1], "
                   "\"width\": 8, \"head_width\": 32, \"patch_size\": null}, \"text_cfg\": {\"context_length\": 77, "
                   "\"vocab_size\": 49408, \"width\": 32, \"heads\": 2, \"layers\": 1}}' > %s/rn-tiny.json",
                   work);
}

static int teardown(void **state) {
    (void)state;
    return cli_run(NULL, 0, "rm -rf %s", work);
}

static void test_bn_sync_is_the_global_batch(void **state) {
    (void)state;
    must_train(1, "rn-1x32", "--batch-size 32");
    must_train(2, "rn-2x16-sync", "--batch-size 16 --use-bn-sync");
    must_train(2, "rn-2x16", "--batch-size 16");
    double one[STEPS], sync[STEPS], local[STEPS];
    read_losses("rn-1x32", one), read_losses("rn-2x16-sync", sync), read_losses("rn-2x16", local);
    for (int s = 0; s < STEPS; s++) {
        printf("  step %d loss: 1x32 %.7f, 2x16 --use-bn-sync %.7f, 2x16 %.7f\n", s + 1, one[s], sync[s], local[s]);
        if (!(fabs(sync[s] - one[s]) <= 1e-5 * fabs(one[s]))) fail_msg("step %d: --use-bn-sync loss %.7f, 1 rank %.7f", s + 1, sync[s], one[s]);
    }
    bool counters;
    int64_t count;
    double w = rel_diff(weights("rn-2x16-sync"), weights("rn-1x32"), "", &counters, &count);
    double stats = rel_diff(weights("rn-2x16-sync"), weights("rn-1x32"), "running_", &counters, &count);
    printf("  --use-bn-sync against 1 rank: weights %.3g, running statistics %.3g (relative), counters %s (%lld)\n", w,
           stats, counters ? "equal" : "differ", (long long)count);
    assert_true(w <= 1e-5 && stats <= 1e-5 && counters && count == STEPS);
    double w_local = rel_diff(weights("rn-2x16"), weights("rn-1x32"), "", &counters, &count);
    double stats_local = rel_diff(weights("rn-2x16"), weights("rn-1x32"), "running_", &counters, &count);
    printf("  each rank's own statistics against 1 rank: weights %.3g, running statistics %.3g\n", w_local, stats_local);
    assert_true(w_local > 1e-4 && stats_local > 1e-3);
}

// Each sample counts once in the running statistics under --accum-freq (the recomputed pass does
// not count), and the checkpoint evaluates.
static void test_accum_freq_and_eval(void **state) {
    (void)state;
    must_train(1, "rn-1x16x2", "--batch-size 16 --accum-freq 2");
    bool counters;
    int64_t count;
    rel_diff(weights("rn-1x16x2"), weights("rn-1x16x2"), "", &counters, &count);
    printf("  --accum-freq 2, 4 steps: num_batches_tracked %lld\n", (long long)count);
    assert_int_equal(count, 2 * STEPS);
    char out[16384];
    if (cli_run(out, sizeof out, "cd %s && %s eval --model rn-tiny.json --pretrained %s --vocab %s --zeroshot train --threads 1",
                work, clipc, weights("rn-1x16x2"), vocab) != 0) {
        fputs(out, stdout);
        fail_msg("clipc eval of the RN checkpoint failed");
    }
    printf("%s", out);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CLIPC_BINARY FASHION_MNIST_DIR VOCAB\n", argv[0]);
        return 2;
    }
    clipc = argv[1], fmnist = argv[2], vocab = argv[3];
    setenv("CLIPC_DIST_STRICT", "1", 1);
    setenv("CLIPC_DIST_DEBUG", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_sync_is_the_global_batch),
        cmocka_unit_test(test_accum_freq_and_eval),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
