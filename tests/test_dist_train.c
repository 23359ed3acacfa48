// Data-parallel training end to end, on CPU ranks over Gloo started by `clipc launch`:
// - the exact global batch: (2 ranks, batch B), (1 rank, batch 2B) and (1 rank, batch B,
//   --accum-freq 2) log the same global losses (1e-5 relative) and end with the same weights
//   (||difference|| / ||weights|| below 1e-5), for the CLIP and the SigLIP loss;
// - the gradient sums overlapped with the backward (the default) end bitwise where the sums after
//   it (--no-overlap-reduce) end, and the train lines say how much of their time was hidden;
// - distillation from an online teacher: 2 ranks equal 1 rank of the global batch;
// - a run checkpointed on 2 ranks and resumed on 1 rank (same global batch) ends where the
//   uninterrupted 2-rank run ends, and resumed on 2 ranks likewise (the checkpoint's path is a
//   control message from rank 0);
// - ZeRO (--zero 1, --zero 2, with --grad-clip-norm and --accum-freq 2): 2 sharded ranks log the
//   same losses and gradient norms and end with the same weights as 1 rank of the global batch,
//   for CLIP and SigLIP, with half the AdamW state bytes per rank; a sharded checkpoint resumes on
//   1 rank unsharded and on 2 ranks sharded, and an unsharded one sharded, each ending where the
//   uninterrupted run ends;
// - a collective failing after it returned: no update, no later checkpoint, a non-zero exit;
// - rank 0 writing a checkpoint for longer than --dist-timeout while the others wait;
// - all in strict device mode with the consistency check on (docs/distributed.md);
// - the zero-shot accuracy that 2 ranks compute during training, each on its share of the images,
//   equals `clipc eval` of the same weights in one process, exactly;
// - over data with corrupt samples (every 16th), 2 ranks still equal 1 rank of the global batch
//   (the corrupt samples are replaced by a rule of the global stream, loader/loader.h);
// - a rank whose data ends early or fails stops every rank with a message naming it;
// - a rank killed mid-run: the other exits non-zero within --dist-timeout naming its rank, the
//   collective and the step, and `clipc launch` returns non-zero.
// Usage: test_dist_train CLIPC_BINARY FASHION_MNIST_DIR VOCAB
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli_run.h"
#include "common/error.h"
#include "data_testutil.h"
#include "model/safetensors.h"

static const char *clipc, *fmnist, *vocab;
static char work[256];
static int port;

#define STEPS 4

// 4 steps of a global batch of 32 (128 samples), one epoch, a checkpoint at its end.
static int train(char *out, size_t cap, int ranks, const char *name, const char *extra) {
    char launch[256] = "";
    if (ranks > 1) snprintf(launch, sizeof launch, "%s launch --nproc-per-node %d --master-port %d --", clipc, ranks, port++);
    return cli_run(out, cap,
                   "cd %s && %s %s train --model clip-tiny --vocab %s --train-data train --train-num-samples 128 "
                   "--epochs 1 --warmup 2 --lr 1e-3 --workers 1 --seed 3 --threads 1 --logs logs --name %s "
                   "--log-every-n-steps 1 --dist-timeout 20 %s",
                   work, launch, clipc, vocab, name, extra);
}

static void must_train(int ranks, const char *name, const char *extra) {
    char out[32768];
    if (train(out, sizeof out, ranks, name, extra) != 0) {
        fputs(out, stdout);  // whole: fail_msg cuts long messages
        fail_msg("%s failed (its output above)", name);
    }
}

// The value of `key` ("\"loss\":") of each train line of a run's metrics.jsonl, by step.
static void read_train_values(const char *name, const char *key, double *values) {
    char path[512], line[2048];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, name);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: no metrics.jsonl", name);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *step = strstr(line, "\"step\":"), *value = strstr(line, key);
        if (!strstr(line, "\"type\":\"train\"") || !step || !value) continue;
        int s = atoi(step + 7);
        assert_true(s >= 1 && s <= STEPS);
        values[s - 1] = atof(value + strlen(key));
        n++;
    }
    fclose(f);
    assert_int_equal(n, STEPS);  // one line per step: written by rank 0 alone
}

