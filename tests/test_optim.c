// Tests optim/: AdamW over flat parameter buffers against its closed form computed here in doubles
// (bias corrections, eps after the square root, decoupled decay through the mask), the path each
// device and dtype takes and libtorch's fused kernel against the host loop (where libtorch has it
// on the CPU), a range's optimizer (ZeRO's shards) against the whole one bitwise, OpenCLIP's
// weight-decay rule by name and rank, frozen parameters, state
// export/import continuing identically, gradient clipping across lists, the logit-scale clamp, and
// the learning-rate schedules at chosen steps.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/rng.h"
#include "optim/adamw.h"
#include "optim/grad.h"
#include "optim/schedule.h"

// Appends a parameter filled from doubles and converted to dtype; pack the list before use.
static void add_param(param_list *l, const char *name, const double *values, const int64_t *shape, int ndim,
                      tensor_dtype dtype) {
    tensor *host = tensor_from_host(values, shape, ndim, TENSOR_F64, false);
    param_list_add(l, name, tensor_to_dtype(host, dtype));
    tensor_free(host);
}

static void pack(param_list *l) { assert_int_equal(param_list_pack(l, TENSOR_CPU), 0); }

// Makes the gradient of p (a packed trainable parameter, its gradient a view of the list's
// buffer) exactly `grad`.
static void set_grad(tensor *p, const double *grad) {
    tensor_scope_begin();
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(p, shape);
    tensor *g = tensor_to_dtype(tensor_from_host(grad, shape, ndim, TENSOR_F64, false), tensor_get_dtype(p));
    assert_int_equal(tensor_copy_(tensor_grad(p), g), 0);
    tensor_scope_end();
}

static tensor *value(param_list *l, int i) { return l->items[i].value; }

static void to_doubles(const tensor *t, double *out) {
    tensor *d = tensor_to_dtype(t, TENSOR_F64);
    assert_int_equal(tensor_to_host(d, out, (size_t)tensor_numel(d) * sizeof *out), 0);
    tensor_free(d);
}

// ---- AdamW -------------------------------------------------------------------------------------

enum { W_ROWS = 2, W_COLS = 3, W_N = W_ROWS * W_COLS, B_N = 3, STEPS = 4 };

// The expected AdamW trajectory of one parameter in doubles, PyTorch's formula.
typedef struct {
    double p[W_N], m[W_N], v[W_N];
} closed_form;

static void closed_form_step(closed_form *s, int n, const double *g, int step, adamw_config c, bool decays) {
    double bc1 = 1 - pow(c.beta1, step), bc2 = 1 - pow(c.beta2, step);
    for (int j = 0; j < n; j++) {
        if (decays) s->p[j] *= 1 - c.lr * c.weight_decay;
        s->m[j] = c.beta1 * s->m[j] + (1 - c.beta1) * g[j];
        s->v[j] = c.beta2 * s->v[j] + (1 - c.beta2) * g[j] * g[j];
        double denom = sqrt(s->v[j]) / sqrt(bc2) + c.eps;
        s->p[j] -= c.lr / bc1 * s->m[j] / denom;
    }
}

// Gradients spanning eps-sized to O(1) values, changing with the step.
static void step_grads(int step, double *gw, double *gb) {
    static const double base[W_N] = {1e-6, -3e-6, 2e-2, -0.5, 7e-7, 1.0};
    for (int j = 0; j < W_N; j++) gw[j] = base[j] * (1 + 0.5 * step);
    for (int j = 0; j < B_N; j++) gb[j] = (j - 1) * 1e-3 + 2e-6 * step;
}

static void assert_doubles_close(const double *got, const double *want, int n, double atol, double rtol) {
    for (int j = 0; j < n; j++)
        if (!(fabs(got[j] - want[j]) <= atol + rtol * fabs(want[j])))
            fail_msg("[%d]: got %.17g, expected %.17g", j, got[j], want[j]);
}

// Four steps of a decayed matrix and an excluded bias in dtype against the closed form.
static void assert_adamw_closed_form(tensor_dtype dtype, double atol, double rtol) {
    size_t live = tensor_live_count();
    closed_form w = {.p = {0.3, -0.2, 0.1, 0.5, -0.7, 0.05}}, b = {.p = {0.01, -0.02, 0.03}};
    int64_t ws[2] = {W_ROWS, W_COLS}, bs[1] = {B_N};
    param_list params;
    param_list_init(&params);
    add_param(&params, "visual.proj", w.p, ws, 2, dtype);
    add_param(&params, "visual.ln_post.bias", b.p, bs, 1, dtype);
    pack(&params);
    param_list *lists[1] = {&params};
    adamw_config c = adamw_config_default();
    c.lr = 1e-2;
    adamw *opt = adamw_init(lists, 1, c);
    assert_non_null(opt);
    for (int step = 1; step <= STEPS; step++) {
        double gw[W_N], gb[B_N], got[W_N];
        step_grads(step, gw, gb);
        set_grad(value(&params, 0), gw);
        set_grad(value(&params, 1), gb);
        assert_int_equal(adamw_step(opt), 0);
        closed_form_step(&w, W_N, gw, step, c, true);
        closed_form_step(&b, B_N, gb, step, c, false);
        to_doubles(value(&params, 0), got);
        assert_doubles_close(got, w.p, W_N, atol, rtol);
        to_doubles(value(&params, 1), got);
        assert_doubles_close(got, b.p, B_N, atol, rtol);
    }
    adamw_free(opt);
    param_list_free(&params);
    assert_int_equal(tensor_live_count(), live);
}

