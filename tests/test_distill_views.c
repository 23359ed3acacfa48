// Tests of stored training views and teacher ensembles (train/distill.h, train/distill_cache.h),
// on tiny towers over generated shards (the student at 16 px, the teacher at 24 px):
// - for every stored view of every sample (`--augmentations 3`, crops and colour jitter), the
//   teacher's features of the training loader's view equal the stored ones; the loader's own picks
//   too; an online teacher with that cache measures a crop cosine of 1;
// - a version-1 cache (no views) still opens, as evaluation crops only;
// - an ensemble of two identical teachers gives the single teacher's loss; --contrastive-weight 0
//   gives exactly the distillation term's gradients; the '::' lists' errors name their flag;
//   caches with different views are refused;
// - the CLI: distill-cache of two teachers with views, training against the ensemble, OpenCLIP's
//   several-word --aug-cfg, the refused timm key.
// Usage: test_distill_views CLIPC_BINARY VOCAB
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
#include "train/distill.h"
#include "train/objective.h"

static const char *clipc, *vocab;
static char *work, *data, *student_cfg, *teacher_cfg, *teacher_a, *teacher_b, *plain, *views_a, *views_b;

#define AUG "scale=(0.3,1.0) color_jitter=(0.4,0.4,0.4,0.1)"
#define K 3

static const char STUDENT[] =
    "{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16, \"layers\": 1, \"width\": 32, \"head_width\": 16, "
    "\"patch_size\": 8}, \"text_cfg\": {\"context_length\": 16, \"vocab_size\": 49408, \"width\": 32, \"heads\": 2, "
    "\"layers\": 1}}";
static const char TEACHER[] =
    "{\"embed_dim\": 24, \"vision_cfg\": {\"image_size\": 24, \"layers\": 1, \"width\": 32, \"head_width\": 16, "
    "\"patch_size\": 8}, \"text_cfg\": {\"context_length\": 20, \"vocab_size\": 49408, \"width\": 32, \"heads\": 2, "
    "\"layers\": 1}}";

static char *write_text(const char *name, const char *text) { return distill_test_write_text(work, name, text); }

static char *make_teacher(const char *name, uint64_t seed) {
    return distill_test_make_teacher(work, teacher_cfg, name, seed);
}

static void open_session(const char *model, const char *weights, session *s) {
    distill_test_open_session(model, weights, vocab, s);
}

static char *build_cache(const char *teacher, const char *dir_name, int views) {
    char *dir = testutil_path(work, dir_name);
    distill_cache_build_options o = {.data = data, .dir = dir, .batch_size = 5, .workers = 1, .views = views,
                                     .aug_cfg = AUG, .seed = 7};
    distill_test_build_cache(teacher_cfg, teacher, vocab, &o);
    return dir;
}

static int setup(void **state) {
    (void)state;
    work = testutil_tmpdir();
    student_cfg = write_text("student.json", STUDENT);
    teacher_cfg = write_text("teacher.json", TEACHER);
    char *dir = testutil_path(work, "data");
    assert_int_equal(mkdir(dir, 0777), 0);
    const int sizes[] = {6, 10};
    data = testutil_make_dataset(dir, sizes, 2, 20, 20, false, -1, 0);
    free(dir);
    teacher_a = make_teacher("teacher-a.safetensors", 1);
    teacher_b = make_teacher("teacher-b.safetensors", 2);
    plain = build_cache(teacher_a, "plain", 0);
    views_a = build_cache(teacher_a, "views-a", K);
    views_b = build_cache(teacher_b, "views-b", K);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    testutil_rmtree(work);
    char *all[] = {work, data, student_cfg, teacher_cfg, teacher_a, teacher_b, plain, views_a, views_b};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return 0;
}