static void read_losses(const char *name, double *losses) { read_train_values(name, "\"loss\":", losses); }

// The weights file of checkpoint `stem` of run `name` (one of two alternating buffers, so that two
// paths can be used in one call).
static const char *checkpoint(const char *name, const char *stem) {
    static char paths[2][512];
    static int next;
    char *path = paths[next++ % 2];
    snprintf(path, sizeof paths[0], "%s/logs/%s/checkpoints/%s/model.safetensors", work, name, stem);
    return path;
}

// ||a - b|| / ||b|| over all the parameters of two weight files. (Per element, float noise in a
// gradient whose true value is 0, like the K third of attn.in_proj_bias, becomes an AdamW update of
// about lr: ~1e-6 here, large against a bias of 4e-3 but not against the weights; a wrong step,
// e.g. gradients averaged instead of summed, moves every weight by ~lr, ~0.1 relative.)
static double weights_rel_diff(const char *a_path, const char *b_path) {
    st_file *a = st_open(a_path), *b = st_open(b_path);
    if (!a || !b) fail_msg("%s", err_msg());
    double diff2 = 0, norm2 = 0;
    for (int i = 0; i < st_count(b); i++) {
        const st_tensor *tb = st_get(b, i), *ta = st_find(a, tb->name);
        assert_non_null(ta);
        assert_int_equal(ta->numel, tb->numel);
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

static void expect_same_run(const char *name, const char *reference) {
    double got[STEPS], want[STEPS];
    read_losses(name, got);
    read_losses(reference, want);
    for (int s = 0; s < STEPS; s++) {
        printf("  step %d: %s %.7f, %s %.7f\n", s + 1, name, got[s], reference, want[s]);
        if (!(fabs(got[s] - want[s]) <= 1e-5 * fabs(want[s])))
            fail_msg("%s step %d: loss %.7f, %s %.7f", name, s + 1, got[s], reference, want[s]);
    }
    double d = weights_rel_diff(checkpoint(name, "epoch_1"), checkpoint(reference, "epoch_1"));
    printf("  %s against %s: weights within %.3g (relative)\n", name, reference, d);
    if (!(d <= 1e-5)) fail_msg("%s: weights differ from %s's by %.3g relative", name, reference, d);
}

// The runs' gradient norms (logged before clipping) agree step by step (1e-5 relative).
static void expect_same_grad_norms(const char *name, const char *reference) {
    double got[STEPS], want[STEPS];
    read_train_values(name, "\"grad_norm\":", got);
    read_train_values(reference, "\"grad_norm\":", want);
    for (int s = 0; s < STEPS; s++)
        if (!(fabs(got[s] - want[s]) <= 1e-5 * fabs(want[s])))
            fail_msg("%s step %d: gradient norm %.7f, %s %.7f", name, s + 1, got[s], reference, want[s]);
}

// A run that must succeed; returns the AdamW state bytes per rank of its start line, which must
// end with `tail`.
static long long train_state_bytes(int ranks, const char *name, const char *extra, const char *tail) {
    char out[32768];
    if (train(out, sizeof out, ranks, name, extra) != 0) {
        fputs(out, stdout);
        fail_msg("%s failed (its output above)", name);
    }
    const char *p = strstr(out, ", AdamW state ");
    if (!p) fail_msg("%s: no AdamW state in the start line: %s", name, out);
    size_t end = strcspn(p, "\n"), n = strlen(tail);
    if (end < n || strncmp(p + end - n, tail, n) != 0) fail_msg("%s: the start line does not end with '%s': %s", name, tail, out);
    return atoll(p + strlen(", AdamW state "));
}

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_dist_train_XXXXXX");
    assert_non_null(mkdtemp(work));
    port = 20000 + (int)(getpid() % 20000);
    char out[8192];
    int rc = cli_run(out, sizeof out, "%s shards --fashion-mnist %s --split test --shard-size 2500 --out %s/train", clipc,
                     fmnist, work);
    if (rc != 0) fail_msg("shards: %s", out);
    return cli_run(NULL, 0, "printf 'a photo of a {}.\\nan image of a {}.\\n' > %s/templates.txt", work);
}

static int teardown(void **state) {
    (void)state;
    return cli_run(NULL, 0, "rm -rf %s", work);
}

static void check_global_batch(const char *loss_flag, const char *tag) {
    char one[64], two[64], accum[64], extra[128];
    snprintf(one, sizeof one, "%s-1x32", tag), snprintf(two, sizeof two, "%s-2x16", tag);
    snprintf(accum, sizeof accum, "%s-1x16x2", tag);
    snprintf(extra, sizeof extra, "--batch-size 32 %s", loss_flag);
    must_train(1, one, extra);
    snprintf(extra, sizeof extra, "--batch-size 16 %s", loss_flag);
    must_train(2, two, extra);
    snprintf(extra, sizeof extra, "--batch-size 16 --accum-freq 2 %s", loss_flag);
    must_train(1, accum, extra);
    expect_same_run(two, one);
    expect_same_run(accum, one);
}

static void test_global_batch_clip(void **state) {
    (void)state;
    check_global_batch("", "clip");
}

static void test_global_batch_siglip(void **state) {
    (void)state;
    check_global_batch("--siglip", "siglip");
    // Runs that differ do differ: the comparison can fail.
    double d = weights_rel_diff(checkpoint("siglip-2x16", "epoch_1"), checkpoint("clip-2x16", "epoch_1"));
    assert_true(d > 1e-3);
}

// The comm_hidden_frac of each train line of run `name` into frac (STEPS), checking comm_s and
// comm_exposed_s beside it.
static void read_hidden(const char *name, double *frac) {
    char path[512], line[2048];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, name);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s: no metrics.jsonl", name);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < STEPS) {
        const char *c = strstr(line, "\"comm_s\":"), *e = strstr(line, "\"comm_exposed_s\":");
        const char *h = strstr(line, "\"comm_hidden_frac\":");
        if (!strstr(line, "\"type\":\"train\"")) continue;
        if (!c || !e || !h) fail_msg("%s: a train line without the sums' times: %s", name, line);
        double comm = atof(c + 9), exposed = atof(e + 17);
        frac[n++] = atof(h + 19);
        assert_true(comm > 0 && exposed >= 0 && exposed <= comm);
    }
    fclose(f);
    assert_int_equal(n, STEPS);
}

