// Tests of distillation (train/distill.h, train/distill_cache.h, `clipc distill-cache`, `clipc train
// --distill-*`) on tiny towers over generated shards, the student and the teacher differing in
// width, embedding size, image size and context length:
// - the teacher's weights are bit-identical after training steps that moved the student and the
//   feature projections;
// - the online teacher and the stored targets give the same loss on a batch of evaluation crops,
//   with the teacher's features fetched in pieces and the loss split in row shares;
// - refusals, each naming both sides: a cache made by another teacher, for other shards, mixed
//   teachers in one folder, a vocabulary larger than the teacher's; a missing, damaged or
//   newer-version side file;
// - checkpoints keep the projections (a resumed run repeats the straight run's losses) and refuse
//   projections the run does not have.
// Usage: test_distill CLIPC_BINARY VOCAB
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_run.h"
#include "common/error.h"
#include "data_testutil.h"
#include "distill_testutil.h"
#include "model/safetensors.h"
#include "train/checkpoint.h"
#include "train/distill.h"
#include "train/objective.h"
#include "train/step.h"

static const char *clipc, *vocab;
static char *work, *data, *other_data, *student_cfg, *teacher_cfg, *small_vocab_cfg;
static char *teacher_a, *teacher_b, *small_vocab_teacher, *cache_a, *cache_b;

static const char STUDENT[] =
    "{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16, \"layers\": 1, \"width\": 32, \"head_width\": 16, "
    "\"patch_size\": 8}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 49408, \"width\": 32, \"heads\": 2, "
    "\"layers\": 1}}";
static const char TEACHER[] =
    "{\"embed_dim\": 24, \"vision_cfg\": {\"image_size\": 24, \"layers\": 2, \"width\": 48, \"head_width\": 16, "
    "\"patch_size\": 8}, \"text_cfg\": {\"context_length\": 20, \"vocab_size\": %d, \"width\": 48, \"heads\": 2, "
    "\"layers\": 2}}";

static char *write_text(const char *name, const char *text) { return distill_test_write_text(work, name, text); }

static char *make_data(const char *sub, int first_key) {
    char *dir = testutil_path(work, sub);
    assert_int_equal(mkdir(dir, 0777), 0);
    const int sizes[] = {6, 10};
    char *m = testutil_make_dataset(dir, sizes, 2, 20, 20, false, -1, first_key);
    free(dir);
    return m;
}

static char *make_teacher(const char *config, const char *name, uint64_t seed) {
    return distill_test_make_teacher(work, config, name, seed);
}

static session_options options_of(const char *model, const char *weights) {
    return distill_test_options(model, weights, vocab);
}

static void open_session(const char *model, const char *weights, session *s) {
    distill_test_open_session(model, weights, vocab, s);
}

static char *build_cache(const char *teacher, const char *dir_name) {
    char *dir = testutil_path(work, dir_name);
    distill_cache_build_options o = {.data = data, .dir = dir, .batch_size = 5, .workers = 1};
    distill_test_build_cache(teacher_cfg, teacher, vocab, &o);
    return dir;
}