// float64 runs the whole-buffer ops (shim/tensor.h: tensor_adamw_), float32 the host loop.
static void test_adamw_matches_closed_form(void **state) {
    (void)state;
    assert_adamw_closed_form(TENSOR_F64, 1e-15, 1e-12);
    assert_adamw_closed_form(TENSOR_F32, 1e-6, 1e-6);
}

// The host loop (float32, here over enough elements to run on several threads) and the
// whole-buffer ops (float64, bf16) take the same four steps (of 1e-2 each, from values below 0.1):
// within float32's rounding for float32, bf16's for bf16.
static void test_adamw_paths_agree(void **state) {
    (void)state;
    enum { R = 200, C = 210, N = R * C + C };
    static const tensor_dtype dtypes[3] = {TENSOR_F64, TENSOR_F32, TENSOR_BF16};
    static double init[N], grad[N], got[3][N];
    for (int j = 0; j < N; j++) init[j] = 0.1 * sin(j * 0.37), grad[j] = cos(j * 0.11) * pow(10, -(j % 7));
    int64_t ws[2] = {R, C}, bs[1] = {C};
    param_list lists[3];
    adamw *opts[3];
    for (int k = 0; k < 3; k++) {
        param_list_init(&lists[k]);
        add_param(&lists[k], "visual.proj", init, ws, 2, dtypes[k]);
        add_param(&lists[k], "visual.ln_post.bias", init + R * C, bs, 1, dtypes[k]);
        pack(&lists[k]);
        param_list *l = &lists[k];
        assert_non_null(opts[k] = adamw_init(&l, 1, adamw_config_default()));
        adamw_set_lr(opts[k], 1e-2);
    }
    for (int step = 1; step <= STEPS; step++)
        for (int k = 0; k < 3; k++) {
            set_grad(value(&lists[k], 0), grad);
            set_grad(value(&lists[k], 1), grad + R * C);
            assert_int_equal(adamw_step(opts[k]), 0);
        }
    for (int k = 0; k < 3; k++) {
        to_doubles(value(&lists[k], 0), got[k]);
        to_doubles(value(&lists[k], 1), got[k] + R * C);
        adamw_free(opts[k]);
        param_list_free(&lists[k]);
    }
    assert_doubles_close(got[1], got[0], N, 1e-6, 1e-6);
    for (int j = 0; j < N; j++)
        if (!(fabs(got[2][j] - got[0][j]) <= 3e-3))
            fail_msg("bf16 [%d]: got %.9g, float64 %.9g", j, got[2][j], got[0][j]);
}

// ---- paths ---------------------------------------------------------------------------------------

static int64_t state_step(const adamw *opt, int param_index);

// Whether this libtorch is at least major.minor (its version reads "1.13.0", "2.11.0+cu128").
static bool torch_at_least(int major, int minor) {
    int got_major = 0, got_minor = 0;
    sscanf(tensor_torch_version(), "%d.%d", &got_major, &got_minor);
    return got_major > major || (got_major == major && got_minor >= minor);
}

// A list of a decayed matrix, a frozen matrix, an excluded bias and a decayed projection, packed
// on the CPU in dtype (the frozen one sits behind the trainable ones in the buffer).
static void decay_mix_list(param_list *l, const double *init, tensor_dtype dtype) {
    enum { R = 40, C = 30 };
    int64_t ws[2] = {R, C}, bs[1] = {C};
    param_list_init(l);
    add_param(l, "visual.proj", init, ws, 2, dtype);
    add_param(l, "frozen.weight", init + R * C, ws, 2, dtype);
    add_param(l, "visual.ln_post.bias", init + 2 * R * C, bs, 1, dtype);
    add_param(l, "text_projection", init + 2 * R * C + C, ws, 2, dtype);
    assert_int_equal(param_set_frozen(&l->items[1], true), 0);
    pack(l);
}

// Four steps of both lists' optimizers with the same gradients.
static void step_both(param_list lists[2], adamw *opts[2], const double *grad) {
    for (int step = 1; step <= STEPS; step++)
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < lists[k].n; i++)
                if (!lists[k].items[i].frozen) set_grad(value(&lists[k], i), grad + 1200 * i);
            assert_int_equal(adamw_step(opts[k]), 0);
        }
}

// The path of each device and dtype: the host loop for float32 on the CPU, libtorch's fused kernel
// on CUDA where libtorch has it (2.0), the whole-buffer ops elsewhere. The choice reads the
// device's kind and libtorch's version only, so it is checked here without a GPU.
static void test_adamw_path_choice(void **state) {
    (void)state;
    tensor_device cuda = {TENSOR_DEVICE_CUDA, 0};
    assert_int_equal(tensor_fused_adamw_available(cuda), torch_at_least(2, 0));
    assert_int_equal(tensor_fused_adamw_available(TENSOR_CPU), torch_at_least(2, 4));
    adamw_path on_cuda = torch_at_least(2, 0) ? ADAMW_PATH_FUSED : ADAMW_PATH_BUFFER_OPS;
    assert_int_equal(adamw_path_for(cuda, TENSOR_F32), on_cuda);
    assert_int_equal(adamw_path_for(cuda, TENSOR_BF16), on_cuda);
    assert_int_equal(adamw_path_for(TENSOR_CPU, TENSOR_F32), ADAMW_PATH_HOST_LOOP);
    assert_int_equal(adamw_path_for(TENSOR_CPU, TENSOR_BF16), ADAMW_PATH_BUFFER_OPS);
    assert_int_equal(adamw_path_for(TENSOR_CPU, TENSOR_F64), ADAMW_PATH_BUFFER_OPS);
    assert_string_equal(adamw_path_name(ADAMW_PATH_FUSED), "fused");
    static double init[2 * 1200 + 30 + 1200];
    param_list l;
    decay_mix_list(&l, init, TENSOR_BF16);
    param_list *lists[1] = {&l};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    assert_int_equal(adamw_get_path(opt), ADAMW_PATH_BUFFER_OPS);
    adamw_free(opt);
    err_clear();
    assert_null(adamw_init_path(lists, 1, adamw_config_default(), ADAMW_PATH_HOST_LOOP));
    assert_non_null(strstr(err_msg(), "the host loop updates float32 CPU parameters, not BF16 ones"));
    param_list_free(&l);
}

