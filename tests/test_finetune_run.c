// Tests of finetune_run, `clipc finetune` as one library call (finetune/finetune.h), on a tiny
// random model and a 3-class set of 12 pictures: the events come in the run's order with the
// numbers the result and the JSON report hold, WiSE-FT's alpha 0 is the zero-shot accuracy, the
// files are written; the option checks, a missing vocabulary, a missing checkpoint and too many
// shots are errors naming the cause, and nothing is left allocated.
// Usage: test_finetune_run VOCAB
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "eval_test.h"
#include "finetune/finetune.h"
#include "shim/tensor.h"

static const char *vocab;
static char *work, *data, *weights;

#define MAX_EVENTS 64

typedef struct {
    int n;
    finetune_event e[MAX_EVENTS];
} event_log;

static void record(void *ctx, const finetune_event *e) {
    event_log *log = ctx;
    if (log->n == MAX_EVENTS) fail_msg("more than %d events", MAX_EVENTS);
    log->e[log->n] = *e;
    log->e[log->n].path = NULL, log->e[log->n].probe = NULL;  // borrowed for the call only
    log->n++;
}

static int setup(void **state) {
    (void)state;
    work = testutil_tmpdir();
    static const int sizes[1] = {12};
    data = testutil_make_dataset(work, sizes, 1, 40, 40, true, -1, 0);
    eval_test_save_model(work, "tiny.safetensors", 7);
    weights = testutil_path(work, "tiny.safetensors");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    testutil_rmtree(work);
    free(work), free(data), free(weights);
    return 0;
}

// Both methods on 2 shots per class, 1 epoch of batch 4, on the CPU.
static finetune_options small_run(const char *out_dir, event_log *log) {
    finetune_options o = finetune_options_default();
    o.session = (session_options){.pretrained = weights, .vocab = vocab, .device = "cpu", .threads = 1};
    o.train_data = data, o.test_data = data, o.out_dir = out_dir;
    o.shots = 2, o.epochs = 1, o.batch_size = 4, o.lr = 1e-3, o.workers = 1;
    o.on_event = record, o.ctx = log;
    return o;
}

static bool exists(const char *dir, const char *name) {
    char *path = testutil_path(dir, name);
    bool ok = access(path, R_OK) == 0;
    free(path);
    return ok;
}

static void test_events_result_report(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    event_log log = {0};
    char *out_dir = testutil_path(work, "run"), *report = testutil_path(work, "run.json");
    finetune_options o = small_run(out_dir, &log);
    o.output = report;
    finetune_result r;
    if (finetune_run(&o, &r) != 0) fail_msg("%s", err_msg());
    assert_int_equal(r.n_classes, 3);
    assert_int_equal(r.n_test, 12);
    // shots, zero-shot, probe, the start of training, each step, then the five alphas.
    finetune_event_kind first[4] = {FINETUNE_EVENT_SHOTS, FINETUNE_EVENT_ZEROSHOT, FINETUNE_EVENT_PROBE,
                                    FINETUNE_EVENT_TRAIN};
    for (int i = 0; i < 4; i++) assert_int_equal(log.e[i].kind, first[i]);
    int steps = (int)log.e[3].total;
    assert_true(steps >= 1);
    assert_int_equal(log.n, 4 + steps + 5);
    for (int i = 0; i < steps; i++) {
        assert_int_equal(log.e[4 + i].kind, FINETUNE_EVENT_STEP);
        assert_int_equal(log.e[4 + i].step, i + 1);
    }
    assert_int_equal(log.e[0].n_classes, 3);
    assert_true(log.e[1].top1 == r.zeroshot_top1 && log.e[1].n_test == 12 && log.e[1].n_templates == 1);
    assert_true(log.e[2].top1 == r.probe_top1);
    assert_int_equal(log.e[3].batch, 4);
    double best = -1;
    const finetune_event *wiseft = &log.e[4 + steps];
    for (int i = 0; i < 5; i++) {
        const finetune_event *w = &wiseft[i];
        assert_int_equal(w->kind, FINETUNE_EVENT_WISEFT);
        assert_int_equal(w->index, i);
        assert_true(w->alpha == 0.25 * i);
        if (w->top1 > best) best = w->top1;
    }
    assert_true(wiseft[0].top1 == r.zeroshot_top1);
    assert_true(wiseft[4].top1 == r.finetuned_top1);
    assert_true(r.best_top1 == best);
    int first_best = 0;  // ties go to the first alpha, as in the report
    while (wiseft[first_best].top1 != best) first_best++;
    assert_true(r.best_alpha == wiseft[first_best].alpha);
    cJSON *j = eval_test_read_json(work, "run.json");
    assert_true(eval_test_number(cJSON_GetObjectItemCaseSensitive(j, "zeroshot"), "top1") == r.zeroshot_top1);
    assert_true(eval_test_number(cJSON_GetObjectItemCaseSensitive(j, "linear_probe"), "top1") == r.probe_top1);
    assert_true(eval_test_number(cJSON_GetObjectItemCaseSensitive(j, "finetune"), "best_top1") == r.best_top1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "finetune"),
                                                                         "wiseft")),
                     5);
    cJSON_Delete(j);
    const char *files[] = {"shots/manifest.json", "probe.safetensors", "finetuned.safetensors", "finetuned.head.safetensors",
                           "wiseft.safetensors", "wiseft.head.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists(out_dir, files[i])) fail_msg("%s/%s was not written", out_dir, files[i]);
    assert_int_equal(tensor_live_count(), live);
    free(out_dir), free(report);
}

