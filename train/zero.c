#include "train/zero.h"

#include <math.h>
#include <stdlib.h>

#include "common/error.h"

void zero_shard_ranges(const dist *d, param_list *const *lists, int n, int64_t *lo, int64_t *hi) {
    for (int i = 0; i < n; i++) dist_shard_range(lists[i]->n_trainable, dist_rank(d), dist_world_size(d), &lo[i], &hi[i]);
}

// Elements per rank in one collective: about `bucket` in all.
static int64_t per_rank(int64_t bucket, int world) { return bucket / world > 0 ? bucket / world : 1; }

// The elements [begin, begin + b) of rank r's shard of a buffer of n elements that lie in it
// (r's shard may end before begin + b, or hold nothing there): how many, from *at.
static int64_t shard_part(int64_t n, int r, int world, int64_t begin, int64_t b, int64_t *at) {
    int64_t lo, hi;
    dist_shard_range(n, r, world, &lo, &hi);
    *at = lo + begin;
    return *at < hi ? (*at + b < hi ? b : hi - *at) : 0;
}

// One list's reduce_scatter, bucket by bucket: bucket k stages, for every rank r, the elements
// [k*b, (k+1)*b) of r's shard (zero past its end) into one (R*b) tensor.
static int reduce_scatter_list(dist *d, param_list *l, int64_t bucket) {
    int R = dist_world_size(d), me = dist_rank(d);
    int64_t n = l->n_trainable, S = (n + R - 1) / R, b = per_rank(bucket, R), len = b * R, at;
    int rc = 0;
    for (int64_t begin = 0; begin < S && rc == 0; begin += b) {
        if (begin + b > S) b = S - begin, len = b * R;
        tensor_scope_begin();
        tensor *in = tensor_zeros(&len, 1, tensor_get_dtype(l->grad), l->device), *out = tensor_empty(&b, 1, tensor_get_dtype(l->grad), l->device);
        rc = in && out ? 0 : -1;
        for (int r = 0; r < R && rc == 0; r++) {
            int64_t m = shard_part(n, r, R, begin, b, &at);
            if (m > 0) rc = tensor_copy_(tensor_slice(in, 0, r * b, r * b + m), tensor_slice(l->grad, 0, at, at + m));
        }
        if (rc == 0) rc = dist_reduce_scatter(d, out, in);
        int64_t m = shard_part(n, me, R, begin, b, &at);
        if (rc == 0 && m > 0) rc = tensor_copy_(tensor_slice(l->grad, 0, at, at + m), tensor_slice(out, 0, 0, m));
        tensor_scope_end();
    }
    return rc;
}

int zero_reduce_scatter_grads(dist *d, param_list *const *lists, int n, int64_t bucket) {
    for (int i = 0; i < n; i++)
        if (lists[i]->n_trainable > 0 && reduce_scatter_list(d, lists[i], bucket) != 0) return err_prefix("gradient reduce_scatter");
    return 0;
}

tensor *zero_grad_norm(dist *d, param_list *const *lists, int n) {
    tensor_scope_begin();
    int64_t one = 1;
    tensor *sum = tensor_zeros(&one, 1, TENSOR_F64, dist_device(d));  // (1) float64 sum of squares
    tensor_dtype dtype = TENSOR_F32;
    for (int i = 0; i < n && sum; i++) {
        if (lists[i]->n_trainable == 0) continue;
        if (tensor_get_dtype(lists[i]->grad) == TENSOR_F64) dtype = TENSOR_F64;
        int64_t lo, hi;
        dist_shard_range(lists[i]->n_trainable, dist_rank(d), dist_world_size(d), &lo, &hi);
        tensor *norm = tensor_norm_f64(tensor_slice(lists[i]->grad, 0, lo, hi));
        sum = tensor_add(sum, tensor_mul(norm, norm));
    }
    tensor *total = sum ? tensor_contiguous(sum) : NULL;
    tensor *norm = total && dist_all_reduce(d, &total, 1) == 0 ? tensor_keep(tensor_to_dtype(tensor_sqrt(total), dtype)) : NULL;
    tensor_scope_end();
    if (!norm) err_prefix("gradient norm");
    return norm;
}

