// Tests loss/: CLIP, SigLIP and distillation losses, logits and input gradients against OpenCLIP
// v2.20's numbers (losses.safetensors in the fixture folder given as argv[1]); gradients against
// central finite differences in double precision (the feature-distillation term too); the
// local-rows shares over 2 and 3 ranges summing to the full loss with the same gradients; bad
// shapes and ranges; the test fixture reader's errors.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "loss/loss.h"
#include "tests/fixture.h"

static const char *fixture_dir;

static tensor *load(const char *name) {
    tensor *t = fixture_tensor_in(fixture_dir, "losses.safetensors", name);
    if (!t) fail_msg("%s", err_msg());
    return t;
}

static tensor *load_leaf(const char *name) {
    tensor *t = load(name);
    assert_int_equal(tensor_set_requires_grad(t, true), 0);
    return t;
}

static double *host_doubles(const tensor *t) {
    tensor *d = tensor_to_dtype(t, TENSOR_F64);
    assert_non_null(d);
    size_t n = (size_t)tensor_numel(d);
    double *v = xmalloc((n ? n : 1) * sizeof *v);
    assert_int_equal(tensor_to_host(d, v, n * sizeof *v), 0);
    tensor_free(d);
    return v;
}

// Asserts |got - expect| <= atol + rtol * max|expect| elementwise, with equal shapes.
static void assert_close(const tensor *got, const tensor *expect, double atol, double rtol, const char *what) {
    assert_non_null(got);
    int64_t sg[TENSOR_MAX_DIMS], se[TENSOR_MAX_DIMS];
    int ng = tensor_shape(got, sg), ne = tensor_shape(expect, se);
    assert_int_equal(ng, ne);
    assert_memory_equal(sg, se, (size_t)ng * sizeof *sg);
    size_t n = (size_t)tensor_numel(got);
    double *g = host_doubles(got), *e = host_doubles(expect), max_abs = 0;
    for (size_t i = 0; i < n; i++) max_abs = fmax(max_abs, fabs(e[i]));
    double tol = atol + rtol * max_abs;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(g[i] - e[i]) <= tol)) fail_msg("%s[%zu]: got %.9g, expected %.9g (tol %.3g)", what, i, g[i], e[i], tol);
    free(g);
    free(e);
}

// The fixture README's float32 tolerances.
static void assert_value(const tensor *got, const char *key) { assert_close(got, load(key), 2e-5, 0, key); }
static void assert_grad(const tensor *leaf, const char *key) {
    assert_close(tensor_grad(leaf), load(key), 1e-5, 1e-4, key);
}

static void test_clip_matches_openclip(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    tensor_scope_begin();
    tensor *img = load_leaf("image_features"), *txt = load_leaf("text_features"), *s = load_leaf("logit_scale");
    tensor *loss = loss_clip(img, txt, s);
    assert_value(loss, "clip_loss");
    assert_value(loss_logits(img, txt, s), "clip.logits_per_image");
    assert_value(loss_logits(txt, img, s), "clip.logits_per_text");
    assert_int_equal(tensor_backward(loss, NULL), 0);
    assert_grad(img, "clip.grad.image_features");
    assert_grad(txt, "clip.grad.text_features");
    assert_grad(s, "clip.grad.logit_scale");
    tensor_scope_end();
    assert_int_equal(tensor_live_count(), live);
}

static void test_siglip_matches_openclip(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    tensor_scope_begin();
    tensor *img = load_leaf("image_features"), *txt = load_leaf("text_features");
    tensor *s = load_leaf("logit_scale"), *b = load_leaf("logit_bias");
    tensor *loss = loss_siglip(img, txt, s, b);
    assert_value(loss, "siglip_loss");
    assert_value(tensor_add(loss_logits(img, txt, s), b), "siglip.logits");
    assert_int_equal(tensor_backward(loss, NULL), 0);
    assert_grad(img, "siglip.grad.image_features");
    assert_grad(txt, "siglip.grad.text_features");
    assert_grad(s, "siglip.grad.logit_scale");
    assert_grad(b, "siglip.grad.logit_bias");
    tensor_scope_end();
    assert_int_equal(tensor_live_count(), live);
}

