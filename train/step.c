#include "train/step.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "common/error.h"
#include "distributed/reducer.h"
#include "optim/grad.h"
#include "train/zero.h"


static int world_size(const step_config *c) { return c->dist ? dist_world_size(c->dist) : 1; }
static int rank(const step_config *c) { return c->dist ? dist_rank(c->dist) : 0; }

static int zero_grads(const step_config *c) {
    for (int i = 0; i < c->n_lists; i++)
        if (param_list_zero_grad(c->lists[i]) != 0) return -1;
    return 0;
}

static int autocast_begin(const step_config *c) {
    if (c->autocast_bf16) return tensor_autocast_begin(TENSOR_BF16);
    return c->autocast_f16 ? tensor_autocast_begin(TENSOR_F16) : 0;
}

static void autocast_end(const step_config *c) {
    if (c->autocast_bf16 || c->autocast_f16) tensor_autocast_end();
}

static int run_features(const step_config *c, const step_objective *obj, const void *batch, int64_t begin,
                        int64_t end, tensor **out) {
    if (autocast_begin(c) != 0) return -1;
    int rc = obj->features(obj->ctx, batch, begin, end, out);
    autocast_end(c);
    return rc;
}

// local (n, D) from every rank into (R*n, D), rank r's rows at [r*n, (r+1)*n), detached.
static tensor *gather(const step_config *c, const tensor *local) {
    int R = world_size(c);
    tensor *mine = tensor_contiguous(tensor_detach(local));
    if (R == 1 || !mine) return mine;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(mine, shape);
    shape[0] *= R;
    tensor *all = tensor_empty(shape, ndim, tensor_get_dtype(mine), tensor_get_device(mine));
    return all && dist_all_gather(c->dist, all, mine) == 0 ? all : NULL;
}

// The gradient of the loss with respect to this rank's n rows of all: every rank's loss share
// touches them, so the shares' gradients are summed over the ranks (reduce_scatter).
static tensor *own_gradient(const step_config *c, const tensor *all, int64_t n) {
    tensor *g = tensor_grad(all);
    if (world_size(c) == 1 || !g) return g;
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(g, shape);
    shape[0] = n;
    tensor *mine = tensor_empty(shape, ndim, tensor_get_dtype(g), tensor_get_device(g));
    return mine && dist_reduce_scatter(c->dist, mine, tensor_contiguous(g)) == 0 ? mine : NULL;
}

static int64_t bucket_elements(const step_config *c) {
    return c->bucket_elements > 0 ? c->bucket_elements : STEP_BUCKET_ELEMENTS;
}

// Sums the gradient buffers (in buckets, as many as they need) and the loss over the ranks, in one call.
static int sum_over_ranks(const step_config *c, tensor *loss) {
    if (world_size(c) == 1) return 0;
    int64_t bucket = bucket_elements(c), n_parts = 1;
    for (int i = 0; i < c->n_lists; i++) n_parts += (c->lists[i]->n_trainable + bucket - 1) / bucket;
    if (n_parts > INT_MAX) return err_set("step: %lld gradient buckets of %lld elements", (long long)n_parts, (long long)bucket);
    tensor **parts = xmalloc((size_t)n_parts * sizeof *parts);
    int n = 0;
    for (int i = 0; i < c->n_lists; i++) {
        int64_t size = c->lists[i]->n_trainable;
        for (int64_t b = 0; b < size; b += bucket)
            parts[n++] = tensor_slice(c->lists[i]->grad, 0, b, b + bucket < size ? b + bucket : size);
    }
    parts[n++] = loss;
    int rc = dist_all_reduce(c->dist, parts, n);
    free(parts);
    return rc;
}

// ---- ZeRO (train/zero.h) -----------------------------------------------------------------------
static bool sharded(const step_config *c) { return c->zero > 0 && world_size(c) > 1; }

// The gradients and the loss summed over the ranks: all of each gradient buffer (sum_over_ranks),
// or with --zero 2 this rank's shard of it (reduce_scatter) and the loss alone.
static int step_reduce_gradients(const step_config *c, tensor *loss) {
    if (!sharded(c) || c->zero < 2) return sum_over_ranks(c, loss);
    if (zero_reduce_scatter_grads(c->dist, c->lists, c->n_lists, bucket_elements(c)) != 0) return -1;
    return dist_all_reduce(c->dist, &loss, 1);
}

// The global gradient norm: from the whole buffers, or with --zero 2 from the ranks' shards.
static tensor *step_grad_norm(const step_config *c) {
    return sharded(c) && c->zero == 2 ? zero_grad_norm(c->dist, c->lists, c->n_lists) : optim_grad_norm(c->lists, c->n_lists);
}

// AdamW on this rank's shards (c->opt owns them), then every rank's updated shards to every rank.
static int step_update_sharded(const step_config *c) {
    if (adamw_step(c->opt) != 0) return -1;
    return sharded(c) ? zero_all_gather_params(c->dist, c->lists, c->n_lists, bucket_elements(c)) : 0;
}

