#include "optim/adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

enum { STATE_STEP, STATE_EXP_AVG, STATE_EXP_AVG_SQ, STATE_PER_PARAM };
static const char *const state_suffixes[STATE_PER_PARAM] = {"step", "exp_avg", "exp_avg_sq"};

// The state of one list's trainable buffer.
typedef struct {
    param_list *list;    // borrowed
    tensor *exp_avg;     // (n_trainable)
    tensor *exp_avg_sq;  // (n_trainable)
    tensor *decays;      // (n_trainable) bool: the element gets weight decay
} adamw_group;

// One trainable parameter, for the named checkpoint entries.
typedef struct {
    const param *p;
    const adamw_group *group;
    char names[STATE_PER_PARAM][sizeof(((param *)0)->name) + 32];
} adamw_entry;

struct adamw {
    adamw_config config;
    int64_t step;
    adamw_group *groups;
    int n_groups;
    adamw_entry *entries;
    int n_entries;
};

adamw_config adamw_config_default(void) {
    return (adamw_config){.lr = 5e-4, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6, .weight_decay = 0.2};
}

bool adamw_param_decays(const char *name, int ndim) {
    static const char *const excluded[] = {"bn", "ln", "bias", "logit_scale"};
    if (ndim < 2) return false;
    for (size_t i = 0; i < sizeof excluded / sizeof *excluded; i++)
        if (strstr(name, excluded[i])) return false;
    return true;
}

static void add_entry(adamw *opt, const param *p, const adamw_group *g) {
    adamw_entry *e = &opt->entries[opt->n_entries++];
    e->p = p, e->group = g;
    for (int k = 0; k < STATE_PER_PARAM; k++)
        snprintf(e->names[k], sizeof e->names[k], "optimizer.%s.%s", p->name, state_suffixes[k]);
}

// Moments and the decay mask of one list; the mask is set slice by slice, once.
static int group_init(adamw *opt, adamw_group *g, param_list *l) {
    if (!l->data) return err_set("adamw: the parameter list is not packed");
    int64_t n = l->n_trainable;
    g->list = l;
    g->exp_avg = tensor_zeros(&n, 1, tensor_get_dtype(l->data), l->device);
    g->exp_avg_sq = tensor_zeros(&n, 1, tensor_get_dtype(l->data), l->device);
    g->decays = tensor_zeros(&n, 1, TENSOR_BOOL, l->device);
    if (!g->exp_avg || !g->exp_avg_sq || !g->decays) return -1;
    for (int i = 0; i < l->n; i++) {
        const param *p = &l->items[i];
        if (p->frozen) continue;
        add_entry(opt, p, g);
        if (!adamw_param_decays(p->name, tensor_ndim(p->value))) continue;
        tensor_scope_begin();
        int rc = tensor_fill_(tensor_slice(g->decays, 0, p->offset, p->offset + tensor_numel(p->value)), 1);
        tensor_scope_end();
        if (rc != 0) return err_prefix("adamw: %s", p->name);
    }
    return 0;
}

adamw *adamw_init(param_list *const *lists, int n_lists, adamw_config config) {
    adamw *opt = xcalloc(1, sizeof *opt);
    opt->config = config;
    opt->groups = xcalloc((size_t)(n_lists > 0 ? n_lists : 1), sizeof *opt->groups);
    int n_params = 0;
    for (int i = 0; i < n_lists; i++) n_params += lists[i]->n;
    opt->entries = xcalloc((size_t)(n_params > 0 ? n_params : 1), sizeof *opt->entries);
    for (int i = 0; i < n_lists; i++) {
        if (lists[i]->n_trainable == 0) continue;
        if (group_init(opt, &opt->groups[opt->n_groups++], lists[i]) != 0) {
            adamw_free(opt);
            return NULL;
        }
    }
    return opt;
}

void adamw_free(adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_groups; i++) {
        tensor_free(opt->groups[i].exp_avg);
        tensor_free(opt->groups[i].exp_avg_sq);
        tensor_free(opt->groups[i].decays);
    }
    free(opt->groups);
    free(opt->entries);
    free(opt);
}

void adamw_set_lr(adamw *opt, double lr) { opt->config.lr = lr; }

adamw_config adamw_get_config(const adamw *opt) { return opt->config; }

