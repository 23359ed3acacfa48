#include "optim/adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

enum { STATE_STEP, STATE_EXP_AVG, STATE_EXP_AVG_SQ, STATE_PER_PARAM };
static const char *const state_suffixes[STATE_PER_PARAM] = {"step", "exp_avg", "exp_avg_sq"};

// The state of one list's trainable buffer. The decay rule lives where the path reads it: a host
// mask for the float32 CPU loop, the per-parameter lists of the fused kernel, a bool tensor on the
// parameters' device for the whole-buffer ops.
typedef struct {
    param_list *list;    // borrowed
    adamw_path path;
    int64_t lo, hi;      // the elements [lo, hi) of the trainable buffer it updates (all: 0, n_trainable)
    tensor *exp_avg;     // (hi - lo)
    tensor *exp_avg_sq;  // (hi - lo)
    bool *decays;               // (hi - lo) the element gets weight decay: the host loop only
    tensor_fused_adamw *fused;  // the parameters' views in two lists: the fused path only
    tensor *decay_mask;         // (hi - lo) bool like decays: the whole-buffer ops only
} adamw_group;

// One trainable parameter, for the named checkpoint entries.
typedef struct {
    const param *p;
    const adamw_group *group;
    char *names[STATE_PER_PARAM];  // "optimizer.<param>.<suffix>", owned
} adamw_entry;

struct adamw {
    adamw_config config;
    int64_t step;
    adamw_group *groups;
    int n_groups;
    adamw_entry *entries;
    int n_entries;
    bool sharded;  // some group updates part of its list only: no named state (adamw_state_get)
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
    for (int k = 0; k < STATE_PER_PARAM; k++) {
        size_t len = strlen("optimizer..") + strlen(p->name) + strlen(state_suffixes[k]) + 1;
        e->names[k] = xmalloc(len);
        snprintf(e->names[k], len, "optimizer.%s.%s", p->name, state_suffixes[k]);
    }
}

adamw_path adamw_path_for(tensor_device dev, tensor_dtype dtype) {
    if (dev.type == TENSOR_DEVICE_CPU && dtype == TENSOR_F32) return ADAMW_PATH_HOST_LOOP;
    if (dev.type == TENSOR_DEVICE_CUDA && tensor_fused_adamw_available(dev)) return ADAMW_PATH_FUSED;
    return ADAMW_PATH_BUFFER_OPS;
}

const char *adamw_path_name(adamw_path path) {
    switch (path) {
    case ADAMW_PATH_HOST_LOOP: return "host loop";
    case ADAMW_PATH_FUSED: return "fused";
    case ADAMW_PATH_BUFFER_OPS: return "buffer ops";
    case ADAMW_PATH_AUTO: return "auto";
    }
    return "?";
}

// The parts of the trainable parameters of g's list inside [g->lo, g->hi), in buffer order, with
// their decay; offsets from g->lo. Returns how many.
static int group_parts(const adamw_group *g, tensor_adamw_part *parts) {
    const param_list *l = g->list;
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        const param *p = &l->items[i];
        int64_t begin = p->offset > g->lo ? p->offset : g->lo, end = p->offset + tensor_numel(p->value);
        if (end > g->hi) end = g->hi;
        if (!p->frozen && begin < end)
            parts[n++] = (tensor_adamw_part){.offset = begin - g->lo, .numel = end - begin,
                                             .decays = adamw_param_decays(p->name, tensor_ndim(p->value))};
    }
    return n;
}

// The decay mask of the group's elements, OpenCLIP's rule per parameter.
static bool *decay_mask(const adamw_group *g, const tensor_adamw_part *parts, int n) {
    bool *decays = xcalloc((size_t)(g->hi - g->lo > 0 ? g->hi - g->lo : 1), sizeof *decays);
    for (int i = 0; i < n; i++)
        if (parts[i].decays) memset(decays + parts[i].offset, 1, (size_t)parts[i].numel * sizeof *decays);
    return decays;
}

