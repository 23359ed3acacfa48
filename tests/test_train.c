// End-to-end tests of `clipc train` through the CLI: exact resume (N steps, save, resume, N more
// steps gives the losses of 2N straight, bit for bit, across an epoch boundary), non-finite losses
// stopping the run with a usable checkpoint, and bad input: truncated and mismatched checkpoints,
// unknown flags and config keys, missing data.
// Usage: test_train CLIPC_BINARY FASHION_MNIST_DIR VOCAB CONFIGS_DIR
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

static const char *clipc, *fmnist, *vocab, *configs;
static char work[256];

// The common flags of the small runs: 4 steps an epoch of 32 samples, 2 epochs.
static int train(char *out, size_t cap, const char *name, const char *extra) {
    return cli_run(out, cap,
                   "%s train --model clip-tiny --model-configs %s --vocab %s --train-data %s/train "
                   "--batch-size 32 --train-num-samples 128 --epochs 2 --warmup 2 --lr 1e-3 --workers 2 --seed 3 "
                   "--logs %s/logs --name %s --log-every-n-steps 100 %s",
                   clipc, configs, vocab, work, work, name, extra);
}

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_train_XXXXXX");
    assert_non_null(mkdtemp(work));
    char out[8192];
    int rc = cli_run(out, sizeof out, "%s shards --fashion-mnist %s --split test --shard-size 2500 --out %s/train", clipc,
                     fmnist, work);
    if (rc != 0) fail_msg("shards: %s", out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return cli_run(NULL, 0, "rm -rf %s", work);
}

static void test_resume_is_bit_exact(void **state) {
    (void)state;
    char out[16384], straight[8][32] = {{0}}, resumed[8][32] = {{0}};
    if (train(out, sizeof out, "straight", "") != 0) fail_msg("%s", out);
    assert_int_equal(cli_read_losses(work, "straight", straight, 8), 8);
    // 3 steps and a mid-epoch checkpoint, then resume for the remaining 5 (crossing the epoch end).
    if (train(out, sizeof out, "resumed", "--max-steps 3 --save-steps 3") != 0) fail_msg("%s", out);
    if (train(out, sizeof out, "resumed", "--resume latest") != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "resumed from"));
    assert_int_equal(cli_read_losses(work, "resumed", resumed, 8), 8);
    for (int i = 0; i < 8; i++) {
        printf("  step %d: straight %s resumed %s\n", i + 1, straight[i], resumed[i]);
        assert_string_equal(straight[i], resumed[i]);
    }
    // Different data order would give different losses: the comparison can fail.
    char other[8][32] = {{0}};
    if (train(out, sizeof out, "other-seed", "--max-steps 2 --seed 4") != 0) fail_msg("%s", out);
    cli_read_losses(work, "other-seed", other, 8);
    assert_string_not_equal(other[1], straight[1]);
}

static void test_nonfinite_loss_stops_with_usable_checkpoint(void **state) {
    (void)state;
    char out[16384];
    int rc = train(out, sizeof out, "exploding", "--lr 1e30 --warmup 1 --save-steps 1 --nonfinite-limit 2 --lr-scheduler const");
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "non-finite for 2 steps in a row"));
    // The step-1 checkpoint (written before the losses went bad) still resumes.
    rc = cli_run(out, sizeof out, "ls %s/logs/exploding/checkpoints/step_1.state.safetensors", work);
    assert_int_equal(rc, 0);
}

static void test_bad_checkpoints_are_refused(void **state) {
    (void)state;
    char out[16384];
    if (train(out, sizeof out, "ckpt", "--max-steps 2 --save-steps 1 --keep-checkpoints 0") != 0) fail_msg("%s", out);
    const char *dir = "logs/ckpt/checkpoints";
    // Mismatched pair: step 1's state with step 2's weights.
    cli_run(NULL, 0, "cp %s/%s/step_2.safetensors %s/%s/step_1.safetensors", work, dir, work, dir);
    char flags[1024];
    snprintf(flags, sizeof flags, "--resume %s/%s/step_1.state.safetensors", work, dir);
    assert_int_equal(train(out, sizeof out, "ckpt", flags), 1);
    assert_non_null(strstr(out, "mismatched checkpoint"));
    assert_non_null(strstr(out, "step_1.state.safetensors"));
    // Truncated state file: an error naming it, never a crash.
    cli_run(NULL, 0, "truncate -s 100 %s/%s/step_2.state.safetensors", work, dir);
    snprintf(flags, sizeof flags, "--resume %s/%s/step_2.state.safetensors", work, dir);
    assert_int_equal(train(out, sizeof out, "ckpt", flags), 1);
    assert_non_null(strstr(out, "step_2.state.safetensors"));
}

static bool exists(const char *run, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/logs/%s/checkpoints/%s", work, run, file);
    return access(path, F_OK) == 0;
}

// --keep-checkpoints keeps the newest numbered checkpoints; --save-most-recent adds epoch_latest;
// a run stopped by --max-steps mid-epoch still leaves a checkpoint of its last step.
static void test_checkpoint_retention(void **state) {
    (void)state;
    char out[16384];
    if (train(out, sizeof out, "keep", "--max-steps 3 --save-steps 1 --keep-checkpoints 2") != 0) fail_msg("%s", out);
    assert_false(exists("keep", "step_1.safetensors"));
    assert_false(exists("keep", "step_1.state.safetensors"));
    assert_true(exists("keep", "step_2.state.safetensors"));
    assert_true(exists("keep", "step_3.state.safetensors"));
    if (train(out, sizeof out, "latest", "--max-steps 6 --save-most-recent --save-frequency 1") != 0) fail_msg("%s", out);
    assert_true(exists("latest", "epoch_1.state.safetensors"));
    assert_true(exists("latest", "epoch_latest.state.safetensors"));
    assert_true(exists("latest", "step_6.state.safetensors"));
}

static void test_bad_options(void **state) {
    (void)state;
    char out[16384];
    assert_int_equal(cli_run(out, sizeof out, "%s train --batch-sise 3 --train-data x", clipc), 2);
    assert_non_null(strstr(out, "did you mean '--batch-size'"));
    cli_run(NULL, 0, "echo '{\"learning_rate\": 1}' > %s/bad.json", work);
    assert_int_equal(cli_run(out, sizeof out, "%s train --config %s/bad.json --train-data x", clipc, work), 2);
    assert_non_null(strstr(out, "bad.json: unknown option 'learning_rate'"));
    assert_int_equal(train(out, sizeof out, "missing", "--train-data /nonexistent/manifest.json"), 1);
    assert_non_null(strstr(out, "/nonexistent"));
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s CLIPC FASHION_MNIST_DIR VOCAB CONFIGS_DIR\n", argv[0]);
        return 2;
    }
    clipc = argv[1], fmnist = argv[2], vocab = argv[3], configs = argv[4];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_nonfinite_loss_stops_with_usable_checkpoint),
        cmocka_unit_test(test_bad_checkpoints_are_refused),
        cmocka_unit_test(test_checkpoint_retention),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