// PyTorch's _single_tensor_adamw over one flat buffer (shim/tensor.h: tensor_adamw_).
static int group_update(const adamw_group *g, const adamw_config *c, int64_t step) {
    double bias_correction1 = 1 - pow(c->beta1, (double)step);
    double bias_correction2_sqrt = sqrt(1 - pow(c->beta2, (double)step));
    tensor *p = param_list_trainable(g->list);
    return tensor_adamw_(p, g->list->grad, g->exp_avg, g->exp_avg_sq, g->decays, c->lr, c->beta1, c->beta2, c->eps,
                         c->weight_decay, bias_correction1, bias_correction2_sqrt);
}

int adamw_step(adamw *opt) {
    opt->step++;
    for (int i = 0; i < opt->n_groups; i++) {
        tensor_scope_begin();
        int rc = group_update(&opt->groups[i], &opt->config, opt->step);
        tensor_scope_end();
        if (rc < 0) return err_prefix("adamw step %lld", (long long)opt->step);
    }
    return 0;
}

int adamw_state_count(const adamw *opt) { return opt->n_entries * STATE_PER_PARAM; }

// The entry's slice of a group moment, shaped like its parameter (a view).
static tensor *entry_moment(const adamw_entry *e, int kind) {
    const tensor *flat = kind == STATE_EXP_AVG ? e->group->exp_avg : e->group->exp_avg_sq;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(e->p->value, shape);
    tensor_scope_begin();
    tensor *view = tensor_keep(
        tensor_reshape(tensor_slice(flat, 0, e->p->offset, e->p->offset + tensor_numel(e->p->value)), shape, ndim));
    tensor_scope_end();
    return view;
}

// A moment in float32: a view for float32 parameters, a converted copy for bf16 ones.
static tensor *entry_moment_f32(const adamw_entry *e, int kind) {
    tensor_scope_begin();
    tensor *value = tensor_keep(tensor_to_dtype(entry_moment(e, kind), TENSOR_F32));
    tensor_scope_end();
    return value;
}

int adamw_state_get(const adamw *opt, int i, const char **name, tensor **value) {
    if (i < 0 || i >= adamw_state_count(opt)) return err_set("adamw: no state entry %d", i);
    const adamw_entry *e = &opt->entries[i / STATE_PER_PARAM];
    int kind = i % STATE_PER_PARAM;
    *name = e->names[kind];
    *value = kind == STATE_STEP ? tensor_scalar((double)opt->step, TENSOR_I64, TENSOR_CPU) : entry_moment_f32(e, kind);
    return *value ? 0 : -1;
}

static int set_step(adamw *opt, const char *name, const tensor *value) {
    double step;
    if (tensor_numel(value) != 1 || tensor_item(value, &step) < 0)
        return err_set("%s: expected one number", name);
    if (!(step >= 0) || step != floor(step) || step > 9e15) return err_set("%s: %g is not a step count", name, step);
    opt->step = (int64_t)step;
    return 0;
}

static int set_moment(const adamw_entry *e, int kind, const char *name, const tensor *value) {
    int64_t want[TENSOR_MAX_DIMS], got[TENSOR_MAX_DIMS];
    int want_ndim = tensor_shape(e->p->value, want), got_ndim = tensor_shape(value, got);
    if (want_ndim != got_ndim || memcmp(want, got, (size_t)want_ndim * sizeof *want) != 0)
        return err_set("%s: shape differs from the parameter's (%d dims, %lld elements expected)", name,
                       want_ndim, (long long)tensor_numel(e->p->value));
    tensor *moment = entry_moment(e, kind);
    int rc = tensor_copy_(moment, value);
    tensor_free(moment);
    return rc < 0 ? err_prefix("%s", name) : 0;
}

int adamw_state_set(adamw *opt, const char *name, const tensor *value) {
    if (!value) return err_prefix("%s", name);
    for (int i = 0; i < opt->n_entries; i++)
        for (int kind = 0; kind < STATE_PER_PARAM; kind++) {
            const adamw_entry *e = &opt->entries[i];
            if (strcmp(name, e->names[kind]) != 0) continue;
            return kind == STATE_STEP ? set_step(opt, name, value) : set_moment(e, kind, name, value);
        }
    return err_set("%s: no such optimizer state", name);
}