// A training loader over the data for the student, with the teacher's 24 px view.
static loader *open_loader(const session *s) {
    loader_config lc;
    loader_config_init(&lc, data, 8, s->cfg.vision.image_size, true);
    lc.workers = 0, lc.tok = s->tok, lc.context_length = s->cfg.text.context_length, lc.seed = 3;
    lc.teacher_image_size = 24;
    loader *l = loader_init(&lc);
    if (!l) fail_msg("%s", err_msg());
    return l;
}

static int open_distill(distill *d, const session *s, const loader *l, const char *teacher, const char *cache,
                        const char *scales, double contrastive_weight) {
    distill_options o = {.model = teacher ? teacher_cfg : NULL, .pretrained = teacher, .cache = cache, .weight = 1,
                         .logit_scale = scales, .contrastive_weight = contrastive_weight};
    session_options so = {.model = student_cfg, .vocab = vocab, .device = "cpu", .threads = 1, .seed = 5};
    return distill_open(d, &o, &so, s, l);
}

// Forces stored view `k` of every sample.
typedef struct {
    const distill_cache *cache;
    int k;
} forced_view;

static int pick_forced(void *ctx, int32_t shard, int64_t index, uint64_t draw, loader_view *out) {
    (void)draw;
    const forced_view *f = ctx;
    distill_cache_view(f->cache, shard, index, f->k, out);
    return f->k;
}

// The largest difference between the teacher's features of the loader's teacher views and the
// stored rows, over one epoch; counts the rows and the views met.
static double epoch_difference(loader *l, distill *d, const session *teacher, int *rows, int *seen) {
    double worst = 0;
    loader_batch b;
    loader_set_epoch(l, 0);
    while (loader_next(l, &b) == 1) {
        tensor_scope_begin();
        tensor *stored[2], *online_image, *online_text;
        assert_int_equal(distill_teacher_features(d, teacher->model, &b, 0, b.n, stored), 0);
        int64_t ctx = teacher->cfg.text.context_length;
        int64_t *tokens = xmalloc((size_t)b.n * (size_t)ctx * sizeof(int64_t));
        assert_int_equal(tokenizer_encode_batch(teacher->tok, b.captions, b.n, (int)ctx, tokens), 0);
        assert_int_equal(distill_teacher_encode(teacher->model, b.teacher_images, tokens, b.n, &online_image, &online_text), 0);
        free(tokens);
        double diff[2];
        assert_int_equal(tensor_item(tensor_max_dim(tensor_reshape(tensor_abs(tensor_sub(stored[0], online_image)), (int64_t[]){-1}, 1), 0, false), &diff[0]), 0);
        assert_int_equal(tensor_item(tensor_max_dim(tensor_reshape(tensor_abs(tensor_sub(stored[1], online_text)), (int64_t[]){-1}, 1), 0, false), &diff[1]), 0);
        worst = fmax(worst, fmax(diff[0], diff[1]));
        for (int i = 0; i < b.n; i++) seen[b.view_index[i]]++, (*rows)++;
        tensor_scope_end();
    }
    return worst;
}

static void test_stored_views_are_the_teachers_view_of_the_loaders_view(void **state) {
    (void)state;
    session s, teacher;
    open_session(student_cfg, NULL, &s);
    open_session(teacher_cfg, teacher_a, &teacher);
    loader *l = open_loader(&s);
    distill d;
    if (open_distill(&d, &s, l, NULL, views_a, NULL, 1) != 0) fail_msg("%s", err_msg());
    assert_int_equal(distill_cache_views(d.caches[0]), K);
    for (int k = 0; k < K; k++) {
        forced_view f = {d.caches[0], k};
        loader_set_view_source(l, (loader_view_source){pick_forced, &f});
        int rows = 0, seen[K] = {0};
        double worst = epoch_difference(l, &d, &teacher, &rows, seen);
        printf("  stored view %d: %d rows, largest difference %.3g\n", k, rows, worst);
        assert_int_equal(seen[k], rows);
        assert_true(rows == 16 && worst < 1e-5);
    }
    loader_view_source source;
    assert_true(distill_view_source(&d, &source));
    loader_set_view_source(l, source);
    int rows = 0, seen[K] = {0};
    assert_true(epoch_difference(l, &d, &teacher, &rows, seen) < 1e-5);
    assert_true(seen[0] + seen[1] + seen[2] == 16 && (seen[0] < 16 && seen[1] < 16 && seen[2] < 16));
    // The evaluation crops' targets are not the views' (the comparison can fail).
    distill eval;
    if (open_distill(&eval, &s, l, NULL, plain, NULL, 1) != 0) fail_msg("%s", err_msg());
    assert_false(distill_view_source(&eval, &source));
    forced_view f = {d.caches[0], 1};  // the loader still shows views, the cache has evaluation crops only
    loader_set_view_source(l, (loader_view_source){pick_forced, &f});
    assert_true(epoch_difference(l, &eval, &teacher, &rows, seen) > 1e-3);
    distill_close(&eval), distill_close(&d);
    loader_free(l);
    session_close(&teacher), session_close(&s);
}