// Where libtorch has its fused AdamW on the CPU (2.4 on: the GPU machine's libtorch), that path
// takes the same four steps as the host loop, decay by parameter and a frozen parameter included,
// within float32's rounding, and counts the same step. Elsewhere asking for it fails, naming the
// libtorch.
static void test_fused_adamw_agrees_with_host_loop(void **state) {
    (void)state;
    enum { N = 2 * 1200 + 30 + 1200 };
    static double init[N], grad[4 * 1200], got[2][N];
    for (int j = 0; j < N; j++) init[j] = 0.1 * sin(j * 0.37);
    for (int j = 0; j < 4 * 1200; j++) grad[j] = cos(j * 0.11) * pow(10, -(j % 7));
    param_list lists[2];
    adamw *opts[2];
    for (int k = 0; k < 2; k++) decay_mix_list(&lists[k], init, TENSOR_F32);
    param_list *host = &lists[0], *fused = &lists[1];
    opts[0] = adamw_init(&host, 1, adamw_config_default());
    err_clear();
    opts[1] = adamw_init_path(&fused, 1, adamw_config_default(), ADAMW_PATH_FUSED);
    if (!tensor_fused_adamw_available(TENSOR_CPU)) {
        assert_null(opts[1]);
        assert_non_null(strstr(err_msg(), "fused AdamW needs libtorch >= 2.4 on the CPU"));
        assert_non_null(strstr(err_msg(), tensor_torch_version()));
        printf("  libtorch %s has no fused AdamW on the CPU: its refusal checked\n", tensor_torch_version());
    } else {
        assert_non_null(opts[1]);
        assert_int_equal(adamw_get_path(opts[1]), ADAMW_PATH_FUSED);
        for (int k = 0; k < 2; k++) adamw_set_lr(opts[k], 1e-2);
        step_both(lists, opts, grad);
        for (int k = 0; k < 2; k++) {
            assert_int_equal(state_step(opts[k], 0), STEPS);
            to_doubles(lists[k].data, got[k]);
        }
        assert_doubles_close(got[1], got[0], N, 1e-6, 1e-6);
    }
    for (int k = 0; k < 2; k++) {
        adamw_free(opts[k]);
        param_list_free(&lists[k]);
    }
}