// Overlapped (clip-2x16 above, the default) against after the backward: the same sums, so the
// same weights, bitwise; some of the overlapped sums' time hidden, none of the others'.
static void test_overlap_same_weights(void **state) {
    (void)state;
    must_train(2, "clip-2x16-after", "--batch-size 16 --no-overlap-reduce");
    double d = weights_rel_diff(checkpoint("clip-2x16", "epoch_1"), checkpoint("clip-2x16-after", "epoch_1"));
    printf("  overlapped against after the backward: weights within %.3g (relative)\n", d);
    if (d != 0) fail_msg("the overlapped sums end %.3g away from the sums after the backward", d);
    double on[STEPS], off[STEPS];
    read_hidden("clip-2x16", on);
    read_hidden("clip-2x16-after", off);
    for (int s = 0; s < STEPS; s++) {
        printf("  step %d: hidden %.3f overlapped, %.3f after the backward\n", s + 1, on[s], off[s]);
        assert_true(on[s] > 0 && on[s] <= 1 && off[s] == 0);
    }
}

// Distillation (an online teacher: the CLIP run above) over the global batch: the teacher's
// features are gathered with the student's, so 2 ranks equal one rank of twice the batch.
static void test_global_batch_distill(void **state) {
    (void)state;
    char extra[1024];
    const char *teacher = checkpoint("clip-1x32", "epoch_1");
    snprintf(extra, sizeof extra, "--batch-size 32 --distill-model clip-tiny --distill-pretrained %s", teacher);
    must_train(1, "distill-1x32", extra);
    snprintf(extra, sizeof extra, "--batch-size 16 --distill-model clip-tiny --distill-pretrained %s", teacher);
    must_train(2, "distill-2x16", extra);
    expect_same_run("distill-2x16", "distill-1x32");
}

