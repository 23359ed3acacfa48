// End-to-end tests of `clipc train` through the CLI: exact resume (N steps, save, resume, N more
// steps gives the losses of 2N straight, bit for bit, across an epoch boundary), non-finite losses
// stopping the run with a usable checkpoint and none written during the streak, checkpoint
// retention, the host reads of a step (--profile-steps), the precision modes on the CPU,
// --grad-checkpointing (the same weights, with and without --accum-freq), a step of ViT-B-16, and bad
// input: truncated and mismatched checkpoints (refused, or passed over by --resume latest),
// corrupt samples and unreadable shards, unknown flags and config keys, missing data, OpenCLIP
// precisions clipc does not support.
// Usage: test_train CLIPC_BINARY FASHION_MNIST_DIR VOCAB CONFIGS_DIR
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
#include "data_testutil.h"

static const char *clipc, *fmnist, *vocab, *configs;
static char work[256];

// The common flags of the small runs: 4 steps an epoch of 32 samples, 2 epochs, on the CPU (bit-exact
// comparisons need it: a GPU's backward of index_select and attention is not deterministic).
static int train(char *out, size_t cap, const char *name, const char *extra) {
    return cli_run(out, cap,
                   "%s train --model clip-tiny --model-configs %s --vocab %s --train-data %s/train "
                   "--batch-size 32 --train-num-samples 128 --epochs 2 --warmup 2 --lr 1e-3 --workers 2 --seed 3 "
                   "--logs %s/logs --name %s --log-every-n-steps 100 --device cpu %s",
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
    if (train(out, sizeof out, "straight", "--profile-steps 3") != 0) fail_msg("%s", out);
    assert_int_equal(cli_read_losses(work, "straight", straight, 8), 8);
    // Steps that print nothing read the host once (loss and gradient norm); step 1 also reads the
    // logit scale for its progress line.
    assert_non_null(strstr(out, "1 host read, 1 sync\n"));
    const char *p1 = strstr(out, "profile step 1:"), *p2 = strstr(out, "profile step 2:");
    assert_true(p1 && p2 && strstr(p1, "2 host reads, 2 syncs") < p2 && strstr(p2, "1 host read, 1 sync\n"));
    assert_null(strstr(out, "profile step 4:"));
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

static bool exists(const char *run, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/logs/%s/checkpoints/%s", work, run, file);
    return access(path, F_OK) == 0;
}

static void test_nonfinite_loss_stops_with_usable_checkpoint(void **state) {
    (void)state;
    char out[16384];
    int rc = train(out, sizeof out, "exploding", "--lr 1e30 --warmup 1 --save-steps 1 --nonfinite-limit 2 --lr-scheduler const");
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "non-finite for 2 steps in a row"));
    // Nothing is written during the non-finite streak (steps 2 and 3)...
    assert_true(exists("exploding", "step_1"));
    assert_false(exists("exploding", "step_2"));
    assert_false(exists("exploding", "step_3"));
    // ...and the step-1 checkpoint, written before the losses went bad, loads: weights, optimizer
    // state and loader position (--max-steps 1 stops before training on).
    if (train(out, sizeof out, "exploding", "--resume latest --max-steps 1") != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "checkpoints/step_1 at step 1"));
}

static void test_bad_checkpoints_are_refused(void **state) {
    (void)state;
    char out[16384];
    if (train(out, sizeof out, "ckpt", "--max-steps 2 --save-steps 1 --keep-checkpoints 0") != 0) fail_msg("%s", out);
    const char *dir = "logs/ckpt/checkpoints";
    // Mismatched pair: step 1's state with step 2's weights.
    cli_run(NULL, 0, "cp -r %s/%s/step_1 %s/%s/mixed && cp %s/%s/step_2/model.safetensors %s/%s/mixed/", work, dir, work,
            dir, work, dir, work, dir);
    char flags[1024];
    snprintf(flags, sizeof flags, "--resume %s/%s/mixed/state.safetensors", work, dir);
    assert_int_equal(train(out, sizeof out, "ckpt", flags), 1);
    assert_non_null(strstr(out, "mismatched checkpoint"));
    assert_non_null(strstr(out, "mixed/state.safetensors"));
    // Truncated state file: an error naming it, never a crash...
    cli_run(NULL, 0, "truncate -s 100 %s/%s/step_2/state.safetensors", work, dir);
    snprintf(flags, sizeof flags, "--resume %s/%s/step_2", work, dir);
    assert_int_equal(train(out, sizeof out, "ckpt", flags), 1);
    assert_non_null(strstr(out, "step_2/state.safetensors"));
    // ...and --resume latest passes over it (and the mixed pair), saying why, and takes step 1.
    if (train(out, sizeof out, "ckpt", "--resume latest --max-steps 1") != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "skipping") && strstr(out, "step_2/state.safetensors"));
    assert_non_null(strstr(out, "skipping") && strstr(out, "mixed/state.safetensors: mismatched"));
    assert_non_null(strstr(out, "checkpoints/step_1 at step 1"));
    // Nothing usable at all: an error, not a silent fresh start.
    cli_run(NULL, 0, "truncate -s 100 %s/%s/step_1/model.safetensors", work, dir);
    assert_int_equal(train(out, sizeof out, "ckpt", "--resume latest"), 1);
    assert_non_null(strstr(out, "none of its 3 entries is a usable checkpoint"));
}

