#include "distributed/dist.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"

struct dist {
    dist_env env;
    tensor_device device;
    dist_backend backend;
    dist_pg *pg;
    int64_t step;
    char phase[64];
};

// Rank r computes on GPU LOCAL_RANK, or on GPU 0 when it sees one GPU only (a launcher that gives
// each task its own GPU through CUDA_VISIBLE_DEVICES).
static int pick_gpu(const dist_env *env, int *gpu) {
    int count = tensor_cuda_device_count();
    if (count == 0) return err_set("rank %d: a CUDA device was asked for but no GPU is visible", env->rank);
    if (env->local_rank < count) *gpu = env->local_rank;
    else if (count == 1) *gpu = 0;
    else
        return err_set("rank %d: local rank %d but only %d GPUs are visible", env->rank, env->local_rank, count);
    return 0;
}

static int pick_device(const dist_options *o, const dist_env *env, tensor_device *dev) {
    *dev = o->device;
    if (env->launcher == DIST_LAUNCHER_NONE || dev->type != TENSOR_DEVICE_CUDA) return 0;
    return pick_gpu(env, &dev->index);
}

dist *dist_init(const dist_options *o) {
    dist_env env;
    tensor_device device;
    if (dist_env_read(&env, NULL) || pick_device(o, &env, &device)) return NULL;
    dist_pg_options po = {
        .backend = env.launcher == DIST_LAUNCHER_NONE       ? DIST_BACKEND_LOCAL
                   : device.type == TENSOR_DEVICE_CUDA ? DIST_BACKEND_NCCL
                                                       : DIST_BACKEND_GLOO,
        .rank = env.rank,
        .world_size = env.world_size,
        .master_addr = env.master_addr,
        .master_port = env.master_port,
        .device = device.index,
        .timeout_s = o->timeout_s > 0 ? o->timeout_s : DIST_DEFAULT_TIMEOUT_S,
        .agent_store_prefix = env.agent_store_prefix,
    };
    dist_pg *pg = dist_pg_new(&po);
    if (!pg) return NULL;
    dist *d = xcalloc(1, sizeof *d);
    d->env = env;
    d->device = device;
    d->backend = po.backend;
    d->pg = pg;
    d->step = -1;
    return d;
}

void dist_free(dist *d) {
    if (!d) return;
    dist_pg_free(d->pg);
    free(d);
}

int dist_rank(const dist *d) { return d->env.rank; }
int dist_world_size(const dist *d) { return d->env.world_size; }
const dist_env *dist_get_env(const dist *d) { return &d->env; }
tensor_device dist_device(const dist *d) { return d->device; }
dist_pg *dist_get_pg(const dist *d) { return d->pg; }

static void update_where(dist *d) {
    char where[128];
    if (d->phase[0] && d->step >= 0) snprintf(where, sizeof where, "step %lld (%s)", (long long)d->step, d->phase);
    else if (d->phase[0]) snprintf(where, sizeof where, "%s", d->phase);
    else if (d->step >= 0) snprintf(where, sizeof where, "step %lld", (long long)d->step);
    else where[0] = '\0';
    dist_pg_set_where(d->pg, where);
}

void dist_set_step(dist *d, int64_t step) {
    d->step = step;
    update_where(d);
}

void dist_set_phase(dist *d, const char *phase) {
    snprintf(d->phase, sizeof d->phase, "%s", phase ? phase : "");
    update_where(d);
}

int dist_all_reduce_f64(dist *d, double *values, int n) {
    if (n <= 0) return 0;
    tensor_scope_begin();
    int64_t shape[1] = {n};
    tensor *t = tensor_to_device(tensor_from_host(values, shape, 1, TENSOR_F64, false), d->device, false);
    int rc = !t || dist_pg_all_reduce(d->pg, &t, 1) || dist_pg_synchronize(d->pg)
                 ? -1
                 : tensor_to_host(t, values, (size_t)n * sizeof(double));
    tensor_scope_end();
    return rc;
}

double dist_comm_seconds(const dist *d) {
    dist_pg_stats s = dist_pg_get_stats(d->pg);
    double total = 0;
    for (int k = 0; k < DIST_OP_COUNT; k++) total += s.op[k].seconds;
    return total;
}

static void print_bytes(double bytes, FILE *f) {
    const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    for (; bytes >= 1000 && u < 4; u++) bytes /= 1000;
    fprintf(f, "%8.2f %-2s", bytes, unit[u]);
}

void dist_print_stats(const dist *d, double elapsed_s, FILE *f) {
    dist_pg_stats s = dist_pg_get_stats(d->pg);
    double total = dist_comm_seconds(d);
    fprintf(f, "collectives on rank %d of %d (%s): %.3f s of %.2f s (%.1f%%)\n", d->env.rank, d->env.world_size,
            dist_backend_name(d->backend), total, elapsed_s, elapsed_s > 0 ? 100.0 * total / elapsed_s : 0.0);
    for (int k = 0; k < DIST_OP_COUNT; k++) {
        const dist_op_stats *o = &s.op[k];
        if (o->calls == 0) continue;
        fprintf(f, "  %-15s %6lld calls ", dist_op_name((dist_op)k), (long long)o->calls);
        print_bytes((double)o->bytes, f);
        fprintf(f, " %9.3f s\n", o->seconds);
    }
}