static int setup(void **state) {
    (void)state;
    work = testutil_tmpdir();
    char teacher[1024];
    student_cfg = write_text("student.json", STUDENT);
    snprintf(teacher, sizeof teacher, TEACHER, 49408);
    teacher_cfg = write_text("teacher.json", teacher);
    snprintf(teacher, sizeof teacher, TEACHER, 1000);
    small_vocab_cfg = write_text("small-vocab.json", teacher);
    data = make_data("data", 0);
    other_data = make_data("other", 100);  // the same shard file names, other samples
    teacher_a = make_teacher(teacher_cfg, "teacher-a.safetensors", 1);
    teacher_b = make_teacher(teacher_cfg, "teacher-b.safetensors", 2);
    small_vocab_teacher = make_teacher(small_vocab_cfg, "small-vocab.safetensors", 1);
    cache_a = build_cache(teacher_a, "cache-a");
    cache_b = build_cache(teacher_b, "cache-b");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    testutil_rmtree(work);
    char *all[] = {work, data, other_data, student_cfg, teacher_cfg, small_vocab_cfg, teacher_a, teacher_b, small_vocab_teacher,
                   cache_a, cache_b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return 0;
}

// A loader over m for the student s: training (random crops) or evaluation, with the teacher's view.
static loader *open_loader(const char *m, const session *s, bool train) {
    loader_config lc;
    loader_config_init(&lc, m, 8, s->cfg.vision.image_size, train);
    lc.workers = 0, lc.tok = s->tok, lc.context_length = s->cfg.text.context_length, lc.seed = 3;
    distill_options o = {.model = teacher_cfg, .pretrained = teacher_a};
    assert_int_equal(distill_view_size(&o, NULL, &s->cfg, &lc.teacher_image_size), 0);
    assert_int_equal(lc.teacher_image_size, 24);
    loader *l = loader_init(&lc);
    if (!l) fail_msg("%s", err_msg());
    return l;
}

// distill_open for the student session s over the loader l; returns 0 or -1 (message kept).
static int open_distill(distill *d, const session *s, const loader *l, const char *teacher, const char *cache,
                        const char *teacher_config) {
    distill_options o = {.model = teacher ? teacher_config : NULL, .pretrained = teacher, .cache = cache, .weight = 1, .contrastive_weight = 1,
                         .feature_weight = 500};
    session_options so = options_of(student_cfg, NULL);
    return distill_open(d, &o, &so, s, l);
}

static void *host_copy(const tensor *t) {
    size_t n = (size_t)tensor_numel(t) * sizeof(float);
    void *buf = xmalloc(n);
    assert_int_equal(tensor_to_host(t, buf, n), 0);
    return buf;
}

static void next_batch(loader *l, loader_batch *b, int64_t *epoch) {
    int rc = loader_next(l, b);
    if (rc == 0) {
        loader_set_epoch(l, ++*epoch);
        rc = loader_next(l, b);
    }
    assert_int_equal(rc, 1);
}

static void test_teacher_is_bit_identical_after_training(void **state) {
    (void)state;
    session s;
    open_session(student_cfg, NULL, &s);
    loader *l = open_loader(data, &s, true);
    distill d;
    if (open_distill(&d, &s, l, teacher_a, NULL, teacher_cfg) != 0) fail_msg("%s", err_msg());
    param_list *teacher = &d.teachers[0].model->params;
    assert_int_equal(teacher->n_trainable, 0);
    for (int i = 0; i < teacher->n; i++) assert_false(tensor_requires_grad(teacher->items[i].value));
    assert_int_equal(d.proj.n, 2);  // 16 -> 24: projections
    void *teacher_before = host_copy(teacher->data), *student_before = host_copy(s.model->params.data);
    void *proj_before = host_copy(d.proj.data);
    param_list *lists[2] = {&s.model->params, &d.proj};
    adamw_config ac = adamw_config_default();
    ac.lr = 1e-2;
    adamw *opt = adamw_init(lists, 2, ac);
    schedule sched = {.kind = SCHEDULE_CONST, .base_lr = 1e-2, .total_steps = 3};
    step_config sc = {.lists = lists, .n_lists = 2, .opt = opt, .sched = &sched, .grad_clip_norm = 1, .accum_freq = 1};
    train_objective objective = {.model = s.model, .loss = LOSS_KIND_CLIP, .distill = &d};
    step_objective obj = train_objective_step(&objective);
    int64_t epoch = 0;
    for (int k = 0; k < 3; k++) {
        loader_batch b;
        next_batch(l, &b, &epoch);
        step_result r;
        if (step_run(&sc, k, &obj, &b, b.n, &r) != 0) fail_msg("%s", err_msg());
        assert_true(r.finite);
    }
    void *teacher_after = host_copy(teacher->data), *student_after = host_copy(s.model->params.data);
    void *proj_after = host_copy(d.proj.data);
    assert_memory_equal(teacher_before, teacher_after, (size_t)tensor_numel(teacher->data) * sizeof(float));
    assert_memory_not_equal(student_before, student_after, (size_t)tensor_numel(s.model->params.data) * sizeof(float));
    assert_memory_not_equal(proj_before, proj_after, (size_t)tensor_numel(d.proj.data) * sizeof(float));
    free(teacher_before), free(teacher_after), free(student_before), free(student_after), free(proj_before),
        free(proj_after);
    adamw_free(opt);
    distill_close(&d);
    loader_free(l);
    session_close(&s);
}

static double item(const tensor *t) {
    double v = NAN;
    if (tensor_item(t, &v) != 0) fail_msg("%s", err_msg());
    return v;
}

// The objective's loss on the first batch of l, and the teacher's image features into image,
// fetched in two pieces as micro-batches would; the loss shares of the two row ranges of the
// gathered features must sum to that loss.
static double first_batch_loss(distill *d, const session *s, loader *l, float *image) {
    loader_set_epoch(l, 0);
    loader_batch b;
    assert_int_equal(loader_next(l, &b), 1);
    train_objective objective = {.model = s->model, .loss = LOSS_KIND_CLIP, .distill = d};
    const clip_model *m = s->model;
    tensor_no_grad_begin();
    tensor_scope_begin();
    double value = item(train_objective_loss(&objective, &b));
    tensor *all[DISTILL_N_FEATURES] = {clip_encode_image(m, clip_images_to_device(m, b.images, b.n), true),
                                       clip_encode_text_host(m, b.tokens, b.n, true)};
    tensor *head[2], *tail[2];
    assert_int_equal(distill_teacher_features(d, m, &b, 0, 3, head), 0);
    assert_int_equal(distill_teacher_features(d, m, &b, 3, b.n, tail), 0);
    for (int k = 0; k < 2; k++) all[DISTILL_TEACHER_IMAGE + k] = tensor_cat((const tensor *[]){head[k], tail[k]}, 2, 0);
    assert_int_equal(tensor_to_host(all[DISTILL_TEACHER_IMAGE], image, (size_t)b.n * 24 * sizeof(float)), 0);
    tensor *scale = tensor_exp(m->logit_scale);
    double whole = item(distill_loss_rows(d, LOSS_KIND_CLIP, all, scale, NULL, 0, b.n));
    double parts = item(distill_loss_rows(d, LOSS_KIND_CLIP, all, scale, NULL, 0, 3)) +
                   item(distill_loss_rows(d, LOSS_KIND_CLIP, all, scale, NULL, 3, b.n));
    assert_true(fabs(whole - value) <= 1e-5 * fabs(value) && fabs(parts - value) <= 1e-5 * fabs(value));
    tensor_scope_end();
    tensor_no_grad_end();
    return value;
}

static void test_online_and_stored_agree_on_evaluation_crops(void **state) {
    (void)state;
    session s;
    open_session(student_cfg, NULL, &s);
    loader *l = open_loader(data, &s, false);
    distill online, stored;
    if (open_distill(&online, &s, l, teacher_a, NULL, teacher_cfg) || open_distill(&stored, &s, l, NULL, cache_a, NULL))
        fail_msg("%s", err_msg());
    assert_null(stored.teachers[0].model);
    float a[8 * 24], b[8 * 24];
    double online_loss = first_batch_loss(&online, &s, l, a), stored_loss = first_batch_loss(&stored, &s, l, b);
    printf("  online %.9g, stored %.9g\n", online_loss, stored_loss);
    assert_true(fabs(online_loss - stored_loss) <= 1e-5 * fabs(online_loss));
    for (int i = 0; i < 8 * 24; i++) assert_float_equal(a[i], b[i], 1e-5);
    // Another teacher's targets give another loss: the comparison can fail.
    distill other;
    if (open_distill(&other, &s, l, NULL, cache_b, NULL)) fail_msg("%s", err_msg());
    assert_true(fabs(first_batch_loss(&other, &s, l, b) - online_loss) > 1e-3);
    distill_close(&online), distill_close(&stored), distill_close(&other);
    loader_free(l);
    session_close(&s);
}

// distill_open must fail with a message holding each of the NULL-terminated words.
static void expect_refusal(const session *s, const loader *l, const char *teacher, const char *cache, const char *cfg,
                           ...) {
    distill d;
    assert_int_equal(open_distill(&d, s, l, teacher, cache, cfg), -1);
    printf("  refused: %s\n", err_msg());
    va_list ap;
    va_start(ap, cfg);
    for (const char *w = va_arg(ap, const char *); w; w = va_arg(ap, const char *))
        if (!strstr(err_msg(), w)) fail_msg("'%s' not in: %s", w, err_msg());
    va_end(ap);
}

static void test_bad_caches_and_teachers_are_refused(void **state) {
    (void)state;
    session s;
    open_session(student_cfg, NULL, &s);
    loader *l = open_loader(data, &s, true), *other = open_loader(other_data, &s, true);
    expect_refusal(&s, l, teacher_b, cache_a, teacher_cfg, "teacher-a.safetensors", "teacher-b.safetensors", NULL);
    expect_refusal(&s, other, NULL, cache_a, NULL, "data/shard-00000.h5", "other/shard-00000.h5", NULL);
    expect_refusal(&s, l, small_vocab_teacher, NULL, small_vocab_cfg, "vocab_size 1000", vocab, "49408 tokens", NULL);
    // Mixed teachers: shard 1's file from teacher B.
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp %s/shard-00001.h5" DISTILL_CACHE_SUFFIX " %s/", cache_b, cache_a);
    assert_int_equal(system(cmd), 0);
    expect_refusal(&s, l, NULL, cache_a, NULL, "cache-a/shard-00001.h5", "cache-a/shard-00000.h5", "teacher-b", "teacher-a",
                   NULL);
    // Damaged, missing and newer-version files.
    char *path = testutil_path(cache_b, "shard-00001.h5" DISTILL_CACHE_SUFFIX);
    assert_int_equal(testutil_truncate(path, 100), 0);
    expect_refusal(&s, l, NULL, cache_b, NULL, path, NULL);
    remove(path);
    expect_refusal(&s, l, NULL, cache_b, NULL, "stored teacher targets of shard", "data/shard-00001.h5", "No such file", NULL);
    st_writer *w = st_writer_init();
    st_writer_set_metadata(w, "clipc.format", DISTILL_CACHE_FORMAT);
    st_writer_set_metadata(w, "clipc.version", "3");
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);
    expect_refusal(&s, l, NULL, cache_b, NULL, path, "version 3", NULL);
    free(path);
    loader_free(l), loader_free(other);
    session_close(&s);
}