static void test_distill_matches_openclip(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    tensor_scope_begin();
    tensor *img = load_leaf("image_features"), *txt = load_leaf("text_features"), *s = load_leaf("logit_scale");
    tensor *t_img = load_leaf("teacher_image_features"), *t_txt = load("teacher_text_features");
    loss_distill_terms terms;
    assert_int_equal(loss_distill(img, txt, s, t_img, t_txt, load("teacher_logit_scale"), &terms), 0);
    assert_value(terms.contrastive, "distill.contrastive_loss");
    assert_value(terms.distill, "distill.distill_loss");
    assert_int_equal(tensor_backward(terms.distill, NULL), 0);  // the fixture's grads: distill term alone
    assert_grad(img, "distill.grad.image_features");
    assert_grad(txt, "distill.grad.text_features");
    assert_grad(s, "distill.grad.logit_scale");
    assert_false(tensor_has_grad(t_img));  // the teacher is used detached
    tensor_scope_end();
    assert_int_equal(tensor_live_count(), live);
}

// ---- finite differences in double precision ----------------------------------------------------

enum { FD_N = 6, FD_D = 5, FD_IMG = 0, FD_TXT = FD_N * FD_D, FD_SCALE = 2 * FD_N * FD_D, FD_BIAS, FD_COUNT };

static tensor *random_features(int64_t n, int64_t d, uint64_t seed) {
    int64_t shape[2] = {n, d};
    tensor_generator *g = tensor_generator_new(seed, TENSOR_CPU);
    tensor *f = tensor_l2_normalize(tensor_normal(shape, 2, 0, 1, TENSOR_F64, TENSOR_CPU, g), 1);
    tensor_generator_free(g);
    assert_non_null(f);
    return f;
}

// A loss at point x; with grad != NULL also its autograd gradient there.
typedef double (*loss_at_fn)(const void *ctx, const double *x, double *grad);

// Compares the autograd gradient at x (n doubles) with central finite differences.
static void check_gradient(loss_at_fn loss_at, const void *ctx, double *x, int n) {
    double *grad = xmalloc((size_t)n * sizeof(double)), h = 1e-6;
    loss_at(ctx, x, grad);
    for (int i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + h;
        double up = loss_at(ctx, x, NULL);
        x[i] = saved - h;
        double down = loss_at(ctx, x, NULL);
        x[i] = saved;
        double numeric = (up - down) / (2 * h);
        if (fabs(numeric - grad[i]) > 1e-7 * (1 + fabs(numeric)))
            fail_msg("input %d: autograd %.12g, finite difference %.12g", i, grad[i], numeric);
    }
    free(grad);
}

// The contrastive loss of kind *ctx at x = (image, text, scale, bias), FD_COUNT doubles.
static double contrastive_at(const void *ctx, const double *x, double *grad) {
    loss_kind kind = *(const loss_kind *)ctx;
    tensor_scope_begin();
    int64_t shape[2] = {FD_N, FD_D};
    tensor *leaves[4] = {
        tensor_from_host(x + FD_IMG, shape, 2, TENSOR_F64, false),
        tensor_from_host(x + FD_TXT, shape, 2, TENSOR_F64, false),
        tensor_scalar(x[FD_SCALE], TENSOR_F64, TENSOR_CPU),
        tensor_scalar(x[FD_BIAS], TENSOR_F64, TENSOR_CPU),
    };
    for (int i = 0; i < 4 && grad; i++) assert_int_equal(tensor_set_requires_grad(leaves[i], true), 0);
    tensor *loss = loss_contrastive_rows(kind, leaves[0], leaves[1], leaves[2], leaves[3], 0, FD_N);
    double value;
    assert_int_equal(tensor_item(loss, &value), 0);
    if (grad) {
        assert_int_equal(tensor_backward(loss, NULL), 0);
        size_t block = FD_N * FD_D * sizeof(double);
        assert_int_equal(tensor_to_host(tensor_grad(leaves[0]), grad + FD_IMG, block), 0);
        assert_int_equal(tensor_to_host(tensor_grad(leaves[1]), grad + FD_TXT, block), 0);
        assert_int_equal(tensor_item(tensor_grad(leaves[2]), grad + FD_SCALE), 0);
        grad[FD_BIAS] = 0;
        if (kind == LOSS_KIND_SIGLIP) assert_int_equal(tensor_item(tensor_grad(leaves[3]), grad + FD_BIAS), 0);
    }
    tensor_scope_end();
    return value;
}