// The group's slices of a list's flat buffer (views; the whole trainable part when unsharded).
static tensor *group_slice(const adamw_group *g, const tensor *flat) { return tensor_slice(flat, 0, g->lo, g->hi); }

// The decay rule of a list where its path reads it: the host mask stays for the host loop, goes
// to the device once for the whole-buffer ops, becomes the two view lists of the fused kernel (of
// the group's slices of the parameter and gradient buffers). An empty range (a rank past a short
// list's end) needs none.
static int group_decay_rule(adamw_group *g, const param_list *l) {
    int64_t n = g->hi - g->lo;
    if (n == 0) return 0;
    tensor_adamw_part *parts = xcalloc((size_t)(l->n > 0 ? l->n : 1), sizeof *parts);
    int n_parts = group_parts(g, parts), rc = 0;
    tensor_scope_begin();
    if (g->path == ADAMW_PATH_FUSED) {
        g->fused = tensor_fused_adamw_new(parts, n_parts, group_slice(g, l->data), group_slice(g, l->grad), g->exp_avg,
                                          g->exp_avg_sq);
        rc = g->fused ? 0 : -1;
    } else {
        g->decays = decay_mask(g, parts, n_parts);
    }
    if (g->path == ADAMW_PATH_BUFFER_OPS) {
        tensor *host = tensor_from_host(g->decays, &n, 1, TENSOR_BOOL, false);
        g->decay_mask = tensor_keep(tensor_to_device(host, l->device, false));
        free(g->decays);
        g->decays = NULL;
        rc = g->decay_mask ? 0 : -1;
    }
    tensor_scope_end();
    free(parts);
    return rc;
}

// Moments and the decay rule of one list on its path (ADAMW_PATH_AUTO: adamw_path_for's).
static int group_init(adamw *opt, adamw_group *g, param_list *l, adamw_path path, int64_t lo, int64_t hi) {
    if (!l->data) return err_set("adamw: the parameter list is not packed");
    if (lo < 0 || lo > hi || hi > l->n_trainable)
        return err_set("adamw: range [%lld, %lld) outside the %lld trainable elements", (long long)lo, (long long)hi,
                       (long long)l->n_trainable);
    int64_t n = hi - lo;
    tensor_dtype dtype = tensor_get_dtype(l->data);
    adamw_path natural = adamw_path_for(l->device, dtype);
    if (path == ADAMW_PATH_AUTO) path = natural;
    if (path == ADAMW_PATH_HOST_LOOP && natural != ADAMW_PATH_HOST_LOOP)
        return err_set("adamw: the host loop updates float32 CPU parameters, not %s ones", tensor_dtype_name(dtype));
    g->list = l, g->path = path, g->lo = lo, g->hi = hi;
    g->exp_avg = tensor_zeros(&n, 1, dtype, l->device);
    g->exp_avg_sq = tensor_zeros(&n, 1, dtype, l->device);
    if (!g->exp_avg || !g->exp_avg_sq || group_decay_rule(g, l) != 0) return err_prefix("adamw");
    for (int i = 0; i < l->n; i++)
        if (!l->items[i].frozen) add_entry(opt, &l->items[i], g);
    return 0;
}

adamw *adamw_init(param_list *const *lists, int n_lists, adamw_config config) {
    return adamw_init_path(lists, n_lists, config, ADAMW_PATH_AUTO);
}

adamw *adamw_init_path(param_list *const *lists, int n_lists, adamw_config config, adamw_path path) {
    return adamw_init_range(lists, n_lists, config, path, NULL, NULL);
}