// Rewrites the "clipc.version" of every side file in dir from 2 to 1 (same length, in place).
static void make_version_1(const char *dir) {
    for (int shard = 0; shard < 2; shard++) {
        char name[64];
        snprintf(name, sizeof name, "shard-%05d.h5" DISTILL_CACHE_SUFFIX, shard);
        char *path = testutil_path(dir, name);
        FILE *f = fopen(path, "r+b");
        assert_non_null(f);
        char head[8192];
        size_t n = fread(head, 1, sizeof head - 1, f);
        head[n] = '\0';
        char *at = strstr(head + 8, "\"clipc.version\":\"2\"");  // after the header's 8-byte length
        assert_non_null(at);
        fseek(f, (long)(at - head) + 17, SEEK_SET);
        fputc('1', f);
        fclose(f);
        free(path);
    }
}

static void test_version_1_caches_open_as_evaluation_crops(void **state) {
    (void)state;
    char cmd[4096];
    char *old = testutil_path(work, "old");
    snprintf(cmd, sizeof cmd, "cp -r %s %s", plain, old);
    assert_int_equal(system(cmd), 0);
    make_version_1(old);
    session s;
    open_session(student_cfg, NULL, &s);
    loader *l = open_loader(&s);
    distill d;
    if (open_distill(&d, &s, l, NULL, old, NULL, 1) != 0) fail_msg("%s", err_msg());
    assert_int_equal(distill_cache_views(d.caches[0]), 0);
    distill_close(&d);
    loader_free(l);
    session_close(&s);
    free(old);
}

// The loss of the first batch and the gradient of the student's image features.
static double loss_and_grad(distill *d, const session *s, loader *l, float *grad) {
    loader_set_epoch(l, 0);
    loader_batch b;
    assert_int_equal(loader_next(l, &b), 1);
    const clip_model *m = s->model;
    tensor_scope_begin();
    tensor *all[DISTILL_MAX_FEATURES] = {clip_encode_image(m, clip_images_to_device(m, b.images, b.n), true),
                                         clip_encode_text_host(m, b.tokens, b.n, true)};
    tensor *image = tensor_detach(all[0]);
    assert_int_equal(tensor_set_requires_grad(image, true), 0);
    all[0] = image;
    assert_int_equal(distill_teacher_features(d, m, &b, 0, b.n, all + DISTILL_TEACHER_IMAGE), 0);
    tensor *loss = distill_loss_rows(d, LOSS_KIND_CLIP, all, tensor_exp(m->logit_scale), NULL, 0, b.n);
    double value = NAN;
    assert_int_equal(tensor_item(loss, &value), 0);
    assert_int_equal(tensor_backward(loss, NULL), 0);
    assert_int_equal(tensor_to_host(tensor_grad(image), grad, (size_t)b.n * 16 * sizeof(float)), 0);
    tensor_scope_end();
    return value;
}