// ZeRO's sliced AdamW (adamw_init_range): 3 optimizers owning the thirds [0, 810), [810, 1620),
// [1620, 2430) of the 2430 trainable elements (the second cuts the bias and both matrices' decay
// boundary) update those elements exactly as the whole optimizer does, bitwise, on the host loop
// and the whole-buffer ops (the fused kernel, where libtorch has it on the CPU, within float32's
// last bits), and leave the others alone; their moments are the whole one's slices,
// a third of its bytes each. The whole state, set entry by entry into fresh shards (a checkpoint
// load), continues identically; a sharded optimizer has no named state to read.
static void check_sliced_adamw(adamw_path path) {
    enum { N = 2 * 1200 + 30 + 1200, T = 2430, SHARDS = 3 };
    bool exact = path != ADAMW_PATH_FUSED;  // its vector loops may round a slice's edges otherwise
    static double init[N], grad[4 * 1200], before[N], whole[N], part[N], m_whole[T], m_part[T];
    for (int j = 0; j < N; j++) init[j] = 0.1 * sin(j * 0.37);
    for (int j = 0; j < 4 * 1200; j++) grad[j] = cos(j * 0.11) * pow(10, -(j % 7));
    param_list lists[2];
    adamw *opts[2];
    decay_mix_list(&lists[0], init, TENSOR_F32);
    param_list *full = &lists[0], *sliced = &lists[1];
    to_doubles(lists[0].data, before);
    opts[0] = adamw_init_path(&full, 1, adamw_config_default(), path);
    assert_non_null(opts[0]);
    for (int r = 0; r < SHARDS; r++) {
        int64_t lo = r * T / SHARDS, hi = (r + 1) * T / SHARDS;
        decay_mix_list(&lists[1], init, TENSOR_F32);
        opts[1] = adamw_init_range(&sliced, 1, adamw_config_default(), path, &lo, &hi);
        assert_non_null(opts[1]);
        assert_int_equal(adamw_get_path(opts[1]), path);
        assert_int_equal(adamw_state_bytes(opts[1]) * SHARDS, adamw_state_bytes(opts[0]));
        if (r == 0) {  // the whole optimizer takes its steps beside the first shard's
            step_both(lists, opts, grad);
            to_doubles(adamw_get_shard(opts[0], 0).exp_avg_sq, m_whole);
        } else {
            for (int step = 1; step <= STEPS; step++) {
                for (int i = 0; i < lists[1].n; i++)
                    if (!lists[1].items[i].frozen) set_grad(value(&lists[1], i), grad + 1200 * i);
                assert_int_equal(adamw_step(opts[1]), 0);
            }
        }
        to_doubles(lists[0].data, whole);
        to_doubles(lists[1].data, part);
        for (int j = 0; j < N; j++) {
            double want = j >= lo && j < hi ? whole[j] : before[j];
            if (exact ? part[j] != want : !(fabs(part[j] - want) <= 1e-7 + 1e-6 * fabs(want)))
                fail_msg("%s, shard %d: element %d is %.9g, expected %.9g", adamw_path_name(path), r, j, part[j], want);
        }
        adamw_shard s = adamw_get_shard(opts[1], 0);
        assert_true(s.lo == lo && s.hi == hi && tensor_numel(s.exp_avg) == hi - lo);
        to_doubles(s.exp_avg_sq, m_part);
        if (exact) assert_memory_equal(m_part, m_whole + lo, (size_t)(hi - lo) * sizeof *m_part);
        else assert_doubles_close(m_part, m_whole + lo, (int)(hi - lo), 1e-12, 1e-5);
        const char *name;
        tensor *v;
        err_clear();
        assert_int_equal(adamw_state_get(opts[1], 1, &name, &v), -1);
        assert_non_null(strstr(err_msg(), "sharded"));
        adamw_free(opts[1]);
        param_list_free(&lists[1]);
    }
    // The whole state into fresh shards of a copy of the whole optimizer's weights: one more step each.
    decay_mix_list(&lists[1], init, TENSOR_F32);
    assert_int_equal(tensor_copy_(lists[1].data, lists[0].data), 0);
    int64_t lo = 700, hi = 1500;
    opts[1] = adamw_init_range(&sliced, 1, adamw_config_default(), path, &lo, &hi);
    for (int i = 0; i < adamw_state_count(opts[0]); i++) {
        const char *name;
        tensor *v;
        assert_int_equal(adamw_state_get(opts[0], i, &name, &v), 0);
        assert_int_equal(adamw_state_set(opts[1], name, v), 0);
        tensor_free(v);
    }
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < lists[k].n; i++)
            if (!lists[k].items[i].frozen) set_grad(value(&lists[k], i), grad + 1200 * (3 - i));
        assert_int_equal(adamw_step(opts[k]), 0);
    }
    to_doubles(lists[0].data, whole);
    to_doubles(lists[1].data, part);
    if (exact) assert_memory_equal(part + lo, whole + lo, (size_t)(hi - lo) * sizeof *part);
    else assert_doubles_close(part + lo, whole + lo, (int)(hi - lo), 1e-7, 1e-6);
    for (int k = 0; k < 2; k++) {
        adamw_free(opts[k]);
        param_list_free(&lists[k]);
    }
}

static void test_sliced_adamw_equals_whole(void **state) {
    (void)state;
    check_sliced_adamw(ADAMW_PATH_HOST_LOOP);
    check_sliced_adamw(ADAMW_PATH_BUFFER_OPS);
    if (tensor_fused_adamw_available(TENSOR_CPU)) check_sliced_adamw(ADAMW_PATH_FUSED);  // libtorch >= 2.4
    static double init[2 * 1200 + 30 + 1200];
    param_list l;
    decay_mix_list(&l, init, TENSOR_F32);
    param_list *lists[1] = {&l};
    int64_t lo = 2430, hi = 2430;  // an empty shard (a rank past a short list's end): holds and does nothing
    const adamw_path paths[2] = {ADAMW_PATH_HOST_LOOP, ADAMW_PATH_BUFFER_OPS};
    for (int i = 0; i < 2; i++) {
        adamw *empty = adamw_init_range(lists, 1, adamw_config_default(), paths[i], &lo, &hi);
        assert_non_null(empty);
        assert_int_equal(adamw_state_bytes(empty), 0);
        assert_int_equal(adamw_step(empty), 0);
        adamw_free(empty);
    }
    lo = 10, hi = 2431;
    err_clear();
    assert_null(adamw_init_range(lists, 1, adamw_config_default(), ADAMW_PATH_AUTO, &lo, &hi));
    assert_non_null(strstr(err_msg(), "range [10, 2431) outside the 2430 trainable elements"));
    param_list_free(&l);
}

static void test_adamw_defaults_are_openclip(void **state) {
    (void)state;
    adamw_config c = adamw_config_default();
    assert_true(c.lr == 5e-4 && c.beta1 == 0.9 && c.beta2 == 0.98 && c.eps == 1e-6 && c.weight_decay == 0.2);
}