static void check_finite_differences(loss_kind kind) {
    double x[FD_COUNT];
    tensor_scope_begin();
    size_t block = FD_N * FD_D * sizeof(double);
    assert_int_equal(tensor_to_host(random_features(FD_N, FD_D, 1), x + FD_IMG, block), 0);
    assert_int_equal(tensor_to_host(random_features(FD_N, FD_D, 2), x + FD_TXT, block), 0);
    tensor_scope_end();
    x[FD_SCALE] = 4.0;
    x[FD_BIAS] = -1.5;
    check_gradient(contrastive_at, &kind, x, FD_COUNT);
}

static void test_clip_gradient_matches_finite_differences(void **state) {
    (void)state;
    check_finite_differences(LOSS_KIND_CLIP);
}

static void test_siglip_gradient_matches_finite_differences(void **state) {
    (void)state;
    check_finite_differences(LOSS_KIND_SIGLIP);
}

// The feature term at student features x (FD_N x FD_D) against fixed teacher features ctx (the
// same shape); with grad, also a check that the teacher got no gradient.
static double feature_at(const void *ctx, const double *x, double *grad) {
    const double *t = ctx;
    tensor_scope_begin();
    int64_t shape[2] = {FD_N, FD_D};
    tensor *student = tensor_from_host(x, shape, 2, TENSOR_F64, false);
    tensor *teacher = tensor_from_host(t, shape, 2, TENSOR_F64, false);
    assert_int_equal(tensor_set_requires_grad(student, true), 0);
    assert_int_equal(tensor_set_requires_grad(teacher, true), 0);
    tensor *loss = loss_feature_mse(student, teacher);
    double value;
    assert_int_equal(tensor_item(loss, &value), 0);
    if (grad) {
        assert_int_equal(tensor_backward(loss, NULL), 0);
        assert_int_equal(tensor_to_host(tensor_grad(student), grad, FD_N * FD_D * sizeof(double)), 0);
        assert_false(tensor_has_grad(teacher));
    }
    tensor_scope_end();
    return value;
}

static void test_feature_term_matches_finite_differences(void **state) {
    (void)state;
    double x[FD_N * FD_D], t[FD_N * FD_D], expect = 0;
    tensor_scope_begin();
    assert_int_equal(tensor_to_host(random_features(FD_N, FD_D, 3), x, sizeof x), 0);
    assert_int_equal(tensor_to_host(random_features(FD_N, FD_D, 4), t, sizeof t), 0);
    tensor_scope_end();
    for (int i = 0; i < FD_N * FD_D; i++) expect += (x[i] - t[i]) * (x[i] - t[i]) / (FD_N * FD_D);
    assert_true(fabs(feature_at(t, x, NULL) - expect) <= 1e-15);
    check_gradient(feature_at, t, x, FD_N * FD_D);
}

// ---- local rows: shares over ranges sum to the full loss and its gradient -----------------------

enum { SPLIT_N = 7, SPLIT_D = 4, SPLIT_TEACHER_D = 3 };

typedef struct {
    tensor *img, *txt, *scale, *bias;  // leaves
    tensor *t_img, *t_txt, *t_scale;   // teacher (no gradient)
} split_inputs;

typedef tensor *(*rows_loss)(const split_inputs *in, int64_t r0, int64_t r1);

static tensor *clip_rows(const split_inputs *in, int64_t r0, int64_t r1) {
    return loss_clip_rows(in->img, in->txt, in->scale, r0, r1);
}

static tensor *siglip_rows(const split_inputs *in, int64_t r0, int64_t r1) {
    return loss_siglip_rows(in->img, in->txt, in->scale, in->bias, r0, r1);
}

// Both DistillClipLoss terms, weighted unequally so that neither can hide the other's error.
static tensor *distill_rows(const split_inputs *in, int64_t r0, int64_t r1) {
    loss_distill_terms t;
    if (loss_distill_rows(in->img, in->txt, in->scale, in->t_img, in->t_txt, in->t_scale, r0, r1, &t) < 0)
        return NULL;
    return tensor_add(t.contrastive, tensor_mul_scalar(t.distill, 3.0));
}

// The feature term in both directions (each side detached in turn) plus the CLIP loss, so that
// image, text and scale all get gradients.
static tensor *feature_rows(const split_inputs *in, int64_t r0, int64_t r1) {
    tensor *both = tensor_add(tensor_mul_scalar(loss_feature_mse_rows(in->img, in->txt, r0, r1), 2.0),
                              loss_feature_mse_rows(in->txt, in->img, r0, r1));
    return tensor_add(loss_clip_rows(in->img, in->txt, in->scale, r0, r1), both);
}