// One list's all_gather, bucket by bucket: bucket k carries the elements [k*b, (k+1)*b) of every
// rank's shard (padded with zeros past its end).
static int all_gather_list(dist *d, param_list *l, int64_t bucket) {
    int R = dist_world_size(d), me = dist_rank(d);
    int64_t n = l->n_trainable, S = (n + R - 1) / R, b = per_rank(bucket, R), len = b * R, at;
    int rc = 0;
    tensor_no_grad_begin();
    for (int64_t begin = 0; begin < S && rc == 0; begin += b) {
        if (begin + b > S) b = S - begin, len = b * R;
        tensor_scope_begin();
        tensor *in = tensor_zeros(&b, 1, tensor_get_dtype(l->data), l->device), *out = tensor_empty(&len, 1, tensor_get_dtype(l->data), l->device);
        rc = in && out ? 0 : -1;
        int64_t m = shard_part(n, me, R, begin, b, &at);
        if (rc == 0 && m > 0) rc = tensor_copy_(tensor_slice(in, 0, 0, m), tensor_slice(l->data, 0, at, at + m));
        if (rc == 0) rc = dist_all_gather(d, out, in);
        for (int r = 0; r < R && rc == 0; r++) {
            if (r == me || (m = shard_part(n, r, R, begin, b, &at)) == 0) continue;
            rc = tensor_copy_(tensor_slice(l->data, 0, at, at + m), tensor_slice(out, 0, r * b, r * b + m));
        }
        tensor_scope_end();
    }
    tensor_no_grad_end();
    return rc;
}

int zero_all_gather_params(dist *d, param_list *const *lists, int n, int64_t bucket) {
    for (int i = 0; i < n; i++)
        if (lists[i]->n_trainable > 0 && all_gather_list(d, lists[i], bucket) != 0) return err_prefix("weight all_gather");
    return 0;
}

// Rank r's shard of one moment (this rank's own: mine, of whole's on rank 0) to rank 0 by
// broadcasts of up to bucket elements from r; ranks other than r and 0 receive into scratch.
static int gather_moment(dist *d, const adamw_shard *s, tensor *mine, tensor *whole, int r, int64_t bucket) {
    int me = dist_rank(d);
    int64_t lo, hi;
    dist_shard_range(s->list->n_trainable, r, dist_world_size(d), &lo, &hi);
    int rc = 0;
    for (int64_t at = lo; at < hi && rc == 0; at += bucket) {
        int64_t b = at + bucket < hi ? bucket : hi - at;
        tensor_scope_begin();
        tensor *buf = me == r ? tensor_slice(mine, 0, at - lo, at - lo + b)
                      : me == 0 ? tensor_slice(whole, 0, at, at + b)
                                : tensor_empty(&b, 1, tensor_get_dtype(mine), s->list->device);
        rc = buf ? dist_broadcast(d, &buf, 1, r) : -1;
        tensor_scope_end();
    }
    return rc;
}

int zero_gather_state(dist *d, const adamw *sharded, adamw *whole, int64_t bucket) {
    if ((dist_rank(d) == 0) != (whole != NULL)) return err_set("zero: the whole optimizer state goes to rank 0 alone");
    if (whole && adamw_state_copy(whole, sharded) != 0) return -1;  // the step and rank 0's own shards
    int rc = 0;
    for (int i = 0; i < adamw_shard_count(sharded) && rc == 0; i++) {
        adamw_shard s = adamw_get_shard(sharded, i), w = whole ? adamw_get_shard(whole, i) : (adamw_shard){0};
        for (int r = 1; r < dist_world_size(d) && rc == 0; r++) {
            rc = gather_moment(d, &s, s.exp_avg, w.exp_avg, r, bucket);
            if (rc == 0) rc = gather_moment(d, &s, s.exp_avg_sq, w.exp_avg_sq, r, bucket);
        }
    }
    return rc < 0 ? err_prefix("gathering the optimizer state") : 0;
}