// ---- the gradient sums overlapped with the backward (distributed/reducer.h) ----------------------
// *r: a reducer whose buckets start their sums from the backward's gradient hooks; NULL when the
// step sums everything after the backward (one rank, or overlap_reduce off).
static int overlap_begin(const step_config *c, reducer **r) {
    *r = NULL;
    if (world_size(c) == 1 || !c->overlap_reduce) return 0;
    *r = reducer_new(c->dist, c->lists, c->n_lists, &(reducer_options){.bucket_elements = bucket_elements(c),
                                                                      .to_owners = sharded(c) && c->zero == 2});
    return *r ? 0 : -1;
}

// Counting on: the gradients arriving now are each parameter's last of the step.
static void overlap_count(reducer *r, bool on) {
    if (r) reducer_count(r, on);
}

// Sums the gradient buffers and the loss over the ranks: what the reducer has not started yet,
// then waits for all; without one, all in one call. Their times into out.
static int sum_gradients(const step_config *c, reducer *r, tensor *loss, step_result *out) {
    if (r) return reducer_finish(r, &loss, 1);
    double before = c->dist ? dist_comm_seconds(c->dist) : 0;
    int rc = step_reduce_gradients(c, loss);
    if (c->dist) out->comm_s = out->comm_exposed_s = dist_comm_seconds(c->dist) - before;
    return rc;
}

// The features of all n samples, as leaves for the loss: the trained ones require grad. With
// one micro-batch, graph[] keeps the graph for the towers' backward; with several, the features
// are computed without it and recomputed micro-batch by micro-batch later.
static int global_features(const step_config *c, const step_objective *obj, const void *batch, int64_t n,
                           tensor **graph, tensor **all) {
    int K = c->accum_freq, nf = obj->n_features;
    if (K == 1 && run_features(c, obj, batch, 0, n, graph) != 0) return -1;
    if (K > 1) {
        tensor **parts = xmalloc((size_t)nf * (size_t)K * sizeof *parts);  // feature i of micro-batch m at [i*K + m]
        tensor_no_grad_begin();
        int rc = 0;
        for (int m = 0; m < K && rc == 0; m++) {
            tensor *f[STEP_MAX_FEATURES];
            rc = run_features(c, obj, batch, m * n / K, (m + 1) * n / K, f);
            for (int i = 0; i < nf && rc == 0; i++) parts[i * K + m] = f[i];
        }
        tensor_no_grad_end();
        for (int i = 0; i < nf && rc == 0; i++) graph[i] = tensor_cat((const tensor *const *)parts + i * K, K, 0);
        free(parts);
        if (rc != 0) return -1;
    }
    for (int i = 0; i < nf; i++) {
        all[i] = gather(c, graph[i]);
        if (!all[i] || (i < obj->n_trained && tensor_set_requires_grad(all[i], true) != 0)) return -1;
    }
    return 0;
}

// Backpropagates the features' gradients grads[i] (n, D_i) through the towers.
static int towers_backward(const step_config *c, const step_objective *obj, const void *batch, int64_t n,
                           tensor **graph, tensor **grads, reducer *r) {
    int K = c->accum_freq, nt = obj->n_trained;
    if (K == 1) return tensor_backward_multi((const tensor *const *)graph, (const tensor *const *)grads, nt);
    for (int m = 0; m < K; m++) {
        int64_t begin = m * n / K, end = (m + 1) * n / K;
        tensor_scope_begin();
        tensor *f[STEP_MAX_FEATURES], *g[STEP_MAX_FEATURES];
        int rc = run_features(c, obj, batch, begin, end, f);
        for (int i = 0; i < nt && rc == 0; i++) g[i] = tensor_slice(grads[i], 0, begin, end);
        overlap_count(r, m == K - 1);  // the last micro-batch gives each parameter its last gradient
        if (rc == 0) rc = tensor_backward_multi((const tensor *const *)f, (const tensor *const *)g, nt);
        tensor_scope_end();
        if (rc != 0) return -1;
    }
    return 0;
}

// ---- loss scaling (--precision amp: optim/grad_scaler.h) ----

// The gradient the loss's backward starts from: the scale (NULL: 1, no scaler).
static tensor *loss_seed(const step_config *c, const tensor *share) {
    return c->scaler ? tensor_scalar(c->scaler->scale, tensor_get_dtype(share), tensor_get_device(share)) : NULL;
}

// After the read of (loss, scaled norm): an overflow skips the step and lowers the scale; a finite
// step has its gradients and norm unscaled before clipping and the update.
static int scaler_after_read(const step_config *c, tensor **norm, step_result *out) {
    grad_scaler *s = c->scaler;
    double scale = s->scale;
    out->grad_scale = scale;
    out->grad_norm /= scale;
    out->overflow = isfinite(out->loss) && !out->finite;
    grad_scaler_update(s, !out->finite);
    if (!out->finite) return 0;
    *norm = tensor_mul_scalar(*norm, 1.0 / scale);
    return *norm ? grad_scaler_unscale(s, c->lists, c->n_lists) : -1;
}