// 2 steps on 2 ranks, a checkpoint, then the other 2 on one rank of the same global batch.
static void test_resume_on_fewer_ranks(void **state) {
    (void)state;
    must_train(2, "straight", "--batch-size 16");
    must_train(2, "moved", "--batch-size 16 --max-steps 2 --save-steps 2");
    must_train(1, "moved", "--batch-size 32 --resume latest");
    double d = weights_rel_diff(checkpoint("moved", "epoch_1"), checkpoint("straight", "epoch_1"));
    printf("  resumed on 1 rank against 2 ranks throughout: weights within %.3g (relative)\n", d);
    if (!(d <= 1e-5)) fail_msg("the run moved from 2 ranks to 1 ends %.3g away from the 2-rank run", d);
}

// Failure 1: the run name and --resume's checkpoint travel from rank 0 as control messages on the
// group's device (a host tensor there is refused in strict device mode, as NCCL refuses it). A
// run checkpointed on 2 ranks and resumed on 2 ranks ends where the uninterrupted run ends.
static void test_resume_on_two_ranks(void **state) {
    (void)state;
    must_train(2, "again", "--batch-size 16 --max-steps 2 --save-steps 2");
    must_train(2, "again", "--batch-size 16 --resume latest");
    double d = weights_rel_diff(checkpoint("again", "epoch_1"), checkpoint("straight", "epoch_1"));
    printf("  resumed on 2 ranks against 2 ranks throughout: weights within %.3g (relative)\n", d);
    if (!(d <= 1e-6)) fail_msg("the run resumed on 2 ranks ends %.3g away from the uninterrupted one", d);
}

// --zero 1 and 2 on 2 ranks (global batch 32: 8 samples x 2 micro-batches x 2 ranks, clipped:
// the norm is about 9 and 19 at steps 1-2) against 1 rank of the global batch (with --zero 2 too:
// one rank shards nothing); each sharded rank holds ceil(n/2) of the n elements' moments.
static void check_zero(const char *loss_flag, const char *tag, bool both_stages) {
    char one[64], z1[64], z2[64], extra[160];
    snprintf(one, sizeof one, "%s-1x32-clip", tag), snprintf(z1, sizeof z1, "%s-zero1", tag);
    snprintf(z2, sizeof z2, "%s-zero2", tag);
    snprintf(extra, sizeof extra, "--batch-size 32 --grad-clip-norm 5 --zero 2 %s", loss_flag);
    long long whole = train_state_bytes(1, one, extra, "bytes per rank (--zero 2: one rank, nothing to shard)"), n = whole / 8;
    snprintf(extra, sizeof extra, "--batch-size 8 --accum-freq 2 --grad-clip-norm 5 --zero 2 %s", loss_flag);
    long long half = train_state_bytes(2, z2, extra, "bytes per rank (--zero 2)");
    printf("  AdamW state per rank: %lld bytes on 1 rank, %lld with --zero 2 on 2 ranks\n", whole, half);
    assert_true(whole > 0 && whole % 8 == 0);
    assert_int_equal(half, (n + 1) / 2 * 8);
    expect_same_run(z2, one);
    expect_same_grad_norms(z2, one);
    if (!both_stages) return;
    snprintf(extra, sizeof extra, "--batch-size 8 --accum-freq 2 --grad-clip-norm 5 --zero 1 %s", loss_flag);
    assert_int_equal(train_state_bytes(2, z1, extra, "bytes per rank (--zero 1)"), (n + 1) / 2 * 8);
    expect_same_run(z1, one);
    expect_same_grad_norms(z1, one);
}

static void test_zero_clip(void **state) {
    (void)state;
    check_zero("", "clip", true);
}

static void test_zero_siglip(void **state) {
    (void)state;
    check_zero("--siglip", "siglip", false);
}