static void test_weight_decay_rules(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int ndim;
        bool decays;
    } cases[] = {
        {"visual.transformer.resblocks.0.attn.in_proj_weight", 2, true},
        {"visual.transformer.resblocks.0.attn.in_proj_bias", 1, false},
        {"visual.conv1.weight", 4, true},
        {"token_embedding.weight", 2, true},
        {"text_projection", 2, true},
        {"visual.proj", 2, true},
        {"visual.ln_pre.weight", 1, false},
        {"transformer.resblocks.1.ln_2.weight", 2, false},  // by name even at rank 2
        {"visual.trunk.bn1.weight", 2, false},
        {"transformer.resblocks.0.mlp.c_fc.bias", 2, false},
        {"positional_embedding", 2, true},  // OpenCLIP's rule: 2-D and no excluded word
        {"visual.positional_embedding", 2, true},
        {"visual.class_embedding", 1, false},
        {"logit_scale", 0, false},
        {"logit_bias", 2, false},
        {"some.matrix", 1, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (adamw_param_decays(cases[i].name, cases[i].ndim) != cases[i].decays)
            fail_msg("%s (ndim %d): decay should be %d", cases[i].name, cases[i].ndim, cases[i].decays);
}

// With zero gradients the moments stay zero, so a step only applies the decoupled decay.
static void test_zero_gradient_step_applies_only_decay(void **state) {
    (void)state;
    double init[4] = {1, -2, 3, 0.5}, zero[4] = {0}, got[4];
    int64_t s2[2] = {2, 2}, s1[1] = {4};
    param_list params;
    param_list_init(&params);
    add_param(&params, "visual.proj", init, s2, 2, TENSOR_F32);
    add_param(&params, "visual.class_embedding", init, s1, 1, TENSOR_F32);
    add_param(&params, "ln_final.weight", init, s1, 1, TENSOR_F32);
    add_param(&params, "positional_embedding", init, s2, 2, TENSOR_F32);
    pack(&params);
    param_list *lists[1] = {&params};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    adamw_set_lr(opt, 0.1);
    for (int i = 0; i < 4; i++) set_grad(value(&params, i), zero);
    assert_int_equal(adamw_step(opt), 0);
    for (int i = 0; i < 4; i++) {
        to_doubles(value(&params, i), got);
        double factor = i == 0 || i == 3 ? 1 - 0.1 * 0.2 : 1.0;
        for (int j = 0; j < 4; j++) assert_float_equal(got[j], (float)(init[j] * factor), 1e-7);
    }
    adamw_free(opt);
    param_list_free(&params);
}

static int64_t state_step(const adamw *opt, int param_index) {
    const char *name;
    tensor *value;
    double step;
    assert_int_equal(adamw_state_get(opt, param_index * 3, &name, &value), 0);
    assert_non_null(strstr(name, ".step"));
    assert_int_equal(tensor_item(value, &step), 0);
    tensor_free(value);
    return (int64_t)step;
}

// Frozen parameters get no state and stay as they are, wherever they sit in the list; the others
// share one step count.
static void test_frozen_params_are_skipped(void **state) {
    (void)state;
    double init[4] = {1, 2, 3, 4}, grad[4] = {0.1, 0.2, 0.3, 0.4}, got[4];
    int64_t s2[2] = {2, 2};
    param_list params;
    param_list_init(&params);
    add_param(&params, "a.weight", init, s2, 2, TENSOR_F32);
    add_param(&params, "frozen.weight", init, s2, 2, TENSOR_F32);
    add_param(&params, "c.weight", init, s2, 2, TENSOR_F32);
    param_set_frozen(&params.items[1], true);
    pack(&params);
    assert_int_equal(params.n_trainable, 8);
    param_list *lists[1] = {&params};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    assert_int_equal(adamw_state_count(opt), 6);  // a and c only
    const char *name;
    tensor *v;
    assert_int_equal(adamw_state_get(opt, 4, &name, &v), 0);
    assert_string_equal(name, "optimizer.c.weight.exp_avg");
    tensor_free(v);
    assert_int_equal(adamw_state_get(opt, 6, &name, &v), -1);
    set_grad(value(&params, 0), grad);
    set_grad(value(&params, 2), grad);
    assert_int_equal(adamw_step(opt), 0);
    assert_int_equal(state_step(opt, 0), 1);
    assert_int_equal(state_step(opt, 1), 1);
    to_doubles(value(&params, 1), got);
    assert_memory_equal(got, init, sizeof init);
    for (int i = 0; i < 3; i += 2) {
        to_doubles(value(&params, i), got);
        assert_true(got[0] < init[0]);
    }
    adamw_free(opt);
    param_list_free(&params);
}

// ---- state export and import -------------------------------------------------------------------

// The entries carry the whole parameter name, however long.
static void test_state_names_of_long_parameters(void **state) {
    (void)state;
    char name[241], want[300];
    memset(name, 'p', 240);
    name[240] = '\0';
    double init[2] = {1, 2};
    int64_t s1[1] = {2};
    param_list params;
    param_list_init(&params);
    add_param(&params, name, init, s1, 1, TENSOR_F32);
    pack(&params);
    param_list *lists[1] = {&params};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    const char *got;
    tensor *v;
    assert_int_equal(adamw_state_get(opt, 2, &got, &v), 0);
    snprintf(want, sizeof want, "optimizer.%s.exp_avg_sq", name);
    assert_string_equal(got, want);
    assert_int_equal(adamw_state_set(opt, want, v), 0);
    tensor_free(v);
    adamw_free(opt);
    param_list_free(&params);
}

enum { RT_PARAMS = 2, RT_N = 4 };

static void round_trip_grads(int step, int param, double *g) {
    for (int j = 0; j < RT_N; j++) g[j] = sin(1.0 + step * 3 + param * 7 + j) * 0.1;
}

static void run_steps(adamw *opt, param_list *params, int first, int last) {
    for (int step = first; step <= last; step++) {
        for (int i = 0; i < RT_PARAMS; i++) {
            double g[RT_N];
            round_trip_grads(step, i, g);
            set_grad(value(params, i), g);
        }
        assert_int_equal(adamw_step(opt), 0);
    }
}

static void clone_params(param_list *from, param_list *to) {
    param_list_init(to);
    for (int i = 0; i < RT_PARAMS; i++) {
        tensor *detached = tensor_detach(value(from, i));
        param_list_add(to, from->items[i].name, tensor_clone(detached));
        tensor_free(detached);
    }
    pack(to);
}

// Continues a copy of the parameters for steps 3..4 with a fresh optimizer, importing `saved`
// (count entries) first; returns the final parameters in out.
static void continue_with(param_list *params, char (*names)[160], tensor **saved, int count,
                          double out[RT_PARAMS][RT_N]) {
    param_list copy;
    clone_params(params, &copy);
    param_list *lists[1] = {&copy};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    for (int i = 0; i < count; i++) assert_int_equal(adamw_state_set(opt, names[i], saved[i]), 0);
    run_steps(opt, &copy, 3, 4);
    for (int i = 0; i < RT_PARAMS; i++) to_doubles(value(&copy, i), out[i]);
    adamw_free(opt);
    param_list_free(&copy);
}

static void test_state_round_trip_continues_identically(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    double init[RT_N] = {0.5, -0.25, 0.125, 1.0};
    int64_t s2[2] = {2, 2}, s1[1] = {RT_N};
    param_list params;
    param_list_init(&params);
    add_param(&params, "visual.proj", init, s2, 2, TENSOR_F32);
    add_param(&params, "visual.ln_post.weight", init, s1, 1, TENSOR_F32);
    pack(&params);
    param_list *lists[1] = {&params};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    run_steps(opt, &params, 1, 2);

    int count = adamw_state_count(opt);
    assert_int_equal(count, 3 * RT_PARAMS);
    char names[3 * RT_PARAMS][160];
    tensor *saved[3 * RT_PARAMS];
    for (int i = 0; i < count; i++) {
        const char *name;
        tensor *value;
        assert_int_equal(adamw_state_get(opt, i, &name, &value), 0);
        snprintf(names[i], sizeof names[i], "%s", name);
        saved[i] = tensor_clone(value);
        tensor_free(value);
    }
    assert_string_equal(names[0], "optimizer.visual.proj.step");
    assert_string_equal(names[5], "optimizer.visual.ln_post.weight.exp_avg_sq");

    double restored[RT_PARAMS][RT_N], fresh[RT_PARAMS][RT_N], original[RT_PARAMS][RT_N];
    continue_with(&params, names, saved, count, restored);
    continue_with(&params, names, saved, 0, fresh);
    run_steps(opt, &params, 3, 4);
    for (int i = 0; i < RT_PARAMS; i++) to_doubles(value(&params, i), original[i]);
    assert_memory_equal(restored, original, sizeof original);
    assert_memory_not_equal(fresh, original, sizeof original);  // the state matters

    for (int i = 0; i < count; i++) tensor_free(saved[i]);
    adamw_free(opt);
    param_list_free(&params);
    assert_int_equal(tensor_live_count(), live);
}

static void test_state_import_errors(void **state) {
    (void)state;
    double init[4] = {1, 2, 3, 4};
    int64_t s2[2] = {2, 2}, s4[1] = {4};
    param_list params;
    param_list_init(&params);
    add_param(&params, "visual.proj", init, s2, 2, TENSOR_F32);
    pack(&params);
    param_list *lists[1] = {&params};
    adamw *opt = adamw_init(lists, 1, adamw_config_default());
    tensor_scope_begin();
    tensor *flat = tensor_zeros(s4, 1, TENSOR_F32, TENSOR_CPU);
    assert_int_equal(adamw_state_set(opt, "optimizer.visual.nope.exp_avg", flat), -1);
    assert_non_null(strstr(err_msg(), "optimizer.visual.nope.exp_avg"));
    assert_int_equal(adamw_state_set(opt, "optimizer.visual.proj.exp_avg", flat), -1);
    assert_non_null(strstr(err_msg(), "optimizer.visual.proj.exp_avg: shape"));
    double bad_steps[2] = {-1, 2.5};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(adamw_state_set(opt, "optimizer.visual.proj.step",
                                         tensor_scalar(bad_steps[i], TENSOR_F64, TENSOR_CPU)), -1);
        assert_non_null(strstr(err_msg(), "optimizer.visual.proj.step"));
    }
    assert_int_equal(adamw_state_set(opt, "optimizer.visual.proj.step", flat), -1);
    assert_int_equal(adamw_state_set(opt, "optimizer.visual.proj.step", tensor_scalar(7, TENSOR_I64, TENSOR_CPU)), 0);
    assert_int_equal(state_step(opt, 0), 7);
    tensor_scope_end();
    adamw_free(opt);
    param_list_free(&params);
}