static void expect_refusal(const session *s, const loader *l, const char *teacher, const char *cache, const char *scales,
                           const char *word) {
    distill d;
    assert_int_equal(open_distill(&d, s, l, teacher, cache, scales, 1), -1);
    printf("  refused: %s\n", err_msg());
    if (!strstr(err_msg(), word)) fail_msg("'%s' not in: %s", word, err_msg());
}

static void test_ensembles(void **state) {
    (void)state;
    session s;
    open_session(student_cfg, NULL, &s);
    loader *l = open_loader(&s);
    char pair[4096], mixed[4096];
    snprintf(pair, sizeof pair, "%s::%s", views_a, views_a);
    snprintf(mixed, sizeof mixed, "%s::%s", views_a, views_b);
    distill one, two, other, pure;
    if (open_distill(&one, &s, l, NULL, views_a, NULL, 1) || open_distill(&two, &s, l, NULL, pair, NULL, 1) ||
        open_distill(&other, &s, l, NULL, mixed, "50::20", 1) || open_distill(&pure, &s, l, NULL, views_a, NULL, 0))
        fail_msg("%s", err_msg());
    assert_int_equal(distill_n_features(&two), 6);
    float g1[8 * 16], g2[8 * 16], g3[8 * 16], gp[8 * 16];
    double l1 = loss_and_grad(&one, &s, l, g1), l2 = loss_and_grad(&two, &s, l, g2), l3 = loss_and_grad(&other, &s, l, g3);
    printf("  one teacher %.9g, the same teacher twice %.9g, two teachers %.9g\n", l1, l2, l3);
    assert_true(fabs(l1 - l2) <= 1e-5 * fabs(l1) && fabs(l3 - l1) > 1e-4);
    for (int i = 0; i < 8 * 16; i++) assert_float_equal(g1[i], g2[i], 1e-6);
    // --contrastive-weight 0: the distillation term alone (the gradient of loss_distill_rows's term).
    double lp = loss_and_grad(&pure, &s, l, gp);
    loader_batch b;
    loader_set_epoch(l, 0);
    assert_int_equal(loader_next(l, &b), 1);
    tensor_scope_begin();
    const clip_model *m = s.model;
    tensor *image = tensor_detach(clip_encode_image(m, clip_images_to_device(m, b.images, b.n), true)), *t[2];
    assert_int_equal(tensor_set_requires_grad(image, true), 0);
    assert_int_equal(distill_teacher_features(&pure, m, &b, 0, b.n, t), 0);
    loss_distill_terms terms;
    assert_int_equal(loss_distill_rows(image, clip_encode_text_host(m, b.tokens, b.n, true), tensor_exp(m->logit_scale), t[0],
                                       t[1], tensor_scalar(exp(distill_cache_logit_scale(pure.caches[0])), TENSOR_F32, TENSOR_CPU),
                                       0, b.n, &terms),
                     0);
    double term = NAN;
    assert_int_equal(tensor_item(terms.distill, &term), 0);
    assert_int_equal(tensor_backward(terms.distill, NULL), 0);
    float want[8 * 16];
    assert_int_equal(tensor_to_host(tensor_grad(image), want, sizeof want), 0);
    tensor_scope_end();
    printf("  contrastive weight 0: %.9g, the distillation term %.9g (with the contrastive loss: %.9g)\n", lp, term, l1);
    assert_true(fabs(lp - term) <= 1e-6 * fabs(term) && fabs(l1 - lp) > 1e-3);
    for (int i = 0; i < 8 * 16; i++) assert_float_equal(gp[i], want[i], 1e-7);
    distill_close(&one), distill_close(&two), distill_close(&other), distill_close(&pure);
    // The lists' errors name their flag.
    char two_teachers[4096];
    snprintf(two_teachers, sizeof two_teachers, "%s::%s", teacher_a, teacher_b);
    expect_refusal(&s, l, NULL, mixed, "50::x", "--distill-logit-scale");
    expect_refusal(&s, l, NULL, mixed, "50::-1", "--distill-logit-scale");
    expect_refusal(&s, l, NULL, mixed, "1::2::3", "--distill-logit-scale");
    expect_refusal(&s, l, two_teachers, views_a, NULL, "--distill-cache");
    snprintf(mixed, sizeof mixed, "%s::%s", views_a, plain);
    expect_refusal(&s, l, NULL, mixed, NULL, "different stored views");
    loader_free(l);
    session_close(&s);
}