// The first loss of a run as a number.
static double first_loss(const char *name) {
    char losses[8][32] = {{0}};
    assert_true(cli_read_losses(work, name, losses, 8) >= 1);
    return strtod(losses[0], NULL);
}

// amp_bf16 (autocast) and pure_bf16 (bf16 weights) run on the CPU: losses near fp32's but not
// equal (bf16 is really used), and a pure_bf16 checkpoint resumes. OpenCLIP's other names are
// refused with the reason.
static void test_precision_modes(void **state) {
    (void)state;
    char out[16384];
    char out_fp32[16384];
    if (train(out_fp32, sizeof out_fp32, "p-fp32", "--max-steps 1 --save-frequency 0") != 0) fail_msg("%s", out_fp32);
    if (train(out, sizeof out, "p-amp", "--max-steps 1 --save-frequency 0 --precision amp_bf16") != 0) fail_msg("%s", out);
    if (train(out, sizeof out, "p-pure", "--max-steps 1 --save-steps 1 --precision pure_bf16") != 0) fail_msg("%s", out);
    double fp32 = first_loss("p-fp32"), amp = first_loss("p-amp"), pure = first_loss("p-pure");
    printf("  first loss: fp32 %.6f, amp_bf16 %.6f, pure_bf16 %.6f\n", fp32, amp, pure);
    assert_true(amp != fp32 && fabs(amp - fp32) < 0.05 * fp32);
    assert_true(pure != fp32 && fabs(pure - fp32) < 0.05 * fp32);
    if (train(out, sizeof out, "p-pure", "--max-steps 2 --precision pure_bf16 --resume latest") != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "resumed from"));
    assert_int_equal(train(out, sizeof out, "p-bad", "--precision bf16"), 2);
    assert_non_null(strstr(out, "use amp_bf16 (autocast) or pure_bf16"));
    assert_int_equal(train(out, sizeof out, "p-bad", "--precision fp16"), 2);
    assert_non_null(strstr(out, "small gradients underflow"));
    // Without --precision the CPU trains in fp32 and the start line says why.
    assert_non_null(strstr(out_fp32, "precision fp32 (default on the CPU)"));
    assert_int_equal(train(out, sizeof out, "p-bad", "--precision fp64"), 2);
    assert_non_null(strstr(out, "must be fp32, amp_bf16, pure_bf16 or amp, got 'fp64'"));
}

// The losses of the first 3 steps of the common run in fp32 (run once, for the tests that compare
// with it).
static void plain_losses(char losses[3][32]) {
    static bool done;
    char out[16384];
    if (!done && train(out, sizeof out, "plain", "--max-steps 3 --save-frequency 0") != 0) fail_msg("%s", out);
    done = true;
    assert_int_equal(cli_read_losses(work, "plain", losses, 3), 3);
}

// Whether metrics.jsonl of run holds a line matching the extended regular expression.
static bool logged(const char *run, const char *regex) {
    return cli_run(NULL, 0, "grep -Eq '%s' %s/logs/%s/metrics.jsonl", regex, work, run) == 0;
}