// ---- gradient clipping and the logit-scale clamp -----------------------------------------------

static double item(const tensor *t) {
    double v;
    assert_int_equal(tensor_item(t, &v), 0);
    return v;
}

// The norm spans every list's trainable gradients; clipping scales them all by one coefficient,
// computed on the device, and leaves them unchanged when the norm is below the bound.
static void test_clip_grad_norm(void **state) {
    (void)state;
    double w[4] = {1, 1, 1, 1}, gw[4] = {3, 0, 0, 4}, gb[1] = {12}, got[4];
    int64_t s2[2] = {2, 2}, s1[1] = {1};
    param_list a, b;
    param_list_init(&a);
    param_list_init(&b);
    add_param(&a, "w", w, s2, 2, TENSOR_F64);
    add_param(&a, "frozen", w, s1, 1, TENSOR_F64);
    add_param(&b, "b", w, s1, 1, TENSOR_F64);
    param_set_frozen(&a.items[1], true);
    pack(&a);
    pack(&b);
    param_list *lists[2] = {&a, &b};
    tensor_scope_begin();
    assert_true(item(optim_grad_norm(lists, 2)) == 0.0);  // all gradients zero
    set_grad(value(&a, 0), gw);
    set_grad(value(&b, 0), gb);
    tensor *norm = optim_grad_norm(lists, 2);
    assert_float_equal(item(norm), 13.0, 1e-12);  // sqrt(3^2 + 4^2 + 12^2); the frozen one has none
    assert_int_equal(optim_clip_grads(lists, 2, norm, 6.5), 0);
    double coef = 6.5 / (13.0 + 1e-6);
    to_doubles(tensor_grad(value(&a, 0)), got);
    for (int j = 0; j < 4; j++) assert_float_equal(got[j], gw[j] * coef, 1e-12);
    to_doubles(tensor_grad(value(&b, 0)), got);
    assert_float_equal(got[0], 12 * coef, 1e-12);
    norm = optim_grad_norm(lists, 2);
    assert_float_equal(item(norm), 6.5, 1e-6);
    assert_int_equal(optim_clip_grads(lists, 2, norm, 100.0), 0);  // below max: unchanged
    to_doubles(tensor_grad(value(&b, 0)), got);
    assert_float_equal(got[0], 12 * coef, 1e-12);
    tensor_scope_end();
    param_list_free(&a);
    param_list_free(&b);
}