// A --zero 2 checkpoint of 2 ranks (the whole state, gathered on rank 0) resumed on 1 rank
// unsharded and on 2 ranks with --zero 1; the unsharded 2-rank checkpoint of "moved" resumed on 2
// ranks with --zero 2: each ends where the uninterrupted 2-rank run ("straight") ends.
static void test_zero_resume(void **state) {
    (void)state;
    char extra[1024];
    must_train(2, "zmoved", "--batch-size 16 --zero 2 --max-steps 2 --save-steps 2");
    snprintf(extra, sizeof extra, "--batch-size 16 --zero 1 --resume %s/logs/zmoved/checkpoints/step_2", work);
    must_train(2, "zresharded", extra);
    must_train(1, "zmoved", "--batch-size 32 --resume latest");
    snprintf(extra, sizeof extra, "--batch-size 16 --zero 2 --resume %s/logs/moved/checkpoints/step_2", work);
    must_train(2, "zsharded", extra);
    const char *runs[] = {"zmoved", "zresharded", "zsharded"};
    for (int i = 0; i < 3; i++) {
        double d = weights_rel_diff(checkpoint(runs[i], "epoch_1"), checkpoint("straight", "epoch_1"));
        printf("  %s against 2 ranks throughout: weights within %.3g (relative)\n", runs[i], d);
        if (!(d <= 1e-5)) fail_msg("%s ends %.3g away from the uninterrupted 2-rank run", runs[i], d);
    }
}

static bool exists(const char *name, const char *stem) {
    char path[512];
    snprintf(path, sizeof path, "%s/logs/%s/checkpoints/%s", work, name, stem);
    return access(path, F_OK) == 0;
}

// Failure 5: the gradient all_reduce of the third step fails after it returned (as NCCL's watchdog
// aborts a communicator): no update, no checkpoint after the last good step, a non-zero exit with
// one line naming the rank and the collective. The last checkpoint is the uninterrupted run's.
static void test_failed_collective_keeps_checkpoints(void **state) {
    (void)state;
    char out[32768];
    setenv("CLIPC_DIST_FAIL_AT", "all_reduce at step 2", 1);
    int rc = train(out, sizeof out, 2, "failing", "--batch-size 16 --save-steps 1");
    unsetenv("CLIPC_DIST_FAIL_AT");
    const char *line = strstr(out, "clipc train: rank ");
    printf("  exit %d: %.*s\n", rc, line ? (int)strcspn(line, "\n") : 0, line ? line : "");
    if (rc == 0 || !line || !strstr(line, ": all_reduce at step 2 failed after it returned"))
        fail_msg("the failed collective did not stop the run with its line: %s", out);
    assert_true(exists("failing", "step_1") && exists("failing", "step_2"));
    assert_false(exists("failing", "step_3") || exists("failing", "epoch_1"));
    double d = weights_rel_diff(checkpoint("failing", "step_2"), checkpoint("moved", "step_2"));
    assert_true(d == 0);
}

// Rank 0 writing a checkpoint for longer than --dist-timeout: the others wait for it (through the
// store) instead of timing out in the next step's collective. Also the start line.
static void test_slow_checkpoint(void **state) {
    (void)state;
    char out[32768];
    setenv("CLIPC_TEST_SAVE_DELAY_S", "8", 1);
    int rc = train(out, sizeof out, 2, "slow", "--batch-size 16 --max-steps 3 --save-steps 2 --dist-timeout 5");
    unsetenv("CLIPC_TEST_SAVE_DELAY_S");
    if (rc != 0) {
        fputs(out, stdout);
        fail_msg("a checkpoint slower than --dist-timeout stopped the run (its output above)");
    }
    assert_true(exists("slow", "step_2") && exists("slow", "step_3"));
    const char *start = strstr(out, "clipc train: clip-tiny on 2 ranks (gloo), device cpu:1 on rank 0, batch 16 per rank, "
                                     "32 global, precision fp32");
    if (!start || !strstr(out, "WARNING: no GPU found and no --device given: 2 ranks train on the CPU"))
        fail_msg("no start line or no warning: %s", out);
}

static double zeroshot_top1(const char *text, const char *key) {
    const char *p = strstr(text, key);
    if (!p) fail_msg("no '%s' in: %s", key, text);
    return atof(p + strlen(key));
}

