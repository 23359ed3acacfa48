#include "optim/adamw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

enum { STATE_STEP, STATE_EXP_AVG, STATE_EXP_AVG_SQ, STATE_PER_PARAM };
static const char *const state_suffixes[STATE_PER_PARAM] = {"step", "exp_avg", "exp_avg_sq"};

typedef struct {
    tensor *param;  // borrowed from the model
    bool decays;
    int64_t step;
    tensor *exp_avg;     // like param
    tensor *exp_avg_sq;  // like param
    char state_names[STATE_PER_PARAM][sizeof(((clip_param *)0)->name) + 32];
} adamw_slot;

struct adamw {
    adamw_config config;
    adamw_slot *slots;
    int n;
};

adamw_config adamw_config_default(void) {
    return (adamw_config){.lr = 5e-4, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.2};
}

bool adamw_param_decays(const char *name, int ndim) {
    static const char *const excluded[] = {"bn", "ln", "bias", "logit_scale", "logit_bias",
                                           "positional_embedding", "class_embedding"};
    if (ndim < 2) return false;
    for (size_t i = 0; i < sizeof excluded / sizeof *excluded; i++)
        if (strstr(name, excluded[i])) return false;
    return true;
}

static tensor *zeros_like(const tensor *t) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(t, shape);
    return tensor_zeros(shape, ndim, tensor_get_dtype(t), tensor_get_device(t));
}

static int slot_init(adamw_slot *slot, const clip_param *p) {
    slot->param = p->value;
    slot->decays = adamw_param_decays(p->name, tensor_ndim(p->value));
    slot->step = 0;
    slot->exp_avg = zeros_like(p->value);
    slot->exp_avg_sq = zeros_like(p->value);
    for (int k = 0; k < STATE_PER_PARAM; k++)
        snprintf(slot->state_names[k], sizeof slot->state_names[k], "optimizer.%s.%s", p->name, state_suffixes[k]);
    return slot->exp_avg && slot->exp_avg_sq ? 0 : err_prefix("adamw: %s", p->name);
}

adamw *adamw_init(const clip_param *params, int n, adamw_config config) {
    adamw *opt = xcalloc(1, sizeof *opt);
    opt->config = config;
    opt->slots = xcalloc((size_t)(n > 0 ? n : 1), sizeof *opt->slots);
    for (int i = 0; i < n; i++) {
        if (params[i].frozen) continue;
        if (!params[i].value) {
            err_set("adamw: %s: no tensor", params[i].name);
            adamw_free(opt);
            return NULL;
        }
        if (slot_init(&opt->slots[opt->n++], &params[i]) < 0) {
            adamw_free(opt);
            return NULL;
        }
    }
    return opt;
}

void adamw_free(adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) {
        tensor_free(opt->slots[i].exp_avg);
        tensor_free(opt->slots[i].exp_avg_sq);
    }
    free(opt->slots);
    free(opt);
}

void adamw_set_lr(adamw *opt, double lr) { opt->config.lr = lr; }

adamw_config adamw_get_config(const adamw *opt) { return opt->config; }

// PyTorch's _single_tensor_adamw for one parameter, in the same order of operations.
static int slot_update(adamw_slot *s, const adamw_config *c, const tensor *grad) {
    s->step++;
    double bias_correction1 = 1 - pow(c->beta1, (double)s->step);
    double bias_correction2_sqrt = sqrt(1 - pow(c->beta2, (double)s->step));
    double decay = s->decays ? c->weight_decay : 0.0;
    if (tensor_mul_scalar_(s->param, 1 - c->lr * decay) < 0 || tensor_mul_scalar_(s->exp_avg, c->beta1) < 0 ||
        tensor_add_(s->exp_avg, grad, 1 - c->beta1) < 0 || tensor_mul_scalar_(s->exp_avg_sq, c->beta2) < 0 ||
        tensor_addcmul_(s->exp_avg_sq, grad, grad, 1 - c->beta2) < 0)
        return -1;
    tensor *divisor = tensor_scalar(bias_correction2_sqrt, tensor_get_dtype(s->exp_avg_sq), tensor_get_device(s->exp_avg_sq));
    tensor *denom = tensor_add_scalar(tensor_div(tensor_sqrt(s->exp_avg_sq), divisor), c->eps);
    return tensor_addcdiv_(s->param, s->exp_avg, denom, -c->lr / bias_correction1);
}

int adamw_step(adamw *opt) {
    for (int i = 0; i < opt->n; i++) {
        adamw_slot *s = &opt->slots[i];
        if (!tensor_has_grad(s->param)) continue;
        tensor_scope_begin();
        int rc = slot_update(s, &opt->config, tensor_grad(s->param));
        tensor_scope_end();
        if (rc < 0) return err_prefix("adamw: %s", s->state_names[STATE_STEP]);
    }
    return 0;
}

int adamw_state_count(const adamw *opt) { return opt->n * STATE_PER_PARAM; }

static tensor *slot_moment(const adamw_slot *s, int kind) {
    return kind == STATE_EXP_AVG ? s->exp_avg : s->exp_avg_sq;
}

int adamw_state_get(const adamw *opt, int i, const char **name, tensor **value) {
    if (i < 0 || i >= adamw_state_count(opt)) return err_set("adamw: no state entry %d", i);
    const adamw_slot *s = &opt->slots[i / STATE_PER_PARAM];
    int kind = i % STATE_PER_PARAM;
    *name = s->state_names[kind];
    *value = kind == STATE_STEP ? tensor_scalar((double)s->step, TENSOR_I64, TENSOR_CPU)
                                : tensor_detach(slot_moment(s, kind));
    return *value ? 0 : -1;
}

static int set_step(adamw_slot *s, const char *name, const tensor *value) {
    double step;
    if (tensor_numel(value) != 1 || tensor_item(value, &step) < 0)
        return err_set("%s: expected one number", name);
    if (!(step >= 0) || step != floor(step) || step > 9e15) return err_set("%s: %g is not a step count", name, step);
    s->step = (int64_t)step;
    return 0;
}

static int set_moment(tensor *moment, const char *name, const tensor *value) {
    int64_t want[TENSOR_MAX_DIMS], got[TENSOR_MAX_DIMS];
    int want_ndim = tensor_shape(moment, want), got_ndim = tensor_shape(value, got);
    if (want_ndim != got_ndim || memcmp(want, got, (size_t)want_ndim * sizeof *want) != 0)
        return err_set("%s: shape differs from the parameter's (%d dims, %lld elements expected)", name,
                       want_ndim, (long long)tensor_numel(moment));
    return tensor_copy_(moment, value) < 0 ? err_prefix("%s", name) : 0;
}

int adamw_state_set(adamw *opt, const char *name, const tensor *value) {
    if (!value) return err_prefix("%s", name);
    for (int i = 0; i < opt->n; i++)
        for (int kind = 0; kind < STATE_PER_PARAM; kind++) {
            adamw_slot *s = &opt->slots[i];
            if (strcmp(name, s->state_names[kind]) != 0) continue;
            return kind == STATE_STEP ? set_step(s, name, value) : set_moment(slot_moment(s, kind), name, value);
        }
    return err_set("%s: no such optimizer state", name);
}