static split_inputs split_inputs_new(void) {
    split_inputs in = {
        .img = random_features(SPLIT_N, SPLIT_D, 11),
        .txt = random_features(SPLIT_N, SPLIT_D, 12),
        .scale = tensor_scalar(5.0, TENSOR_F64, TENSOR_CPU),
        .bias = tensor_scalar(-2.0, TENSOR_F64, TENSOR_CPU),
        .t_img = random_features(SPLIT_N, SPLIT_TEACHER_D, 13),
        .t_txt = random_features(SPLIT_N, SPLIT_TEACHER_D, 14),
        .t_scale = tensor_scalar(8.0, TENSOR_F64, TENSOR_CPU),
    };
    tensor *leaves[4] = {in.img, in.txt, in.scale, in.bias};
    for (int i = 0; i < 4; i++) assert_int_equal(tensor_set_requires_grad(leaves[i], true), 0);
    return in;
}

// Runs the shares of ranges bounds[0..1), ..., bounds[k-1..k) (k = 1: the full loss) with one
// backward each, as ranks or micro-batches would; returns the summed loss, gradients in the leaves.
static double run_ranges(rows_loss fn, const split_inputs *in, const int64_t *bounds, int k) {
    double total = 0, share;
    for (int r = 0; r < k; r++) {
        tensor *loss = fn(in, bounds[r], bounds[r + 1]);
        assert_int_equal(tensor_item(loss, &share), 0);
        assert_int_equal(tensor_backward(loss, NULL), 0);
        total += share;
    }
    return total;
}

static void check_split(rows_loss fn, const int64_t *bounds, int k) {
    tensor_scope_begin();
    int64_t whole[2] = {0, SPLIT_N};
    split_inputs full = split_inputs_new(), split = split_inputs_new();
    double full_loss = run_ranges(fn, &full, whole, 1);
    double split_loss = run_ranges(fn, &split, bounds, k);
    assert_true(fabs(full_loss - split_loss) <= 1e-12 * fabs(full_loss));
    tensor *full_leaves[3] = {full.img, full.txt, full.scale}, *split_leaves[3] = {split.img, split.txt, split.scale};
    for (int i = 0; i < 3; i++)
        assert_close(tensor_grad(split_leaves[i]), tensor_grad(full_leaves[i]), 1e-12, 1e-12, "split gradient");
    if (fn == siglip_rows) assert_close(tensor_grad(split.bias), tensor_grad(full.bias), 1e-12, 1e-12, "bias gradient");
    tensor_scope_end();
}

static void check_splits(rows_loss fn) {
    int64_t two[3] = {0, 3, SPLIT_N}, three[4] = {0, 2, 5, SPLIT_N};
    check_split(fn, two, 2);
    check_split(fn, three, 3);
}

static void test_clip_rows_sum_to_full_loss(void **state) {
    (void)state;
    check_splits(clip_rows);
}

static void test_siglip_rows_sum_to_full_loss(void **state) {
    (void)state;
    check_splits(siglip_rows);
}

static void test_distill_rows_sum_to_full_loss(void **state) {
    (void)state;
    check_splits(distill_rows);
}

static void test_feature_rows_sum_to_full_loss(void **state) {
    (void)state;
    check_splits(feature_rows);
}

// ---- bad input ---------------------------------------------------------------------------------

