#include "distributed/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "shim/dist.h"

struct dist {
    dist_env env;
    tensor_device device;
    dist_backend backend;
    dist_pg *pg;
    int64_t step;
    char phase[64];
};

// Whether CUDA_VISIBLE_DEVICES shows this process exactly one GPU: a launcher that gives each task
// its own (Slurm's --gpus-per-task), so that GPU 0 is this rank's whatever its local rank.
static bool one_gpu_per_task(void) {
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    return v && *v && !strchr(v, ',');
}

// Rank r computes on GPU LOCAL_RANK; a rank beyond the visible GPUs is an error (sharing a GPU
// between ranks fails in NCCL later, or runs slowly), unless the launcher bound one GPU to it.
static int pick_gpu(const dist_env *env, int *gpu) {
    int count = tensor_cuda_device_count();
    if (count == 0) return err_set("rank %d: a CUDA device was asked for but no GPU is visible", env->rank);
    if (env->local_rank < count) *gpu = env->local_rank;
    else if (count == 1 && one_gpu_per_task()) *gpu = 0;
    else
        return err_set("rank %d: local rank %d needs GPU %d but only %d GPU%s visible (one GPU per rank: start at most "
                       "%d ranks on this node)", env->rank, env->local_rank, env->local_rank, count,
                       count == 1 ? " is" : "s are", count);
    return 0;
}

// Under a launcher: a CUDA rank's GPU; in strict device mode a CPU rank's own cpu:(LOCAL_RANK + 1).
static int pick_device(const dist_options *o, const dist_env *env, tensor_device *dev) {
    *dev = o->device;
    if (env->launcher == DIST_LAUNCHER_NONE) return 0;
    if (dev->type == TENSOR_DEVICE_CPU && tensor_strict_devices()) dev->index = env->local_rank + 1;
    return dev->type == TENSOR_DEVICE_CUDA ? pick_gpu(env, &dev->index) : 0;
}

static bool env_on(const char *name) {
    const char *v = getenv(name);
    return v && strcmp(v, "1") == 0;
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
        .debug = o->debug || env_on("CLIPC_DIST_DEBUG"),
        .fail_at = getenv("CLIPC_DIST_FAIL_AT"),
        .agent_store_prefix = env.agent_store_prefix,
        .notice = o->notice,
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

void dist_shard_range(int64_t n, int rank, int world, int64_t *lo, int64_t *hi) {
    int64_t S = world > 0 ? (n + world - 1) / world : n;
    *lo = (int64_t)rank * S < n ? (int64_t)rank * S : n;
    *hi = (int64_t)(rank + 1) * S < n ? (int64_t)(rank + 1) * S : n;
}
const char *dist_backend_label(const dist *d) { return dist_backend_name(d->backend); }
dist_pg *dist_get_pg(const dist *d) { return d->pg; }

const char *dist_backends_built(void) {
    if (dist_backend_built(DIST_BACKEND_GLOO) && dist_backend_built(DIST_BACKEND_NCCL)) return "local, gloo, nccl";
    if (dist_backend_built(DIST_BACKEND_GLOO)) return "local, gloo";
    return dist_backend_built(DIST_BACKEND_NCCL) ? "local, nccl" : "local";
}

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

// "train/step.c:61" from __FILE__ ":" __LINE__, which may be an absolute path: the last folder and file.
static void set_site(dist *d, const char *site) {
    const char *p = site + strlen(site), *start = site;
    for (int slashes = 0; p > site; p--)
        if (p[-1] == '/' && ++slashes == 2) {
            start = p;
            break;
        }
    dist_pg_set_site(d->pg, start);
}

int dist_all_reduce_at(dist *d, tensor *const *tensors, int n, const char *site) {
    set_site(d, site);
    return dist_pg_all_reduce(d->pg, tensors, n);
}

int dist_all_gather_at(dist *d, tensor *out, const tensor *in, const char *site) {
    set_site(d, site);
    return dist_pg_all_gather(d->pg, out, in);
}

int dist_reduce_scatter_at(dist *d, tensor *out, const tensor *in, const char *site) {
    set_site(d, site);
    return dist_pg_reduce_scatter(d->pg, out, in);
}

int dist_broadcast_at(dist *d, tensor *const *tensors, int n, int root, const char *site) {
    set_site(d, site);
    return dist_pg_broadcast(d->pg, tensors, n, root);
}

int dist_barrier_at(dist *d, const char *site) {
    set_site(d, site);
    return dist_pg_barrier(d->pg);
}

int dist_synchronize(dist *d) { return dist_pg_synchronize(d->pg); }

int dist_start_sum_at(dist *d, tensor *const *tensors, int n, int root, const char *site) {
    set_site(d, site);
    return dist_pg_start_sum(d->pg, tensors, n, root);
}

int dist_wait_sums(dist *d) { return dist_pg_wait_sums(d->pg); }

int dist_sum_times(dist *d, double *comm_s, double *exposed_s) { return dist_pg_sum_times(d->pg, comm_s, exposed_s); }

// A host buffer of n values through a collective on this rank's device, and back.
typedef enum { CONTROL_BROADCAST, CONTROL_SUM } control_kind;

static int control(dist *d, void *values, int64_t n, tensor_dtype dtype, control_kind kind, int root, const char *site) {
    if (n <= 0) return 0;
    tensor_scope_begin();
    tensor *t = tensor_to_device(tensor_from_host(values, &n, 1, dtype, false), d->device, false);
    tensor *one[1] = {t};
    int rc = !t ? -1 : kind == CONTROL_SUM ? dist_all_reduce_at(d, one, 1, site) : dist_broadcast_at(d, one, 1, root, site);
    if (rc == 0) rc = dist_synchronize(d);
    if (rc == 0) rc = tensor_to_host(t, values, (size_t)n * tensor_dtype_size(dtype));
    tensor_scope_end();
    return rc;
}

int dist_broadcast_text_at(dist *d, char *text, size_t cap, int root, const char *site) {
    if (cap == 0) return 0;
    int rc = control(d, text, (int64_t)cap, TENSOR_U8, CONTROL_BROADCAST, root, site);
    text[cap - 1] = '\0';
    return rc;
}

int dist_broadcast_i64_at(dist *d, int64_t *values, int n, int root, const char *site) {
    return control(d, values, n, TENSOR_I64, CONTROL_BROADCAST, root, site);
}

int dist_all_reduce_f64_at(dist *d, double *values, int n, const char *site) {
    return control(d, values, n, TENSOR_F64, CONTROL_SUM, 0, site);
}

int dist_all_agree_at(dist *d, bool *flag, const char *site) {
    int64_t no = *flag ? 0 : 1;  // the ranks that say no
    if (control(d, &no, 1, TENSOR_I64, CONTROL_SUM, 0, site) != 0) return -1;
    *flag = no == 0;
    return 0;
}

int dist_wait_lead(dist *d, int *status) {
    int64_t v = *status;
    if (dist_pg_wait_root(d->pg, 0, &v, DIST_LEAD_WAIT_S) != 0) return -1;
    *status = (int)v;
    return 0;
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