// The 2 ranks' zero-shot figure (each on half the images, counts summed) is clipc eval's.
static void test_sharded_zeroshot(void **state) {
    (void)state;
    must_train(2, "zs", "--batch-size 16 --zeroshot-data train --zeroshot-templates templates.txt");
    char out[32768], path[512];
    snprintf(path, sizeof path, "%s/logs/zs/metrics.jsonl", work);
    if (cli_run(out, sizeof out, "grep '\"type\":\"zeroshot\"' %s", path) != 0) fail_msg("no zeroshot line: %s", out);
    double sharded = zeroshot_top1(out, "\"top1\":");
    if (cli_run(out, sizeof out, "cd %s && %s eval --pretrained %s --vocab %s --zeroshot train --templates templates.txt "
                "--threads 1 --output zs.json && cat zs.json", work, clipc, checkpoint("zs", "epoch_1"), vocab) != 0)
        fail_msg("eval: %s", out);
    double single = zeroshot_top1(out, "\"top1\":");
    printf("  zero-shot top-1: 2 ranks %.6f, one process %.6f\n", sharded, single);
    assert_true(fabs(sharded - single) < 1e-9);
}

// The number of lines of a run's metrics.jsonl holding `what`.
static int count_lines(const char *name, const char *what) {
    char out[64];
    cli_run(out, sizeof out, "grep -c '%s' %s/logs/%s/metrics.jsonl", what, work, name);
    return atoi(out);
}

// A copy of the training data with every 16th sample's image garbage: 2 ranks x 16 against
// 1 rank x 32 (a position carried across world sizes with corrupt samples: tests/test_loader.c).
static void test_corrupt_samples_global_batch(void **state) {
    (void)state;
    char path[512];
    if (cli_run(NULL, 0, "cp -r %s/train %s/corrupt", work, work) != 0) fail_msg("copy failed");
    snprintf(path, sizeof path, "%s/corrupt/manifest.json", work);
    if (testutil_damage_every(path, 16) != 0) fail_msg("%s", err_msg());
    must_train(1, "corrupt-1x32", "--batch-size 32 --train-data corrupt");
    int met = count_lines("corrupt-1x32", "\"type\":\"corrupt_sample\"");
    printf("  %d corrupt samples met in %d steps\n", met, STEPS);
    assert_true(met >= 2);
    must_train(2, "corrupt-2x16", "--batch-size 16 --train-data corrupt");
    expect_same_run("corrupt-2x16", "corrupt-1x32");
}

// Two ranks started as torchrun would, rank 1 on other data; prints both ranks' output into out.
static int run_with_rank1_data(char *out, size_t cap, const char *name, const char *rank1_data) {
    const char *cmd = "%s train --model clip-tiny --vocab %s --train-num-samples 128 --batch-size 16 --epochs 1 "
                      "--workers 1 --threads 1 --logs logs --name %s --dist-timeout 20 --save-frequency 0 --train-data";
    char line[1024];
    snprintf(line, sizeof line, cmd, clipc, vocab, name);
    return cli_run(out, cap, "cd %s && export MASTER_ADDR=127.0.0.1 MASTER_PORT=%d WORLD_SIZE=2; "
                   "RANK=1 LOCAL_RANK=1 %s %s > %s-rank1.log 2>&1 & RANK=0 LOCAL_RANK=0 %s train 2>&1; r0=$?; wait $!; r1=$?; "
                   "cat %s-rank1.log; echo \"exit $r0 $r1\"",
                   work, port++, line, rank1_data, name, line, name);
}

// A rank whose epoch ends early (its data is smaller) or whose loader fails (a truncated shard)
// stops both ranks before the next step, each naming that rank, instead of leaving the other in
// the step's collectives.
static void test_ranks_disagree(void **state) {
    (void)state;
    char out[65536], dir[512];
    snprintf(dir, sizeof dir, "%s/small", work);
    assert_int_equal(mkdir(dir, 0777), 0);
    const int sizes[] = {64};
    free(testutil_make_dataset(dir, sizes, 1, 28, 28, true, -1, 0));  // 2 global batches of 32, not 4
    run_with_rank1_data(out, sizeof out, "short", "small");
    printf("%s", out);
    if (!strstr(out, "rank 1's loader ended epoch 0 before step 3 while rank 0 had a batch") || !strstr(out, "exit 1 1"))
        fail_msg("%s", out);
    if (cli_run(NULL, 0, "cd %s && cp -r train broken && for f in broken/*.h5; do truncate -s 3000 $f; done", work) != 0)
        fail_msg("could not make the broken copy");
    run_with_rank1_data(out, sizeof out, "failed", "broken");
    printf("%s", out);
    if (!strstr(out, "rank 1's loader failed before step 1") || !strstr(out, "broken/shard-0000") || !strstr(out, "exit 1 1"))
        fail_msg("%s", out);
}