static void test_bad_shapes_and_ranges_are_errors(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    tensor_scope_begin();
    int64_t s43[2] = {4, 3}, s53[2] = {5, 3}, s2[1] = {2};
    tensor *a = tensor_zeros(s43, 2, TENSOR_F32, TENSOR_CPU), *b = tensor_zeros(s53, 2, TENSOR_F32, TENSOR_CPU);
    tensor *s = tensor_scalar(10, TENSOR_F32, TENSOR_CPU), *s_vec = tensor_ones(s2, 1, TENSOR_F32, TENSOR_CPU);
    assert_null(loss_clip(a, b, s));
    assert_non_null(strstr(err_msg(), "loss_clip"));
    assert_non_null(strstr(err_msg(), "[4, 3] and [5, 3]"));
    assert_null(loss_clip(a, a, s_vec));
    assert_non_null(strstr(err_msg(), "logit scale"));
    assert_null(loss_siglip(a, a, s, s_vec));
    assert_non_null(strstr(err_msg(), "logit bias"));
    int64_t bad[3][2] = {{2, 2}, {-1, 2}, {0, 5}};
    for (int i = 0; i < 3; i++) {
        assert_null(loss_clip_rows(a, a, s, bad[i][0], bad[i][1]));
        assert_non_null(strstr(err_msg(), "row range"));
        assert_null(loss_siglip_rows(a, a, s, s, bad[i][0], bad[i][1]));
        assert_non_null(strstr(err_msg(), "row range"));
    }
    loss_distill_terms terms;
    assert_int_equal(loss_distill(a, a, s, b, b, s, &terms), -1);
    assert_non_null(strstr(err_msg(), "teacher has 5 samples"));
    assert_null(terms.contrastive);
    assert_null(terms.distill);
    assert_null(loss_feature_mse(a, b));
    assert_non_null(strstr(err_msg(), "[4, 3] and teacher features [5, 3]"));
    assert_null(loss_feature_mse_rows(a, a, 3, 9));
    assert_non_null(strstr(err_msg(), "row range"));
    err_set("an earlier failure");
    assert_null(loss_clip(NULL, a, s));
    assert_null(loss_siglip(a, a, s, NULL));
    assert_int_equal(loss_distill(a, a, s, NULL, a, s, &terms), -1);
    assert_null(loss_feature_mse(a, NULL));
    assert_string_equal(err_msg(), "an earlier failure");
    tensor_scope_end();
    assert_int_equal(tensor_live_count(), live);
}

static void test_fixture_reader_errors(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/losses.safetensors", fixture_dir);
    assert_null(fixture_tensor(path, "no_such_key"));
    assert_non_null(strstr(err_msg(), "no_such_key"));
    assert_null(fixture_tensor_in(fixture_dir, "missing.safetensors", "clip_loss"));
    assert_non_null(strstr(err_msg(), "missing.safetensors"));
    char tmp[] = "/tmp/clipc_test_loss_XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x10\0\0\0\0\0\0\0{\"a\"", 12), 12);  // header cut short
    close(fd);
    assert_null(fixture_tensor(tmp, "a"));
    assert_non_null(strstr(err_msg(), "header"));
    unlink(tmp);
}

// ---- teacher ensembles ------------------------------------------------------------------------

static tensor *matrix(const double *v, int64_t n, int64_t d, bool leaf) {
    int64_t shape[2] = {n, d};
    tensor *t = tensor_from_host(v, shape, 2, TENSOR_F64, false);
    if (leaf) assert_int_equal(tensor_set_requires_grad(t, true), 0);
    return t;
}

// -sum_j p_j log q_j over row i of (n, n) logits, p the teachers' softmaxes averaged (by hand).
static double row_cross_entropy_by_hand(const double *student, const double *const *teachers, int m, int n, int i) {
    double zs = 0, h = 0;
    for (int j = 0; j < n; j++) zs += exp(student[i * n + j]);
    for (int j = 0; j < n; j++) {
        double p = 0;
        for (int k = 0; k < m; k++) {
            double zt = 0;
            for (int c = 0; c < n; c++) zt += exp(teachers[k][i * n + c]);
            p += exp(teachers[k][i * n + j]) / zt / m;
        }
        h -= p * (student[i * n + j] - log(zs));
    }
    return h;
}

// s a b^T of (n, d) rows, by hand.
static void logits_by_hand(const double *a, const double *b, double s, int n, int d, double *out) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double dot = 0;
            for (int k = 0; k < d; k++) dot += a[i * d + k] * b[j * d + k];
            out[i * n + j] = s * dot;
        }
}