adamw *adamw_init_range(param_list *const *lists, int n_lists, adamw_config config, adamw_path path,
                        const int64_t *lo, const int64_t *hi) {
    adamw *opt = xcalloc(1, sizeof *opt);
    opt->config = config;
    opt->groups = xcalloc((size_t)(n_lists > 0 ? n_lists : 1), sizeof *opt->groups);
    int n_params = 0;
    for (int i = 0; i < n_lists; i++) n_params += lists[i]->n;
    opt->entries = xcalloc((size_t)(n_params > 0 ? n_params : 1), sizeof *opt->entries);
    for (int i = 0; i < n_lists; i++) {
        if (lists[i]->n_trainable == 0) continue;
        int64_t begin = lo ? lo[i] : 0, end = hi ? hi[i] : lists[i]->n_trainable;
        opt->sharded |= begin > 0 || end < lists[i]->n_trainable;
        if (group_init(opt, &opt->groups[opt->n_groups++], lists[i], path, begin, end) != 0) {
            adamw_free(opt);
            return NULL;
        }
    }
    return opt;
}

adamw_path adamw_get_path(const adamw *opt) { return opt->n_groups > 0 ? opt->groups[0].path : ADAMW_PATH_HOST_LOOP; }

void adamw_free(adamw *opt) {
    if (!opt) return;
    for (int i = 0; i < opt->n_groups; i++) {
        tensor_free(opt->groups[i].exp_avg);
        tensor_free(opt->groups[i].exp_avg_sq);
        free(opt->groups[i].decays);
        tensor_fused_adamw_free(opt->groups[i].fused);
        tensor_free(opt->groups[i].decay_mask);
    }
    for (int i = 0; i < opt->n_entries; i++)
        for (int k = 0; k < STATE_PER_PARAM; k++) free(opt->entries[i].names[k]);
    free(opt->groups);
    free(opt->entries);
    free(opt);
}

void adamw_set_lr(adamw *opt, double lr) { opt->config.lr = lr; }

adamw_config adamw_get_config(const adamw *opt) { return opt->config; }

// PyTorch's _single_tensor_adamw over flat float32 host buffers, one pass (llm.c's
// adamw_update): the factors are rounded to float32 as ATen converts Python numbers, and each line
// rounds where PyTorch's in-place op does. Buffers below ATen's grain size (32768 elements) stay
// on one thread, as ATen's own loops do.
static void update_f32(float *p, const float *g, float *m, float *v, const bool *decays, int64_t n,
                       const adamw_config *c, double bias_correction1, double bias_correction2_sqrt) {
    const float decayed = (float)(1 - c->lr * c->weight_decay), b1 = (float)c->beta1, c1 = (float)(1 - c->beta1);
    const float b2 = (float)c->beta2, c2 = (float)(1 - c->beta2), bc2 = (float)bias_correction2_sqrt;
    const float eps = (float)c->eps, step = (float)(-(c->lr / bias_correction1));
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (int64_t i = 0; i < n; i++) {
        float pi = decays[i] ? p[i] * decayed : p[i];
        float mi = m[i] * b1 + c1 * g[i];
        float vi = v[i] * b2 + c2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2 + eps;
        p[i] = pi + step * (mi / denom), m[i] = mi, v[i] = vi;
    }
}

// One list's update on its path; the fused kernel computes the bias corrections from the step itself.
static int group_update(const adamw_group *g, const adamw_config *c, int64_t step) {
    double bias_correction1 = 1 - pow(c->beta1, (double)step);
    double bias_correction2_sqrt = sqrt(1 - pow(c->beta2, (double)step));
    const param_list *l = g->list;
    if (g->hi == g->lo) return 0;
    if (g->path == ADAMW_PATH_HOST_LOOP) {
        float *p = tensor_data_f32(l->data), *grad = tensor_data_f32(l->grad);  // trainable values first
        float *m = tensor_data_f32(g->exp_avg), *v = tensor_data_f32(g->exp_avg_sq);
        if (!p || !grad || !m || !v) return -1;
        update_f32(p + g->lo, grad + g->lo, m, v, g->decays, g->hi - g->lo, c, bias_correction1, bias_correction2_sqrt);
        return 0;
    }
    tensor_scope_begin();
    tensor *p = group_slice(g, l->data), *grad = group_slice(g, l->grad);
    int rc = g->path == ADAMW_PATH_FUSED
                 ? tensor_fused_adamw_step(g->fused, p, grad, g->exp_avg, g->exp_avg_sq, step, c->lr, c->beta1,
                                           c->beta2, c->eps, c->weight_decay)
                 : tensor_adamw_(p, grad, g->exp_avg, g->exp_avg_sq, g->decay_mask, c->lr, c->beta1, c->beta2, c->eps,
                                 c->weight_decay, bias_correction1, bias_correction2_sqrt);
    tensor_scope_end();
    return rc;
}