// The ranks of a long run, started as torchrun would; rank 1 is killed by SIGKILL once rank 0
// has logged two steps.
#define KILLED_RUN                                                                                             \
    "if [ \"$RANK\" = 1 ]; then (until [ \"$(grep -c train logs/%s/metrics.jsonl 2>/dev/null)\" -ge 2 ]; do " \
    "sleep 0.2; done; kill -9 $$) & fi; exec %s train --model clip-tiny --vocab %s --train-data train "       \
    "--batch-size 16 --epochs 50 --warmup 10 --train-num-samples 2048 --workers 1 --threads 1 --logs logs "  \
    "--name %s --dist-timeout 10 --save-frequency 0"

// Without a launcher to stop it, rank 0 finds out in its next collective: it exits non-zero
// within the timeout, naming its rank, the collective and the step.
static void test_killed_rank(void **state) {
    (void)state;
    char out[32768];
    time_t start = time(NULL);
    int p = port++;
    int rc = cli_run(out, sizeof out,
                     "cd %s && export MASTER_ADDR=127.0.0.1 MASTER_PORT=%d WORLD_SIZE=2; "
                     "(RANK=1 LOCAL_RANK=1 sh -c '" KILLED_RUN "' > rank1.log 2>&1 &) ; "
                     "RANK=0 LOCAL_RANK=0 sh -c '" KILLED_RUN "' 2>&1 | grep -v '^  '",
                     work, p, "killed", clipc, vocab, "killed", "killed", clipc, vocab, "killed");
    double took = difftime(time(NULL), start);
    printf("  rank 0 exited after %.0f s: %s", took, strstr(out, "clipc train: rank") ? strstr(out, "clipc train: rank") : out);
    if (!strstr(out, "clipc train: rank 0: ") || !strstr(out, " at step ") || !strstr(out, "rank 1"))
        fail_msg("rank 0 did not name its rank, the collective, the step and the lost peer: %s", out);
    (void)rc;  // the pipe's status is grep's: the message is the check
    assert_true(took < 60);
}

// Under clipc launch the killed rank's status comes back and the other rank is stopped.
static void test_launch_reports_killed_rank(void **state) {
    (void)state;
    char out[32768];
    int rc = cli_run(out, sizeof out, "cd %s && %s launch --nproc-per-node 2 --master-port %d -- sh -c '" KILLED_RUN "'",
                     work, clipc, port++, "launched", clipc, vocab, "launched");
    printf("  clipc launch exited %d\n", rc);
    assert_int_equal(rc, 137);
    assert_non_null(strstr(out, "rank 1 was killed by signal 9"));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CLIPC_BINARY FASHION_MNIST_DIR VOCAB\n", argv[0]);
        return 2;
    }
    clipc = argv[1], fmnist = argv[2], vocab = argv[3];
    // Every rank on a device of its own (shim/tensor.h's strict device mode: what NCCL refuses
    // fails here too) and the consistency check before every collective (--dist-debug).
    setenv("CLIPC_DIST_STRICT", "1", 1);
    setenv("CLIPC_DIST_DEBUG", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_global_batch_clip),
        cmocka_unit_test(test_global_batch_siglip),
        cmocka_unit_test(test_overlap_same_weights),
        cmocka_unit_test(test_global_batch_distill),
        cmocka_unit_test(test_resume_on_fewer_ranks),
        cmocka_unit_test(test_resume_on_two_ranks),
        cmocka_unit_test(test_zero_clip),
        cmocka_unit_test(test_zero_siglip),
        cmocka_unit_test(test_zero_resume),
        cmocka_unit_test(test_failed_collective_keeps_checkpoints),
        cmocka_unit_test(test_slow_checkpoint),
        cmocka_unit_test(test_sharded_zeroshot),
        cmocka_unit_test(test_corrupt_samples_global_batch),
        cmocka_unit_test(test_ranks_disagree),
        cmocka_unit_test(test_killed_rank),
        cmocka_unit_test(test_launch_reports_killed_rank),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
