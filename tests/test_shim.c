// Tests the libtorch shim: error reporting without exceptions, ownership and scopes (no leaked
// handles over 100 training-like steps), host round trips, generator state, autograd basics, a
// few ops against values computed by hand, unbind, the counters and the profiler, ranks within
// rows (ties, NaN), bf16 autocast on the CPU, gradient checkpointing, peak memory, host memory
// shared with tensors, and the float32 data pointer C loops use.
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "common/error.h"
#include "shim/tensor.h"

static tensor *from_floats(const float *v, const int64_t *shape, int ndim) {
    return tensor_from_host(v, shape, ndim, TENSOR_F32, false);
}

static void test_shape_mismatch_is_an_error(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    int64_t sa[2] = {4, 3}, sb[2] = {5, 6};
    tensor *a = tensor_zeros(sa, 2, TENSOR_F32, TENSOR_CPU);
    tensor *b = tensor_zeros(sb, 2, TENSOR_F32, TENSOR_CPU);
    err_clear();
    tensor *c = tensor_matmul(a, b);
    assert_null(c);
    const char *msg = err_msg();
    assert_non_null(strstr(msg, "libtorch:"));
    assert_non_null(strstr(msg, "4x3"));
    assert_null(strchr(msg, '\n'));
    assert_true(strlen(msg) < 300);  // no backtrace
    // A failed op propagates: the chain returns NULL and keeps the first message.
    assert_null(tensor_exp(tensor_add(c, a)));
    assert_non_null(strstr(err_msg(), "4x3"));
    tensor_free(a);
    tensor_free(b);
    assert_int_equal(tensor_live_count(), live);
}

static void test_host_round_trip_and_queries(void **state) {
    (void)state;
    float v[6] = {1, 2, 3, 4, 5, 6}, out[6];
    int64_t shape[2] = {2, 3}, got[TENSOR_MAX_DIMS];
    tensor *t = from_floats(v, shape, 2);
    assert_int_equal(tensor_shape(t, got), 2);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 3);
    assert_int_equal(tensor_numel(t), 6);
    assert_int_equal(tensor_get_dtype(t), TENSOR_F32);
    assert_int_equal(tensor_to_host(t, out, sizeof out), 0);
    assert_memory_equal(v, out, sizeof v);
    assert_int_equal(tensor_to_host(t, out, 4), -1);  // wrong size is refused
    tensor *tt = tensor_transpose(t, 0, 1);            // non-contiguous view copies in C order
    assert_int_equal(tensor_to_host(tt, out, sizeof out), 0);
    float expect_t[6] = {1, 4, 2, 5, 3, 6};
    assert_memory_equal(expect_t, out, sizeof out);
    tensor_free(tt);
    tensor_free(t);
}

static void test_ops_against_hand_values(void **state) {
    (void)state;
    tensor_scope_begin();
    float xv[2] = {1, 2}, wv[4] = {1, 0, 1, 1}, bv[2] = {0.5f, -1};
    int64_t sx[2] = {1, 2}, sw[2] = {2, 2}, sb[1] = {2};
    tensor *y = tensor_linear(from_floats(xv, sx, 2), from_floats(wv, sw, 2), from_floats(bv, sb, 1));
    float yv[2];
    assert_int_equal(tensor_to_host(y, yv, sizeof yv), 0);
    assert_float_equal(yv[0], 1.5f, 1e-6);  // 1*1 + 2*0 + 0.5
    assert_float_equal(yv[1], 2.0f, 1e-6);  // 1 + 2 - 1
    float gv[3] = {-1, 0, 1}, out[3];
    int64_t s3[1] = {3};
    tensor *g = from_floats(gv, s3, 1);
    assert_int_equal(tensor_to_host(tensor_gelu(g), out, sizeof out), 0);
    assert_float_equal(out[0], -0.5 * (1 + erf(-1 / sqrt(2.0))), 1e-6);
    assert_float_equal(out[2], 0.5 * (1 + erf(1 / sqrt(2.0))), 1e-6);
    assert_int_equal(tensor_to_host(tensor_quick_gelu(g), out, sizeof out), 0);
    assert_float_equal(out[2], 1 / (1 + exp(-1.702)), 1e-6);
    assert_int_equal(tensor_to_host(tensor_softmax(g, 0), out, sizeof out), 0);
    double z = exp(-1) + 1 + exp(1);
    assert_float_equal(out[1], 1 / z, 1e-6);
    tensor_scope_end();
}