// ---- end of loss scaling ----

// The loss of the global batch (fp32, one element) and all gradients, summed over the ranks into
// the lists' gradient buffers (through r while the backward runs, when there is one).
static tensor *loss_and_gradients(const step_config *c, const step_objective *obj, const void *batch, int64_t n,
                                  reducer *r, step_result *out) {
    tensor *graph[STEP_MAX_FEATURES], *all[STEP_MAX_FEATURES], *grads[STEP_MAX_FEATURES];
    if (global_features(c, obj, batch, n, graph, all) != 0) return NULL;
    int64_t first = rank(c) * n, one = 1;
    if (autocast_begin(c) != 0) return NULL;
    tensor *share = obj->loss_rows(obj->ctx, all, first, first + n);
    autocast_end(c);
    overlap_count(r, true);  // the loss's own parameters (the logit scale) get their gradient here
    tensor *seed = share ? loss_seed(c, share) : NULL;
    if (!share || (c->scaler && !seed) || tensor_backward(share, seed) != 0) return NULL;
    for (int i = 0; i < obj->n_trained; i++)
        if (!(grads[i] = own_gradient(c, all[i], n))) return NULL;
    if (obj->recomputing) obj->recomputing(obj->ctx, true);  // K > 1: the micro-batches' second pass
    int rc = towers_backward(c, obj, batch, n, graph, grads, r);
    if (obj->recomputing) obj->recomputing(obj->ctx, false);
    if (rc != 0) return NULL;
    tensor *loss = tensor_reshape(tensor_to_dtype(tensor_detach(share), TENSOR_F32), &one, 1);
    return loss && sum_gradients(c, r, loss, out) == 0 ? loss : NULL;
}

// Reads loss and norm to the host in one copy.
static int read_values(const tensor *loss, const tensor *norm, step_result *out) {
    int64_t one = 1;
    const tensor *both[2] = {loss, tensor_reshape(tensor_to_dtype(norm, TENSOR_F32), &one, 1)};
    float v[2];
    if (tensor_to_host(tensor_cat(both, 2, 0), v, sizeof v) != 0) return -1;
    out->loss = v[0], out->grad_norm = v[1];
    out->finite = isfinite(v[0]) && isfinite(v[1]);
    return 0;
}

// Every check before the first write to the weights: a collective of this step that failed after
// returning (an aborted NCCL communicator) fails the step here, leaving the weights as they were.
static int ready_to_update(const step_config *c) {
    return c->dist && world_size(c) > 1 ? dist_synchronize(c->dist) : 0;
}

static int update(const step_config *c, const tensor *norm) {
    if (c->grad_clip_norm > 0 && optim_clip_grads(c->lists, c->n_lists, norm, c->grad_clip_norm) != 0) return -1;
    if (step_update_sharded(c) != 0) return -1;
    return c->logit_scale ? optim_clamp_logit_scale(c->logit_scale) : 0;
}

int step_run(const step_config *c, int64_t step, const step_objective *obj, const void *batch, int64_t n,
             step_result *out) {
    int K = c->accum_freq;
    if (obj->n_features < 1 || obj->n_features > STEP_MAX_FEATURES || obj->n_trained > obj->n_features)
        return err_set("step: an objective has 1 to %d features", STEP_MAX_FEATURES);
    if (K < 1 || n % K != 0)
        return err_set("step: %lld samples do not split into %d micro-batches (--accum-freq)", (long long)n, K);
    tensor_counters start = tensor_counters_get();
    out->overflow = false, out->grad_scale = 0;
    out->lr = schedule_lr(c->sched, step);
    adamw_set_lr(c->opt, out->lr);
    if (zero_grads(c) != 0) return -1;
    out->comm_s = out->comm_exposed_s = 0;
    tensor_scope_begin();
    reducer *r;
    int rc = overlap_begin(c, &r);
    tensor *loss = rc == 0 ? loss_and_gradients(c, obj, batch, n, r, out) : NULL;
    tensor *norm = loss ? step_grad_norm(c) : NULL;
    rc = norm ? read_values(loss, norm, out) : -1;
    if (rc == 0 && r) rc = reducer_times(r, &out->comm_s, &out->comm_exposed_s);  // after the host read (NCCL)
    reducer_free(r);  // before the scope's end: its bucket views are in it
    if (rc == 0) rc = ready_to_update(c);
    if (rc == 0 && c->scaler) rc = scaler_after_read(c, &norm, out);
    tensor_counters read = tensor_counters_get();
    if (rc == 0 && out->finite) rc = update(c, norm);
    tensor_scope_end();
    out->forward_backward = tensor_counters_sub(read, start);
    out->update = tensor_counters_sub(tensor_counters_get(), read);
    return rc;
}