// The probe alone: no fine-tuning events, nothing of fine-tuning written.
static void test_probe_only(void **state) {
    (void)state;
    event_log log = {0};
    char *out_dir = testutil_path(work, "probe");
    finetune_options o = small_run(out_dir, &log);
    o.finetune = false;
    finetune_result r;
    if (finetune_run(&o, &r) != 0) fail_msg("%s", err_msg());
    assert_int_equal(log.n, 3);
    assert_int_equal(log.e[2].kind, FINETUNE_EVENT_PROBE);
    assert_true(exists(out_dir, "probe.safetensors"));
    assert_false(exists(out_dir, "finetuned.safetensors"));
    free(out_dir);
}

// The run fails with -1 and a message holding needle.
static void expect_failure(const finetune_options *o, const char *needle) {
    finetune_result r;
    if (finetune_run(o, &r) != -1 || !strstr(err_msg(), needle)) fail_msg("expected '%s', got '%s'", needle, err_msg());
}

static void test_bad_input(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    event_log log = {0};
    char *out_dir = testutil_path(work, "bad");
    finetune_options o = small_run(out_dir, &log);
    o.train_data = NULL;
    expect_failure(&o, "are required");
    o = small_run(out_dir, &log), o.shots = 0;
    expect_failure(&o, "--shots");
    o = small_run(out_dir, &log), o.epochs = 0;
    expect_failure(&o, "--epochs");
    o = small_run(out_dir, &log), o.wiseft_alpha = 1.5;
    expect_failure(&o, "--wiseft-alpha");
    o = small_run(out_dir, &log), o.session.vocab = NULL;
    expect_failure(&o, "no vocabulary");
    o = small_run(out_dir, &log), o.session.pretrained = "/nonexistent/model.safetensors";
    expect_failure(&o, "/nonexistent/model.safetensors");
    o = small_run(out_dir, &log), o.test_data = "/nonexistent/manifest.json";
    expect_failure(&o, "/nonexistent/manifest.json");
    o = small_run(out_dir, &log), o.shots = 5;  // 4 samples per class
    expect_failure(&o, "fewer than the 5 shots");
    assert_int_equal(log.n, 1);  // only the failing test set's run drew its shots
    assert_int_equal(tensor_live_count(), live);
    free(out_dir);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_finetune_run VOCAB\n");
        return 2;
    }
    vocab = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_result_report),
        cmocka_unit_test(test_probe_only),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