static void test_causal_attention_ignores_future(void **state) {
    (void)state;
    tensor_scope_begin();
    tensor_generator *gen = tensor_generator_new(1, TENSOR_CPU);
    int64_t s[4] = {1, 2, 5, 4};
    tensor *q = tensor_normal(s, 4, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
    tensor *k = tensor_normal(s, 4, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
    tensor *v = tensor_normal(s, 4, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
    tensor *full = tensor_attention(q, k, v, true);
    // The first 3 positions with causal masking see only the first 3 keys.
    tensor *part = tensor_attention(tensor_slice(q, 2, 0, 3), tensor_slice(k, 2, 0, 3), tensor_slice(v, 2, 0, 3), true);
    float a[24], b[24];
    assert_int_equal(tensor_to_host(tensor_contiguous(tensor_slice(full, 2, 0, 3)), a, sizeof a), 0);
    assert_int_equal(tensor_to_host(part, b, sizeof b), 0);
    for (int i = 0; i < 24; i++) assert_float_equal(a[i], b[i], 1e-5);
    tensor_generator_free(gen);
    tensor_scope_end();
}

static void test_generator_state_round_trip(void **state) {
    (void)state;
    tensor_generator *g = tensor_generator_new(42, TENSOR_CPU);
    uint8_t *saved;
    size_t n;
    assert_int_equal(tensor_generator_get_state(g, &saved, &n), 0);
    int64_t s[1] = {8};
    float a[8], b[8];
    tensor *x = tensor_normal(s, 1, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    assert_int_equal(tensor_generator_set_state(g, saved, n), 0);
    tensor *y = tensor_normal(s, 1, 0, 1, TENSOR_F32, TENSOR_CPU, g);
    tensor_to_host(x, a, sizeof a);
    tensor_to_host(y, b, sizeof b);
    assert_memory_equal(a, b, sizeof a);
    free(saved);
    tensor_free(x);
    tensor_free(y);
    tensor_generator_free(g);
}

static void test_autograd(void **state) {
    (void)state;
    float wv[2] = {3, -2};
    int64_t s[1] = {2};
    tensor *w = from_floats(wv, s, 1);
    assert_int_equal(tensor_set_requires_grad(w, true), 0);
    tensor_scope_begin();
    tensor *loss = tensor_sum(tensor_mul(w, w));  // d/dw = 2w
    assert_int_equal(tensor_backward(loss, NULL), 0);
    tensor_scope_end();
    tensor *g = tensor_grad(w);
    float gv[2];
    tensor_to_host(g, gv, sizeof gv);
    assert_float_equal(gv[0], 6, 1e-6);
    assert_float_equal(gv[1], -4, 1e-6);
    tensor_free(g);
    assert_int_equal(tensor_zero_grad(w), 0);
    assert_false(tensor_has_grad(w));
    assert_null(tensor_grad(w));
    tensor_no_grad_begin();
    tensor *nog = tensor_mul(w, w);
    assert_false(tensor_requires_grad(nog));
    tensor_no_grad_end();
    tensor_free(nog);
    tensor_free(w);
}

// 100 steps of forward, backward and an in-place update inside per-step scopes leave exactly the
// handles created outside them.
static void test_scopes_leak_nothing(void **state) {
    (void)state;
    tensor_generator *gen = tensor_generator_new(3, TENSOR_CPU);
    int64_t sw[2] = {16, 8}, sx[2] = {4, 8};
    tensor *w = tensor_normal(sw, 2, 0, 0.1, TENSOR_F32, TENSOR_CPU, gen);
    tensor_set_requires_grad(w, true);
    size_t live = tensor_live_count();
    tensor *kept = NULL;
    for (int step = 0; step < 100; step++) {
        tensor_scope_begin();
        tensor *x = tensor_normal(sx, 2, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
        tensor *h = tensor_gelu(tensor_linear(x, w, NULL));
        tensor *loss = tensor_mean(tensor_mul(h, h));
        assert_int_equal(tensor_backward(loss, NULL), 0);
        tensor *g = tensor_grad(w);
        assert_int_equal(tensor_add_(w, g, -0.01), 0);
        assert_int_equal(tensor_zero_grad(w), 0);
        if (step == 99) kept = tensor_keep(tensor_detach(loss));
        tensor_scope_end();
    }
    assert_int_equal(tensor_live_count(), live + 1);
    tensor_free(kept);
    assert_int_equal(tensor_live_count(), live);
    tensor_free(w);
    tensor_generator_free(gen);
}

// Host reads count on the CPU too (each would wait on a GPU); ops only while counting is on, one
// per top-level operator whatever it calls inside.
static void test_counters(void **state) {
    (void)state;
    int64_t shape[2] = {4, 4};
    tensor *a = tensor_ones(shape, 2, TENSOR_F32, TENSOR_CPU);
    float out[16];
    double v;
    tensor_counters c0 = tensor_counters_get();
    tensor *b = tensor_add(a, a);
    assert_int_equal(tensor_to_host(b, out, sizeof out), 0);
    assert_int_equal(tensor_item(b, &v), -1);  // not one element: still a (failed) read
    tensor_counters d = tensor_counters_sub(tensor_counters_get(), c0);
    assert_int_equal(d.ops, 0);
    assert_int_equal(d.host_reads, 2);
    assert_int_equal(d.syncs, 2);
    tensor_count_ops(true);
    c0 = tensor_counters_get();
    tensor *c = tensor_linear(b, a, a);  // addmm inside linear: one op
    tensor *e = tensor_gelu(c);
    assert_int_equal(tensor_counters_sub(tensor_counters_get(), c0).ops, 2);
    tensor_count_ops(false);
    c0 = tensor_counters_get();
    tensor *f = tensor_exp(e);
    assert_int_equal(tensor_counters_sub(tensor_counters_get(), c0).ops, 0);
    tensor_free(a), tensor_free(b), tensor_free(c), tensor_free(e), tensor_free(f);
}

// unbind gives views of the slices, refuses a wrong count, and its backward sends each slice's
// gradient to its place (the stack of the three).
static void test_unbind(void **state) {
    (void)state;
    float v[6] = {1, 2, 3, 4, 5, 6}, got[6];
    int64_t shape[2] = {2, 3};
    tensor *t = from_floats(v, shape, 2), *parts[3];
    assert_int_equal(tensor_set_requires_grad(t, true), 0);
    assert_int_equal(tensor_unbind(t, 0, parts, 3), -1);  // 2 rows, not 3
    assert_non_null(strstr(err_msg(), "3 slices asked for, the tensor has 2 along dim 0"));
    tensor_scope_begin();
    assert_int_equal(tensor_unbind(t, 1, parts, 3), 0);
    assert_int_equal(tensor_to_host(parts[2], got, 2 * sizeof *got), 0);
    assert_float_equal(got[0], 3, 0), assert_float_equal(got[1], 6, 0);
    const float weights[3] = {1, 10, 100};
    tensor *loss = tensor_mul_scalar(tensor_sum(parts[0]), weights[0]);
    for (int i = 1; i < 3; i++) loss = tensor_add(loss, tensor_mul_scalar(tensor_sum(parts[i]), weights[i]));
    assert_int_equal(tensor_backward(loss, NULL), 0);
    assert_int_equal(tensor_to_host(tensor_grad(t), got, sizeof got), 0);
    for (int i = 0; i < 6; i++) assert_float_equal(got[i], weights[i % 3], 0);
    tensor_scope_end();
    tensor_free(t);
}

// The profiler runs on every build; kernels are counted only where libtorch has CUDA and a GPU.
// One profile at a time, and an end needs a beginning.
static void test_profile(void **state) {
    (void)state;
    int64_t shape[2] = {8, 8};
    tensor_profile p;
    err_clear();
    assert_int_equal(tensor_profile_end(&p), -1);
    assert_non_null(strstr(err_msg(), "no profile is running"));
    assert_int_equal(tensor_profile_begin(), 0);
    assert_int_equal(tensor_profile_begin(), -1);
    assert_non_null(strstr(err_msg(), "already running"));
    tensor_scope_begin();
    tensor *a = tensor_ones(shape, 2, TENSOR_F32, TENSOR_CPU);
    assert_non_null(tensor_exp(tensor_matmul(a, a)));
    tensor_scope_end();
    assert_int_equal(tensor_profile_end(&p), 0);
    assert_true(p.events >= 3);  // ones, matmul, exp (and what they call)
    int64_t want = tensor_profile_has_kernels() ? 0 : -1;  // all of it ran on the CPU
    assert_int_equal(p.kernels, want);
    assert_int_equal(p.attention, want);
    assert_int_equal(p.copies, want);
}

static void test_rank_in_rows(void **state) {
    (void)state;
    float scores[2][5] = {{0.5f, 0.9f, 0.5f, NAN, 0.9f}, {NAN, 1.0f, NAN, -INFINITY, 2.0f}};
    int64_t rows[7] = {0, 0, 0, 0, 0, 1, 1}, cols[7] = {0, 1, 2, 3, 4, 2, 3};
    int64_t want[7] = {3, 1, 4, 5, 2, 5, 3}, got[7], shape[2] = {2, 5}, k = 7;
    tensor_scope_begin();
    tensor *r = tensor_rank_in_rows(tensor_from_host(scores, shape, 2, TENSOR_F32, false),
                                    tensor_from_host(rows, &k, 1, TENSOR_I64, false),
                                    tensor_from_host(cols, &k, 1, TENSOR_I64, false));
    assert_int_equal(tensor_to_host(r, got, sizeof got), 0);
    assert_memory_equal(got, want, sizeof want);
    tensor_scope_end();
}

// On the CPU, autocast runs matrix products in bf16 and restores the previous state at the end.
static void test_cpu_autocast_bf16(void **state) {
    (void)state;
    int64_t shape[2] = {8, 8};
    tensor_scope_begin();
    tensor *a = tensor_ones(shape, 2, TENSOR_F32, TENSOR_CPU);
    assert_int_equal(tensor_autocast_begin(TENSOR_BF16), 0);
    tensor *inside = tensor_matmul(a, a);
    assert_int_equal(tensor_autocast_begin(TENSOR_BF16), 0);  // nested
    tensor_autocast_end();
    tensor *still = tensor_matmul(a, a);
    tensor_autocast_end();
    tensor *after = tensor_matmul(a, a);
    assert_int_equal(tensor_get_dtype(inside), TENSOR_BF16);
    assert_int_equal(tensor_get_dtype(still), TENSOR_BF16);
    assert_int_equal(tensor_get_dtype(after), TENSOR_F32);
    assert_int_equal(tensor_autocast_begin(TENSOR_I64), -1);
    assert_true(tensor_bf16_supported(TENSOR_CPU));
    tensor_scope_end();
}

// A two-layer block for tensor_checkpoint: gelu(x w^T + b) w^T. calls counts its runs; fail_from
// makes the runs from that one on fail (0: never).
typedef struct {
    const tensor *w, *b;
    int *calls, fail_from;
    tensor_dtype *dtypes;  // the dtype of each run's result
} ckpt_block;

static tensor *ckpt_block_run(const void *ctx, const tensor *x) {
    const ckpt_block *c = ctx;
    if (++*c->calls == c->fail_from) return err_set("block run %d failed", *c->calls), NULL;
    tensor *y = tensor_linear(tensor_gelu(tensor_linear(x, c->w, c->b)), c->w, NULL);
    if (y && *c->calls <= 4) c->dtypes[*c->calls - 1] = tensor_get_dtype(y);
    return y;
}

// The gradients of w, b and x through two blocks, checkpointed or not, under autocast or not:
// values into g (w's 64, b's 8, x's 32); each block run's result dtype into dtypes.
static int ckpt_gradients(bool checkpoint, bool autocast, int fail_from, int *calls, float g[104],
                          tensor_dtype dtypes[4]) {
    tensor_generator *gen = tensor_generator_new(5, TENSOR_CPU);
    int64_t sw[2] = {8, 8}, sb[1] = {8}, sx[2] = {4, 8};
    tensor *w = tensor_normal(sw, 2, 0, 0.3, TENSOR_F32, TENSOR_CPU, gen);
    tensor *b = tensor_normal(sb, 1, 0, 0.3, TENSOR_F32, TENSOR_CPU, gen);
    tensor *x = tensor_normal(sx, 2, 0, 1, TENSOR_F32, TENSOR_CPU, gen);
    tensor *leaves[3] = {w, b, x};
    for (int i = 0; i < 3; i++) tensor_set_requires_grad(leaves[i], true);
    ckpt_block c = {w, b, calls, fail_from, dtypes};
    tensor_scope_begin();
    if (autocast) tensor_autocast_begin(TENSOR_BF16);
    const tensor *h = x;
    for (int layer = 0; layer < 2; layer++)
        h = checkpoint ? tensor_checkpoint(ckpt_block_run, &c, sizeof c, h) : ckpt_block_run(&c, h);
    tensor *loss = tensor_sum(tensor_mul(h, h));
    if (autocast) tensor_autocast_end();
    int rc = tensor_backward(loss, NULL);
    tensor_scope_end();
    size_t at = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        size_t n = (size_t)tensor_numel(leaves[i]);
        tensor *grad = tensor_grad(leaves[i]);
        rc = tensor_to_host(grad, g + at, n * sizeof(float));
        tensor_free(grad);
        at += n;
    }
    for (int i = 0; i < 3; i++) tensor_free(leaves[i]);
    tensor_generator_free(gen);
    return rc;
}

// tensor_checkpoint gives the gradients of the plain graph within float32 noise (w, used twice by
// each block, has its uses summed in another order), each block run twice; under bf16 autocast
// the recompute runs in bf16 too (within bf16 rounding: the plain graph sums w's four bf16
// gradients in bf16 before casting, the recompute each block's); without grad mode it runs once.
// A block that fails in the forward or in the recompute fails the call or the backward with its
// message. Nothing leaks.
static void test_checkpoint(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    float plain[104], ckpt[104];
    tensor_dtype dtypes[4];
    for (int autocast = 0; autocast < 2; autocast++) {
        int calls = 0;
        assert_int_equal(ckpt_gradients(false, autocast, 0, &calls, plain, dtypes), 0);
        assert_int_equal(calls, 2);
        calls = 0;
        assert_int_equal(ckpt_gradients(true, autocast, 0, &calls, ckpt, dtypes), 0);
        assert_int_equal(calls, 4);
        for (int i = 0; i < 4; i++) assert_int_equal(dtypes[i], autocast ? TENSOR_BF16 : TENSOR_F32);
        double worst = 0;
        for (int i = 0; i < 104; i++) worst = fmax(worst, fabs(plain[i] - ckpt[i]) / (fabs(plain[i]) + 1e-3));
        printf("  autocast %d: gradients within %.3g (relative)\n", autocast, worst);
        assert_true(worst < (autocast ? 0.05 : 1e-5));
    }
    int calls = 0;
    assert_int_equal(ckpt_gradients(true, false, 1, &calls, ckpt, dtypes), -1);  // the first forward
    assert_non_null(strstr(err_msg(), "block run 1 failed"));
    calls = 0;
    assert_int_equal(ckpt_gradients(true, false, 3, &calls, ckpt, dtypes), -1);  // the first recompute
    assert_non_null(strstr(err_msg(), "block run 3 failed"));
    assert_int_equal(tensor_live_count(), live);
    // Without grad mode the block runs once and its result is an ordinary handle of the caller's scope.
    int64_t s[2] = {8, 8};
    tensor *w = tensor_ones(s, 2, TENSOR_F32, TENSOR_CPU);
    ckpt_block c = {w, NULL, &calls, 0, dtypes};
    calls = 0;
    tensor_scope_begin();
    tensor_no_grad_begin();
    tensor *y = tensor_checkpoint(ckpt_block_run, &c, sizeof c, w);
    tensor_no_grad_end();
    assert_non_null(y);
    assert_int_equal(calls, 1);
    tensor_scope_end();
    tensor_free(w);
    assert_int_equal(tensor_live_count(), live);
}

// The CPU's peak is the process's resident peak: a reset brings it down to what is resident now,
// and touching 64 MB more raises it by about that much.
static void test_memory_peak(void **state) {
    (void)state;
    assert_int_equal(tensor_memory_peak_reset(TENSOR_CPU), 0);
    int64_t before = tensor_memory_peak(TENSOR_CPU);
    assert_true(before > 0);
    size_t n = 64 << 20;  // mapped directly: a sanitizer's malloc would keep freed blocks resident
    char *block = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(block != MAP_FAILED);
    memset(block, 1, n);
    int64_t peak = tensor_memory_peak(TENSOR_CPU);
    munmap(block, n);
    assert_true(peak >= before + (int64_t)(n * 9 / 10));
    assert_int_equal(tensor_memory_peak_reset(TENSOR_CPU), 0);
    assert_true(tensor_memory_peak(TENSOR_CPU) < peak - (int64_t)(n / 2));
}

// tensor_data_f32 gives the elements in place, and only for a contiguous float32 CPU tensor.
static void test_data_f32(void **state) {
    (void)state;
    int64_t shape[2] = {2, 3};
    tensor_scope_begin();
    tensor *t = tensor_arange(6, TENSOR_F32, TENSOR_CPU);
    float *data = tensor_data_f32(t);
    assert_non_null(data);
    assert_true(data[5] == 5.0f);
    data[0] = 42;
    double v;
    assert_int_equal(tensor_item(tensor_select(t, 0, 0), &v), 0);
    assert_true(v == 42);
    assert_null(tensor_data_f32(tensor_transpose(tensor_reshape(t, shape, 2), 0, 1)));
    assert_non_null(strstr(err_msg(), "not contiguous"));
    assert_null(tensor_data_f32(tensor_zeros(shape, 2, TENSOR_F64, TENSOR_CPU)));
    assert_non_null(strstr(err_msg(), "float32"));
    assert_null(tensor_data_f32(NULL));
    tensor_scope_end();
}

static void test_host_memory(void **state) {
    (void)state;
    float *p = tensor_host_alloc(6 * sizeof(float));
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    int64_t shape[2] = {2, 3};
    tensor *t = tensor_from_host_memory(p, shape, 2, TENSOR_F32);
    for (int i = 0; i < 6; i++) p[i] = (float)i;
    double v;
    tensor_scope_begin();
    assert_int_equal(tensor_item(tensor_sum(t), &v), 0);  // sees the memory: no copy was made
    tensor_scope_end();
    assert_float_equal(v, 15, 0);
    tensor_free(t);
    tensor_host_free(p);
    tensor_host_free(NULL);
}

int main(void) {
    tensor_set_threads(0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_mismatch_is_an_error),
        cmocka_unit_test(test_host_round_trip_and_queries),
        cmocka_unit_test(test_ops_against_hand_values),
        cmocka_unit_test(test_causal_attention_ignores_future),
        cmocka_unit_test(test_generator_state_round_trip),
        cmocka_unit_test(test_autograd),
        cmocka_unit_test(test_scopes_leak_nothing),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_unbind),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_rank_in_rows),
        cmocka_unit_test(test_cpu_autocast_bf16),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_memory_peak),
        cmocka_unit_test(test_data_f32),
        cmocka_unit_test(test_host_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