// Two teachers, 3 samples of 2-d features: the ensemble term against the formula computed by
// hand; the shares of [0, 1) and [1, 3) sum to it; one teacher gives loss_distill's distill term
// (value and gradients).
static void test_ensemble_distillation(void **state) {
    (void)state;
    enum { N = 3, D = 2 };
    const double I[N * D] = {1, 0, 0.6, 0.8, 0, 1}, T[N * D] = {0.8, 0.6, 0, 1, -0.6, 0.8};
    const double I1[N * D] = {1, 0, 0, 1, 0.6, -0.8}, T1[N * D] = {1, 0, 0.8, 0.6, 0, 1};
    const double I2[N * D] = {0.6, 0.8, 1, 0, 0, -1}, T2[N * D] = {0.8, -0.6, 1, 0, 0.6, 0.8};
    const double s = 2.0, s1 = 3.0, s2 = 1.5;
    double si[N * N], st[N * N], t1i[N * N], t1t[N * N], t2i[N * N], t2t[N * N];
    logits_by_hand(I, T, s, N, D, si), logits_by_hand(T, I, s, N, D, st);
    logits_by_hand(I1, T1, s1, N, D, t1i), logits_by_hand(T1, I1, s1, N, D, t1t);
    logits_by_hand(I2, T2, s2, N, D, t2i), logits_by_hand(T2, I2, s2, N, D, t2t);
    const double *by_image[2] = {t1i, t2i}, *by_text[2] = {t1t, t2t};
    double expect = 0;
    for (int i = 0; i < N; i++)
        expect += (row_cross_entropy_by_hand(si, by_image, 2, N, i) + row_cross_entropy_by_hand(st, by_text, 2, N, i)) / (2 * N);

    tensor_scope_begin();
    tensor *img = matrix(I, N, D, true), *txt = matrix(T, N, D, true), *scale = tensor_scalar(s, TENSOR_F64, TENSOR_CPU);
    const tensor *ti[2] = {matrix(I1, N, D, false), matrix(I2, N, D, false)};
    const tensor *tt[2] = {matrix(T1, N, D, false), matrix(T2, N, D, false)};
    const tensor *ts[2] = {tensor_scalar(s1, TENSOR_F64, TENSOR_CPU), tensor_scalar(s2, TENSOR_F64, TENSOR_CPU)};
    double whole, a, b;
    assert_int_equal(tensor_item(loss_distill_ensemble_rows(img, txt, scale, ti, tt, ts, 2, 0, N), &whole), 0);
    assert_int_equal(tensor_item(loss_distill_ensemble_rows(img, txt, scale, ti, tt, ts, 2, 0, 1), &a), 0);
    assert_int_equal(tensor_item(loss_distill_ensemble_rows(img, txt, scale, ti, tt, ts, 2, 1, N), &b), 0);
    printf("  ensemble term %.12f, by hand %.12f\n", whole, expect);
    assert_true(fabs(whole - expect) < 1e-12);
    assert_true(fabs(a + b - expect) < 1e-12);

    // One teacher: loss_distill's distill term, value and gradients.
    tensor *one = loss_distill_ensemble_rows(img, txt, scale, ti, tt, ts, 1, 0, N);
    assert_int_equal(tensor_backward(one, NULL), 0);
    tensor *g_img = tensor_grad(img), *g_txt = tensor_grad(txt);
    tensor_zero_grad(img), tensor_zero_grad(txt);
    loss_distill_terms terms;
    assert_int_equal(loss_distill(img, txt, scale, ti[0], tt[0], ts[0], &terms), 0);
    assert_int_equal(tensor_backward(terms.distill, NULL), 0);
    assert_close(one, terms.distill, 1e-14, 0, "ensemble of one");
    assert_close(g_img, tensor_grad(img), 1e-14, 0, "ensemble of one: image gradient");
    assert_close(g_txt, tensor_grad(txt), 1e-14, 0, "ensemble of one: text gradient");
    assert_null(loss_distill_ensemble_rows(img, txt, scale, ti, tt, ts, 0, 0, N));
    assert_non_null(strstr(err_msg(), "no teacher"));
    tensor_scope_end();
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    fixture_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_matches_openclip),
        cmocka_unit_test(test_siglip_matches_openclip),
        cmocka_unit_test(test_distill_matches_openclip),
        cmocka_unit_test(test_clip_gradient_matches_finite_differences),
        cmocka_unit_test(test_siglip_gradient_matches_finite_differences),
        cmocka_unit_test(test_feature_term_matches_finite_differences),
        cmocka_unit_test(test_clip_rows_sum_to_full_loss),
        cmocka_unit_test(test_siglip_rows_sum_to_full_loss),
        cmocka_unit_test(test_distill_rows_sum_to_full_loss),
        cmocka_unit_test(test_feature_rows_sum_to_full_loss),
        cmocka_unit_test(test_bad_shapes_and_ranges_are_errors),
        cmocka_unit_test(test_fixture_reader_errors),
        cmocka_unit_test(test_ensemble_distillation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