// Any number of lists (here 20, each one gradient element of 1): the norm is sqrt(20).
static void test_grad_norm_of_many_lists(void **state) {
    (void)state;
    enum { LISTS = 20 };
    double one = 1;
    int64_t s1[1] = {1};
    param_list l[LISTS];
    param_list *lists[LISTS];
    for (int i = 0; i < LISTS; i++) {
        param_list_init(&l[i]);
        add_param(&l[i], "w", &one, s1, 1, TENSOR_F32);
        pack(&l[i]);
        set_grad(value(&l[i], 0), &one);
        lists[i] = &l[i];
    }
    tensor *norm = optim_grad_norm(lists, LISTS);
    if (!norm) fail_msg("%s", err_msg());
    assert_float_equal(item(norm), sqrt(LISTS), 1e-6);
    tensor_free(norm);
    for (int i = 0; i < LISTS; i++) param_list_free(&l[i]);
}

// Millions of float32 gradients of mixed magnitudes, like a model's: the norm is the exact one
// (float64 over the float32 values) within float32 rounding, where one float32 reduction over the
// whole buffer drifts by 1e-5 and more (the OpenCLIP fixture that found it: 2.8e-5 over 3.7M).
static void test_grad_norm_is_exact(void **state) {
    (void)state;
    enum { N = 3700001 };  // not a multiple of the chunk
    double *g = xmalloc(N * sizeof *g), exact = 0;
    rng r = {7};
    for (int64_t i = 0; i < N; i++) {
        float f = (float)((rng_uniform(&r) - 0.5) * (i % 1000 == 0 ? 1e-1 : 1e-4));
        g[i] = f;
        exact += (double)f * f;
    }
    exact = sqrt(exact);
    int64_t shape[1] = {N};
    param_list l;
    param_list_init(&l);
    add_param(&l, "w", g, shape, 1, TENSOR_F32);
    pack(&l);
    set_grad(value(&l, 0), g);
    param_list *lists[1] = {&l};
    tensor *norm = optim_grad_norm(lists, 1);
    if (!norm) fail_msg("%s", err_msg());
    assert_int_equal(tensor_get_dtype(norm), TENSOR_F32);
    double got = item(norm), rel = fabs(got - exact) / exact;
    if (rel > 1.2e-7) fail_msg("norm %.9g, exact %.9g: %.2g relative", got, exact, rel);
    tensor_free(norm);
    param_list_free(&l);
    free(g);
}

static void test_clamp_logit_scale(void **state) {
    (void)state;
    double v[3] = {-1, 2, 5}, got[3];
    int64_t s[1] = {3};
    tensor *t = tensor_from_host(v, s, 1, TENSOR_F64, false);
    assert_int_equal(optim_clamp_logit_scale(t), 0);
    to_doubles(t, got);
    assert_true(got[0] == 0 && got[1] == 2 && fabs(got[2] - log(100)) < 1e-15);
    tensor_free(t);
}

// ---- schedules ---------------------------------------------------------------------------------

static void assert_lr(const schedule *s, int64_t step, double expected) {
    double got = schedule_lr(s, step);
    if (fabs(got - expected) > 1e-15) fail_msg("step %lld: lr %.17g, expected %.17g", (long long)step, got, expected);
}

static void test_cosine_schedule(void **state) {
    (void)state;
    schedule s = {.kind = SCHEDULE_COSINE, .base_lr = 1e-3, .warmup_steps = 10, .total_steps = 110};
    assert_int_equal(schedule_check(&s), 0);
    assert_lr(&s, 0, 1e-4);  // warmup starts at base / warmup, not 0
    assert_lr(&s, 4, 5e-4);
    assert_lr(&s, 9, 1e-3);
    assert_lr(&s, 10, 1e-3);
    assert_lr(&s, 60, 5e-4);                                 // half way through the cosine
    assert_lr(&s, 109, 1e-3 * pow(sin(M_PI / 200), 2));     // last step: (1 + cos(99 pi / 100)) / 2
    s.warmup_steps = 0;
    assert_lr(&s, 0, 1e-3);
}