int adamw_step(adamw *opt) {
    opt->step++;
    for (int i = 0; i < opt->n_groups; i++)
        if (group_update(&opt->groups[i], &opt->config, opt->step) < 0)
            return err_prefix("adamw step %lld", (long long)opt->step);
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
    if (opt->sharded) return err_set("adamw: a sharded optimizer's state is read whole from a gathered copy (adamw_state_copy)");
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
    // The part of the parameter inside the group's range (all of it when unsharded).
    const adamw_group *g = e->group;
    int64_t numel = tensor_numel(e->p->value), off = e->p->offset;
    int64_t begin = off > g->lo ? off : g->lo, end = off + numel < g->hi ? off + numel : g->hi;
    if (begin >= end) return 0;
    tensor_scope_begin();
    tensor *moment = kind == STATE_EXP_AVG ? g->exp_avg : g->exp_avg_sq;
    int rc = tensor_copy_(tensor_slice(moment, 0, begin - g->lo, end - g->lo),
                          tensor_slice(tensor_reshape(value, &numel, 1), 0, begin - off, end - off));
    tensor_scope_end();
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

int adamw_state_copy(adamw *dst, const adamw *src) {
    if (dst->n_groups != src->n_groups) return err_set("adamw: copying the state of %d lists into %d", src->n_groups, dst->n_groups);
    dst->step = src->step;
    int rc = 0;
    tensor_scope_begin();
    for (int i = 0; i < dst->n_groups && rc == 0; i++) {
        const adamw_group *d = &dst->groups[i], *s = &src->groups[i];
        if (d->list != s->list) rc = err_set("adamw: copying the state of other parameter lists");
        int64_t begin = d->lo > s->lo ? d->lo : s->lo, end = d->hi < s->hi ? d->hi : s->hi;
        if (rc != 0 || begin >= end) continue;
        rc = tensor_copy_(tensor_slice(d->exp_avg, 0, begin - d->lo, end - d->lo),
                          tensor_slice(s->exp_avg, 0, begin - s->lo, end - s->lo));
        if (rc == 0)
            rc = tensor_copy_(tensor_slice(d->exp_avg_sq, 0, begin - d->lo, end - d->lo),
                              tensor_slice(s->exp_avg_sq, 0, begin - s->lo, end - s->lo));
    }
    tensor_scope_end();
    return rc < 0 ? err_prefix("adamw state copy") : 0;
}

int adamw_shard_count(const adamw *opt) { return opt->n_groups; }

adamw_shard adamw_get_shard(const adamw *opt, int i) {
    const adamw_group *g = &opt->groups[i];
    return (adamw_shard){.list = g->list, .lo = g->lo, .hi = g->hi, .exp_avg = g->exp_avg, .exp_avg_sq = g->exp_avg_sq};
}

int64_t adamw_state_bytes(const adamw *opt) {
    int64_t bytes = 0;
    for (int i = 0; i < opt->n_groups; i++)
        bytes += 2 * tensor_numel(opt->groups[i].exp_avg) * (int64_t)tensor_dtype_size(tensor_get_dtype(opt->groups[i].exp_avg));
    return bytes;
}