// --precision amp on the CPU: float32 compute with the loss scaler. An initial scale near float32's
// largest (the test hook) makes steps 1 and 2 overflow: skipped, the scale halved each time, and
// not bad steps (--nonfinite-limit 1 would stop the run). The scale is saved and restored on resume.
static void test_amp_loss_scaler(void **state) {
    (void)state;
    char out[16384];
    setenv("CLIPC_TEST_GRAD_SCALE", "3e38", 1);
    int rc = train(out, sizeof out, "amp", "--precision amp --max-steps 2 --save-steps 2 --nonfinite-limit 1");
    unsetenv("CLIPC_TEST_GRAD_SCALE");
    if (rc != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "precision amp (float16 autocast needs a CUDA GPU"));
    assert_true(logged("amp", "grad_scaler_skip.*\"step\":1,.*\"scale\":3e\\+38,\"next_scale\":1.5e\\+38"));
    assert_true(logged("amp", "grad_scaler_skip.*\"step\":2,.*\"scale\":1.5e\\+38,\"next_scale\":7.5e\\+37"));
    assert_true(exists("amp", "step_2/state.safetensors"));
    if (train(out, sizeof out, "amp", "--precision amp --max-steps 3 --resume latest") != 0) fail_msg("%s", out);
    assert_true(logged("amp", "\"step\":3,.*\"(grad_)?scale\":7.5e\\+37"));
    // At the default scale (2^16, a power of two: scaling and unscaling are exact) the CPU's amp
    // trains as fp32, bit for bit.
    char amp[3][32] = {{0}}, fp32[3][32] = {{0}};
    if (train(out, sizeof out, "amp-2^16", "--precision amp --max-steps 3 --save-frequency 0") != 0) fail_msg("%s", out);
    assert_int_equal(cli_read_losses(work, "amp-2^16", amp, 3), 3);
    plain_losses(fp32);
    for (int i = 0; i < 3; i++) assert_string_equal(amp[i], fp32[i]);
    assert_true(logged("amp-2^16", "\"step\":3,.*\"grad_scale\":65536"));
}

// --image-mean/--image-std reach the normalization on the device (another loss), are saved with
// the checkpoint's weights, and resuming without them is refused naming the file;
// --force-quick-gelu changes the loss too.
static void test_image_mean_std(void **state) {
    (void)state;
    char out[16384], plain[3][32] = {{0}}, custom[1][32] = {{0}};
    if (train(out, sizeof out, "norm", "--max-steps 1 --save-steps 1 --image-mean 0.5 --image-std 0.25 0.5 0.125") != 0)
        fail_msg("%s", out);
    cli_read_losses(work, "norm", custom, 1), plain_losses(plain);
    assert_string_not_equal(custom[0], plain[0]);
    char gelu[1][32] = {{0}};  // --force-quick-gelu reaches the towers too
    if (train(out, sizeof out, "gelu", "--max-steps 1 --save-frequency 0 --force-quick-gelu") != 0) fail_msg("%s", out);
    cli_read_losses(work, "gelu", gelu, 1);
    assert_string_not_equal(gelu[0], plain[0]);
    assert_int_equal(cli_run(NULL, 0, "grep -Eq '\"image-std\":.\\[0.25, 0.5, 0.125\\]' %s/logs/norm/params.json", work), 0);
    assert_int_equal(train(out, sizeof out, "norm", "--max-steps 2 --resume latest"), 1);
    if (!strstr(out, "step_1/model.safetensors: trained with image mean 0.5 0.5 0.5 and std 0.25 0.5 0.125")) fail_msg("%s", out);
    if (train(out, sizeof out, "norm", "--max-steps 2 --resume latest --image-mean 0.5 --image-std 0.25 0.5 0.125") != 0)
        fail_msg("%s", out);
}

// --force-patch-dropout: the patches a sample drops depend on (seed, step, sample) alone, so two
// micro-batches (--accum-freq 2, each recomputed with the graph) give the losses of one batch,
// step 2 included (it follows step 1's gradients); the losses differ from training without it.
static void test_patch_dropout_accum(void **state) {
    (void)state;
    char out[16384], one[2][32] = {{0}}, two[2][32] = {{0}}, none[3][32] = {{0}};
    if (train(out, sizeof out, "pd-1", "--max-steps 2 --save-frequency 0 --force-patch-dropout 0.5") != 0) fail_msg("%s", out);
    if (train(out, sizeof out, "pd-2", "--max-steps 2 --save-frequency 0 --force-patch-dropout 0.5 --batch-size 16 --accum-freq 2") != 0)
        fail_msg("%s", out);
    assert_int_equal(cli_read_losses(work, "pd-1", one, 2), 2);
    assert_int_equal(cli_read_losses(work, "pd-2", two, 2), 2);
    plain_losses(none);
    for (int i = 0; i < 2; i++) {
        double a = strtod(one[i], NULL), b = strtod(two[i], NULL), c = strtod(none[i], NULL);
        printf("  step %d: dropout %s, dropout in 2 micro-batches %s, none %s\n", i + 1, one[i], two[i], none[i]);
        assert_true(fabs(a - b) < 1e-5 * fabs(a) && fabs(a - c) > 1e-4 * fabs(a));
    }
}