// ---- the CLI ---------------------------------------------------------------------------------

static int train(char *out, size_t cap, const char *name, const char *extra) {
    return cli_run(out, cap,
                   "%s train --model %s --vocab %s --train-data %s --batch-size 8 --epochs 1 --warmup 1 --lr 1e-3 "
                   "--workers 1 --threads 1 --seed 3 --logs %s/logs --name %s --log-every-n-steps 1 %s",
                   clipc, student_cfg, vocab, data, work, name, extra);
}

// The mean teacher_crop_cosine of a run's metrics.jsonl.
static double mean_crop_cosine(const char *run) {
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, run);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    double sum = 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "\"teacher_crop_cosine\":");
        if (at) sum += atof(at + 22), n++;
    }
    fclose(f);
    assert_true(n > 0);
    return sum / n;
}

// The last lines of a command's output (its error follows the printed configuration).
static const char *tail_of(const char *out) {
    size_t n = strlen(out);
    return n > 600 ? out + n - 600 : out;
}

static void test_cli(void **state) {
    (void)state;
    static char out[1 << 17];
    char flags[4096];
    int rc = cli_run(out, sizeof out,
                     "%s distill-cache --pretrained %s::%s --model %s --vocab %s --data %s --out %s/cli-a::%s/cli-b "
                     "--augmentations 2 --aug-cfg '" AUG "' --seed 4",
                     clipc, teacher_a, teacher_b, teacher_cfg, vocab, data, work, work);
    if (rc != 0) fail_msg("%s", tail_of(out));
    snprintf(flags, sizeof flags, "--distill-cache %s/cli-a::%s/cli-b --distill-logit-scale 30 --contrastive-weight 0", work, work);
    if (train(out, sizeof out, "ensemble", flags) != 0) fail_msg("%s", tail_of(out));
    // An online teacher shown the stored views of its own cache: the crop cosine is 1.
    snprintf(flags, sizeof flags, "--distill-model %s --distill-pretrained %s --distill-cache %s/cli-a", teacher_cfg, teacher_a,
             work);
    if (train(out, sizeof out, "online-views", flags) != 0) fail_msg("%s", tail_of(out));
    double cosine = mean_crop_cosine("online-views");
    printf("  crop cosine with stored views: %.7f\n", cosine);
    assert_true(cosine > 0.99999);
    // OpenCLIP's form of --aug-cfg (several words), and a timm key refused.
    snprintf(flags, sizeof flags, "--distill-model %s --distill-pretrained %s --distill-cache %s --aug-cfg scale='(0.3,1.0)' color_jitter=0.4",
             teacher_cfg, teacher_a, plain);
    if (train(out, sizeof out, "aug-cfg", flags) != 0) fail_msg("%s", tail_of(out));
    assert_true(mean_crop_cosine("aug-cfg") < 0.9999);  // the evaluation crops are not the views
    assert_int_equal(train(out, sizeof out, "timm", "--aug-cfg scale='(0.5,1)' use_timm=True"), 1);
    assert_non_null(strstr(out, "use_timm"));
    rc = cli_run(out, sizeof out, "%s distill-cache --pretrained %s::%s --model %s --vocab %s --data %s --out %s/one", clipc,
                 teacher_a, teacher_b, teacher_cfg, vocab, data, work);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "--out"));
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_distill_views CLIPC_BINARY VOCAB\n");
        return 2;
    }
    clipc = argv[1], vocab = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored_views_are_the_teachers_view_of_the_loaders_view),
        cmocka_unit_test(test_version_1_caches_open_as_evaluation_crops),
        cmocka_unit_test(test_ensembles),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
