#include "distributed/reducer.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "shim/grad_hook.h"

typedef struct {
    reducer_bucket where;
    tensor *grad;  // the view of the gradient buffer it sums
    int pending;   // its parameters not complete yet
} bucket;

typedef struct {
    const char *name;
    int first, last;  // the buckets holding its gradient (consecutive)
    bool ready;
    tensor_grad_hook *hook;
} hooked_param;

struct reducer {
    dist *d;
    bool to_owners, counting, failed;
    bucket *buckets;
    int n_buckets, next;  // buckets [0, next) are started
    hooked_param *params;
    int n_params;
    char error[512];
};

static void fail(reducer *r, const char *message) {
    if (r->failed) return;
    r->failed = true;
    snprintf(r->error, sizeof r->error, "%s", message);
}

static void start(reducer *r, bucket *b) {
    int root = r->to_owners ? b->where.owner : DIST_ALL_RANKS;
    if (dist_start_sum(r->d, &b->grad, 1, root) != 0) fail(r, err_msg());
}

static void start_ready(reducer *r) {
    while (!r->failed && r->next < r->n_buckets && r->buckets[r->next].pending == 0) start(r, &r->buckets[r->next++]);
}

// The gradient hook (shim/grad_hook.h): parameter j's gradient has been accumulated.
static void on_gradient(void *ctx, int j) {
    reducer *r = ctx;
    if (!r->counting || r->failed) return;
    hooked_param *p = &r->params[j];
    if (p->ready) {
        char m[400];
        snprintf(m, sizeof m, "reducer: parameter %s got a second gradient in one step while its bucket may be on its "
                 "way (turn the overlap off: --no-overlap-reduce)", p->name);
        return fail(r, m);
    }
    p->ready = true;
    for (int b = p->first; b <= p->last; b++) r->buckets[b].pending--;
    start_ready(r);
}

// Buckets of list l (index li) from its end: at most `size` elements, cut at shard boundaries.
static void cut_buckets(reducer *r, const param_list *l, int li, int64_t size) {
    int R = dist_world_size(r->d);
    int64_t n = l->n_trainable, S = (n + R - 1) / R;
    for (int64_t end = n; end > 0;) {
        int owner = (int)((end - 1) / S);
        int64_t shard_begin, shard_end, begin = end - size > 0 ? end - size : 0;
        dist_shard_range(n, owner, R, &shard_begin, &shard_end);
        if (begin < shard_begin) begin = shard_begin;
        r->buckets = xrealloc(r->buckets, (size_t)(r->n_buckets + 1) * sizeof *r->buckets);
        bucket *b = &r->buckets[r->n_buckets++];
        *b = (bucket){.where = {li, begin, end, owner}, .grad = tensor_slice(l->grad, 0, begin, end)};
        end = begin;
    }
}

// Parameter p of list li (elements [offset, offset + numel)): its buckets among [first, n_buckets),
// and its hook.
static int hook_param(reducer *r, const param *p, int li, int first) {
    int64_t begin = p->offset, end = p->offset + tensor_numel(p->value);
    hooked_param h = {.name = p->name, .first = -1, .last = -1};
    for (int b = first; b < r->n_buckets; b++) {
        const reducer_bucket *w = &r->buckets[b].where;
        if (w->list != li || w->begin >= end || w->end <= begin) continue;
        if (h.first < 0) h.first = b;
        h.last = b;
        r->buckets[b].pending++;
    }
    h.hook = tensor_grad_hook_add(p->value, on_gradient, r, r->n_params);
    if (!h.hook) return err_prefix("reducer: parameter %s", p->name);
    r->params[r->n_params++] = h;
    return 0;
}

reducer *reducer_new(dist *d, param_list *const *lists, int n_lists, const reducer_options *o) {
    if (o->bucket_elements < 1) return err_set("reducer: buckets of %lld elements", (long long)o->bucket_elements), NULL;
    reducer *r = xcalloc(1, sizeof *r);
    r->d = d;
    r->to_owners = o->to_owners;
    int total = 0;
    for (int i = 0; i < n_lists; i++) total += lists[i]->n;
    r->params = xmalloc((size_t)(total > 0 ? total : 1) * sizeof *r->params);
    int rc = 0;
    for (int li = n_lists - 1; li >= 0 && rc == 0; li--) {  // the last list's end first, as the backward
        const param_list *l = lists[li];
        if (l->n_trainable == 0) continue;
        int first = r->n_buckets;
        cut_buckets(r, l, li, o->bucket_elements);
        for (int i = 0; i < l->n && rc == 0; i++) {
            const param *p = &l->items[i];
            if (!p->frozen && tensor_numel(p->value) > 0) rc = hook_param(r, p, li, first);
        }
        for (int b = first; b < r->n_buckets && rc == 0; b++)
            if (!r->buckets[b].grad) rc = -1;
    }
    if (rc != 0) {
        reducer_free(r);
        return NULL;
    }
    return r;
}

void reducer_free(reducer *r) {
    if (!r) return;
    for (int j = 0; j < r->n_params; j++) tensor_grad_hook_remove(r->params[j].hook);
    for (int b = 0; b < r->n_buckets; b++) tensor_free(r->buckets[b].grad);
    free(r->params);
    free(r->buckets);
    free(r);
}

void reducer_count(reducer *r, bool on) { r->counting = on; }

int reducer_finish(reducer *r, tensor *const *extra, int n_extra) {
    r->counting = false;
    while (!r->failed && r->next < r->n_buckets) start(r, &r->buckets[r->next++]);
    if (!r->failed && n_extra > 0 && dist_start_sum(r->d, extra, n_extra, DIST_ALL_RANKS) != 0) fail(r, err_msg());
    if (r->failed) return err_set("%s", r->error);
    return dist_wait_sums(r->d);
}

int reducer_times(reducer *r, double *comm_s, double *exposed_s) { return dist_sum_times(r->d, comm_s, exposed_s); }

int reducer_bucket_count(const reducer *r) { return r->n_buckets; }
reducer_bucket reducer_get_bucket(const reducer *r, int b) { return r->buckets[b].where; }
int reducer_started(const reducer *r) { return r->next; }