// --val-frequency 2 over 3 epochs validates after epochs 2 and 3 (the last); validation runs
// without patch dropout (with --lr 0 the weights never change: the same loss as without it).
// --delete-previous-checkpoint leaves the newest epoch checkpoint (and the step ones).
static void test_val_frequency_and_delete_previous(void **state) {
    (void)state;
    char out[16384], dir[512], flags[1024];
    snprintf(dir, sizeof dir, "%s/val-data", work);
    cli_run(NULL, 0, "mkdir -p %s", dir);
    const int sizes[] = {64};
    char *val = testutil_make_dataset(dir, sizes, 1, 28, 28, true, -1, 0);
    const char *common = "--lr 0 --epochs 3 --train-num-samples 32 --val-frequency 2 --delete-previous-checkpoint --save-steps 1";
    snprintf(flags, sizeof flags, "%s --val-data %s --force-patch-dropout 0.5", common, val);
    if (train(out, sizeof out, "val-pd", flags) != 0) fail_msg("%s", out);
    snprintf(flags, sizeof flags, "%s --val-data %s", common, val);
    if (train(out, sizeof out, "val", flags) != 0) fail_msg("%s", out);
    assert_false(logged("val", "\"type\":\"val\",\"step\":1,"));
    assert_true(logged("val", "\"type\":\"val\",\"step\":2,") && logged("val", "\"type\":\"val\",\"step\":3,"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "grep '\"type\":\"val\"' %s/logs/val/metrics.jsonl | sed 's/.*\"loss\"://' > %s/v1 && "
             "grep '\"type\":\"val\"' %s/logs/val-pd/metrics.jsonl | sed 's/.*\"loss\"://' > %s/v2 && cmp %s/v1 %s/v2",
             work, work, work, work, work, work);
    assert_int_equal(cli_run(out, sizeof out, "%s", cmd), 0);
    char a[1][32] = {{0}}, b[1][32] = {{0}};  // while training dropped patches
    cli_read_losses(work, "val", a, 1), cli_read_losses(work, "val-pd", b, 1);
    assert_string_not_equal(a[0], b[0]);
    assert_true(exists("val", "epoch_3/model.safetensors"));
    assert_false(exists("val", "epoch_2"));
    assert_false(exists("val", "epoch_1"));
    assert_true(exists("val", "step_1/model.safetensors") && exists("val", "step_2/model.safetensors"));
    free(val);
}

// --keep-checkpoints keeps the newest numbered checkpoints; --save-most-recent adds epoch_latest;
// a run stopped by --max-steps mid-epoch still leaves a checkpoint of its last step.
static void test_checkpoint_retention(void **state) {
    (void)state;
    char out[16384];
    if (train(out, sizeof out, "keep", "--max-steps 3 --save-steps 1 --keep-checkpoints 2") != 0) fail_msg("%s", out);
    assert_false(exists("keep", "step_1"));
    assert_true(exists("keep", "step_2/model.safetensors"));
    assert_true(exists("keep", "step_3/state.safetensors"));
    // A damaged newer checkpoint never counts as kept: pruning to 1 keeps the newest usable one.
    cli_run(NULL, 0, "mkdir %s/logs/keep/checkpoints/step_99 && echo x > %s/logs/keep/checkpoints/step_99/model.safetensors",
            work, work);
    if (train(out, sizeof out, "keep", "--resume latest --max-steps 4 --save-steps 1 --keep-checkpoints 1 --save-frequency 0") != 0)
        fail_msg("%s", out);
    assert_non_null(strstr(out, "checkpoints/step_3 at step 3"));
    assert_true(exists("keep", "step_4/model.safetensors"));
    assert_false(exists("keep", "step_3"));
    assert_false(exists("keep", "step_2"));
    if (train(out, sizeof out, "latest", "--max-steps 6 --save-most-recent --save-frequency 1") != 0) fail_msg("%s", out);
    assert_true(exists("latest", "epoch_1/state.safetensors"));
    assert_true(exists("latest", "epoch_latest/state.safetensors"));
    assert_true(exists("latest", "step_6/state.safetensors"));
}

// A corrupt sample is replaced and named (on stderr and in metrics.jsonl), and the run goes on;
// a shard that cannot be opened stops the run with its name.
static void test_bad_samples_and_shards(void **state) {
    (void)state;
    char out[16384], dir[512], flags[1024];
    snprintf(dir, sizeof dir, "%s/bad-data", work);
    cli_run(NULL, 0, "mkdir -p %s", dir);
    const int sizes[] = {40, 40};
    char *manifest = testutil_make_dataset(dir, sizes, 2, 28, 28, true, 5, 0);
    snprintf(flags, sizeof flags, "--train-data %s --batch-size 8 --train-num-samples 0 --epochs 1", manifest);
    if (train(out, sizeof out, "bad-sample", flags) != 0) fail_msg("%s", out);
    if (!strstr(out, "replaced a corrupt sample: ") || !strstr(out, "shard-00000.h5: sample 5 ('s5'): corrupt WebP"))
        fail_msg("%s", out);
    assert_non_null(strstr(out, "done: 10 steps"));  // replaced in its row: 80 samples make 10 batches of 8
    assert_non_null(strstr(out, "1 corrupt samples replaced"));
    assert_int_equal(cli_run(NULL, 0, "grep -q '\"type\":\"corrupt_sample\".*(.s5.)' %s/logs/bad-sample/metrics.jsonl", work), 0);
    cli_run(NULL, 0, "echo 'not a shard' > %s/shard-00001.h5", dir);
    assert_int_equal(train(out, sizeof out, "bad-shard", flags), 1);
    if (!strstr(out, "bad-data/shard-00001.h5")) fail_msg("%s", out);
    free(manifest);
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

// --grad-checkpointing changes nothing but memory: the same losses and, bit for bit on the CPU,
// the same weights after 3 steps, with one batch and with --accum-freq 2 (test_model shows that
// the blocks are recomputed); and every train line reports the step's peak memory.
static void test_grad_checkpointing(void **state) {
    (void)state;
    const char *runs[4][2] = {{"gc-off", ""}, {"gc-on", "--grad-checkpointing"},
                              {"gc-accum-off", "--batch-size 16 --accum-freq 2"},
                              {"gc-accum-on", "--batch-size 16 --accum-freq 2 --grad-checkpointing"}};
    char out[16384], extra[256], losses[4][8][32] = {{{0}}};
    for (int r = 0; r < 4; r++) {
        snprintf(extra, sizeof extra, "--max-steps 3 --save-frequency 1 %s", runs[r][1]);
        if (train(out, sizeof out, runs[r][0], extra) != 0) fail_msg("%s", out);
        assert_int_equal(cli_read_losses(work, runs[r][0], losses[r], 8), 3);
    }
    for (int pair = 0; pair < 4; pair += 2) {
        for (int s = 0; s < 3; s++) assert_string_equal(losses[pair][s], losses[pair + 1][s]);
        assert_int_equal(cli_run(out, sizeof out, "cmp %s/logs/%s/checkpoints/step_3/model.safetensors "
                                 "%s/logs/%s/checkpoints/step_3/model.safetensors", work, runs[pair][0], work,
                                 runs[pair + 1][0]), 0);
    }
    // Runs that differ do differ: the comparison can fail.
    assert_int_not_equal(cli_run(out, sizeof out, "cmp -s %s/logs/gc-off/checkpoints/step_3/model.safetensors "
                                 "%s/logs/gc-accum-off/checkpoints/step_3/model.safetensors", work, work), 0);
    assert_int_equal(cli_run(out, sizeof out, "grep '\"type\":\"train\"' %s/logs/gc-on/metrics.jsonl | "
                             "grep -c '\"peak_mem_mb\":[1-9]'", work), 0);
    assert_non_null(strstr(out, "3"));
}

// OpenCLIP's ViT-B-16 (configs/models) trains a step of 2 samples with --grad-checkpointing (the
// larger configs: scripts/large-models.sh).
static void test_vit_b16_step(void **state) {
    (void)state;
    char out[16384], losses[2][32] = {{0}};
    if (cli_run(out, sizeof out, "%s train --model ViT-B-16 --model-configs %s --vocab %s --train-data %s/train "
                "--batch-size 2 --train-num-samples 2 --epochs 1 --save-frequency 0 --workers 1 --seed 3 --logs %s/logs "
                "--name vit-b16 --device cpu --grad-checkpointing", clipc, configs, vocab, work, work) != 0)
        fail_msg("%s", out);
    assert_int_equal(cli_read_losses(work, "vit-b16", losses, 2), 1);
    double loss = strtod(losses[0], NULL);
    printf("  ViT-B-16, 2 samples: loss %s\n", losses[0]);
    assert_true(loss > 0.1 && loss < 2);  // about ln 2 for two pairs
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
        cmocka_unit_test(test_bad_samples_and_shards),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_precision_modes),
        cmocka_unit_test(test_grad_checkpointing),
        cmocka_unit_test(test_vit_b16_step),
        cmocka_unit_test(test_amp_loss_scaler),
        cmocka_unit_test(test_image_mean_std),
        cmocka_unit_test(test_patch_dropout_accum),
        cmocka_unit_test(test_val_frequency_and_delete_previous),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