static void test_const_schedules(void **state) {
    (void)state;
    schedule c = {.kind = SCHEDULE_CONST, .base_lr = 1e-3, .warmup_steps = 5, .total_steps = 50};
    assert_int_equal(schedule_check(&c), 0);
    assert_lr(&c, 0, 2e-4);
    assert_lr(&c, 4, 1e-3);
    assert_lr(&c, 49, 1e-3);
    schedule cd = {.kind = SCHEDULE_CONST_COOLDOWN, .base_lr = 1e-3, .warmup_steps = 10, .total_steps = 100,
                   .cooldown_steps = 20, .cooldown_power = 1.0, .cooldown_end_lr = 1e-5};
    assert_int_equal(schedule_check(&cd), 0);
    assert_lr(&cd, 0, 1e-4);
    assert_lr(&cd, 79, 1e-3);
    assert_lr(&cd, 80, 1e-3);  // the cooldown's first step still has decay 1
    assert_lr(&cd, 90, 5.05e-4);
    assert_lr(&cd, 99, 5.95e-5);
    cd.cooldown_power = 2.0;
    assert_lr(&cd, 90, 2.575e-4);
}

// Runs that are all warm-up, and a cooldown longer than the run: OpenCLIP's scheduler.py computes
// them (values checked against it, v2.20.0), so clipc accepts them.
static void test_schedules_openclip_accepts(void **state) {
    (void)state;
    schedule s = {.kind = SCHEDULE_COSINE, .base_lr = 1e-3, .warmup_steps = 4, .total_steps = 4};
    assert_int_equal(schedule_check(&s), 0);
    for (int step = 0; step < 4; step++) assert_lr(&s, step, 1e-3 * (step + 1) / 4);  // warm-up == run
    s.warmup_steps = 10;  // warm-up longer than the run: it never reaches the peak
    assert_int_equal(schedule_check(&s), 0);
    assert_lr(&s, 0, 1e-4);
    assert_lr(&s, 3, 4e-4);
    schedule c = {.kind = SCHEDULE_CONST, .base_lr = 1e-3, .warmup_steps = 8, .total_steps = 5};
    assert_int_equal(schedule_check(&c), 0);
    assert_lr(&c, 4, 6.25e-4);
    schedule cd = {.kind = SCHEDULE_CONST_COOLDOWN, .base_lr = 1e-3, .warmup_steps = 10, .total_steps = 6,
                   .cooldown_steps = 3, .cooldown_power = 1.0};
    assert_int_equal(schedule_check(&cd), 0);
    assert_lr(&cd, 5, 1e-3 * 6 / 10);  // warm-up wins over the cooldown
    cd.warmup_steps = 0, cd.total_steps = 4, cd.cooldown_steps = 8;  // the cooldown starts at step -4
    assert_int_equal(schedule_check(&cd), 0);
    assert_lr(&cd, 0, 5e-4);
    assert_lr(&cd, 3, 1.25e-4);
}

static void test_schedule_errors(void **state) {
    (void)state;
    schedule_kind kind;
    assert_int_equal(schedule_kind_parse("const-cooldown", &kind), 0);
    assert_int_equal(kind, SCHEDULE_CONST_COOLDOWN);
    assert_int_equal(schedule_kind_parse("cosine", &kind), 0);
    assert_int_equal(kind, SCHEDULE_COSINE);
    assert_int_equal(schedule_kind_parse("linear", &kind), -1);
    assert_non_null(strstr(err_msg(), "'linear'"));
    schedule bad[5] = {
        {.kind = SCHEDULE_COSINE, .base_lr = 1e-3, .warmup_steps = 10, .total_steps = 0},
        {.kind = SCHEDULE_CONST, .base_lr = 1e-3, .warmup_steps = -1, .total_steps = 10},
        {.kind = SCHEDULE_CONST_COOLDOWN, .base_lr = 1e-3, .total_steps = 10, .cooldown_steps = 0},
        {.kind = SCHEDULE_CONST, .base_lr = NAN, .total_steps = 10},
        {.kind = SCHEDULE_CONST_COOLDOWN, .base_lr = 1e-3, .total_steps = 10, .cooldown_steps = 2,
         .cooldown_power = INFINITY},
    };
    for (int i = 0; i < 5; i++) assert_int_equal(schedule_check(&bad[i]), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_closed_form),
        cmocka_unit_test(test_adamw_paths_agree),
        cmocka_unit_test(test_adamw_path_choice),
        cmocka_unit_test(test_fused_adamw_agrees_with_host_loop),
        cmocka_unit_test(test_sliced_adamw_equals_whole),
        cmocka_unit_test(test_adamw_defaults_are_openclip),
        cmocka_unit_test(test_weight_decay_rules),
        cmocka_unit_test(test_zero_gradient_step_applies_only_decay),
        cmocka_unit_test(test_frozen_params_are_skipped),
        cmocka_unit_test(test_state_names_of_long_parameters),
        cmocka_unit_test(test_state_round_trip_continues_identically),
        cmocka_unit_test(test_state_import_errors),
        cmocka_unit_test(test_clip_grad_norm),
        cmocka_unit_test(test_grad_norm_of_many_lists),
        cmocka_unit_test(test_grad_norm_is_exact),
        cmocka_unit_test(test_clamp_logit_scale),
        cmocka_unit_test(test_cosine_schedule),
        cmocka_unit_test(test_const_schedules),
        cmocka_unit_test(test_schedules_openclip_accepts),
        cmocka_unit_test(test_schedule_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