// ---- `clipc distill-cache` and `clipc train --distill-*` ---------------------------------------

static int train(char *out, size_t cap, const char *name, const char *extra) {
    return cli_run(out, cap,
                   "%s train --model %s --vocab %s --train-data %s --batch-size 8 --epochs 2 --warmup 1 --lr 1e-3 "
                   "--workers 1 --threads 1 --seed 3 --logs %s/logs --name %s --log-every-n-steps 100 %s",
                   clipc, student_cfg, vocab, data, work, name, extra);
}

static void test_cli_cache_train_and_resume(void **state) {
    (void)state;
    char out[16384], flags[4096];
    int rc = cli_run(out, sizeof out, "%s distill-cache --pretrained %s --model %s --vocab %s --data %s --out %s/cli-cache",
                     clipc, teacher_a, teacher_cfg, vocab, data, work);
    if (rc != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "16 samples"));
    snprintf(flags, sizeof flags, "--distill-cache %s/cli-cache --distill-feature-weight 500", work);
    if (train(out, sizeof out, "stored", flags) != 0) fail_msg("%s", out);
    // Online with feature projections (16 -> 24): straight, and 2 steps + resume for 2 more.
    snprintf(flags, sizeof flags, "--distill-model %s --distill-pretrained %s --distill-feature-weight 500", teacher_cfg,
             teacher_a);
    if (train(out, sizeof out, "straight", flags) != 0) fail_msg("%s", out);
    char more[4200];
    snprintf(more, sizeof more, "%s --max-steps 2 --save-steps 2", flags);
    if (train(out, sizeof out, "resumed", more) != 0) fail_msg("%s", out);
    snprintf(more, sizeof more, "%s --resume latest", flags);
    if (train(out, sizeof out, "resumed", more) != 0) fail_msg("%s", out);
    char straight[4][32] = {{0}}, resumed[4][32] = {{0}};
    assert_int_equal(cli_read_losses(work, "straight", straight, 4), 4);
    assert_int_equal(cli_read_losses(work, "resumed", resumed, 4), 4);
    for (int i = 0; i < 4; i++) assert_string_equal(straight[i], resumed[i]);
    // A checkpoint with projections, resumed without feature distillation: refused.
    snprintf(more, sizeof more, "--distill-model %s --distill-pretrained %s --resume %s/logs/resumed/checkpoints/step_2",
             teacher_cfg, teacher_a, work);
    assert_int_equal(train(out, sizeof out, "no-projection", more), 1);
    assert_non_null(strstr(out, "distill.image_proj.weight"));
    // Bad options.
    assert_int_equal(train(out, sizeof out, "bad", "--distill-model x.json"), 1);
    assert_non_null(strstr(out, "--distill-pretrained"));
    snprintf(more, sizeof more, "--distill-cache %s/cli-cache --distill-weight 0", work);
    assert_int_equal(train(out, sizeof out, "bad2", more), 1);
    assert_non_null(strstr(out, "nothing to distill"));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_distill CLIPC_BINARY VOCAB\n");
        return 2;
    }
    clipc = argv[1], vocab = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_teacher_is_bit_identical_after_training),
        cmocka_unit_test(test_online_and_stored_agree_on_evaluation_crops),
        cmocka_unit_test(test_bad_caches_and_teachers_are_refused),
        cmocka_unit_test(test_cli_cache_train_and_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
