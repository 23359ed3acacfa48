// Tests the collectives (shim/dist.h through distributed/dist.h) with several processes on this machine:
// each test forks its ranks with torchrun's variables (127.0.0.1, a free port), so dist_init()
// takes the Gloo backend. Checked exactly: all_reduce of several tensors (and of a bucket view of
// a flat buffer), all_gather, reduce_scatter, broadcast, barrier and dist_all_reduce_f64, and the
// counts of dist_pg_get_stats (calls and bytes per kind; failed calls not counted). Then the
// failures: a peer that exits or is stuck before a collective (rank 0, which serves the store,
// included) makes the others fail within the timeout with one line naming their rank, the
// collective, the step and the peer; a missing rank fails the rendezvous; the one-process backend
// checks shapes, dtypes and contiguity; NCCL refuses to start without a GPU. The gradient sums
// overlapped with the backward (distributed/reducer.h): the same weights as the sums after it,
// bitwise, with micro-batches and a parameter of the loss alone; the reducer's buckets (cut at the
// ZeRO shard boundaries), which of them start during the backward, sums to every rank or to each
// bucket's owner; a peer gone mid-step fails the step within the timeout, naming it.
// checks shapes, dtypes and contiguity; NCCL refuses to start without a GPU. ZeRO's step
// (train/zero.h) on 3 ranks equals the unsharded one, in one bucket or many.
//
// Ranks report through their exit code (cmocka asserts stay in the parent) and print what failed.
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "distributed/dist.h"
#include "distributed/reducer.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "param/param.h"
#include "train/step.h"
#include "train/zero.h"
#include "shim/dist.h"  // the shim group of dist_get_pg, for its statistics and NCCL

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed (last error: %s)\n", rank, __FILE__, __LINE__, \
                    #cond, err_msg());                                                                       \
            return 1;                                                                                        \
        }                                                                                                    \
    } while (0)

typedef int (*rank_fn)(int rank, const void *arg);

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

// Runs fn in `world` forked ranks that see torchrun's variables; codes[r] is rank r's exit code
// (-1 when it had to be killed). When every rank but `straggler` has exited, the straggler is
// killed; every rank still running after limit_s is killed.
static void run_ranks(int world, rank_fn fn, const void *arg, int straggler, double limit_s, int *codes) {
    char port[16], size[16];
    snprintf(port, sizeof port, "%d", free_port());
    snprintf(size, sizeof size, "%d", world);
    pid_t pids[8];
    fflush(NULL);
    for (int r = 0; r < world; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0) {
            char rank[16];
            snprintf(rank, sizeof rank, "%d", r);
            setenv("MASTER_ADDR", "127.0.0.1", 1);
            setenv("MASTER_PORT", port, 1);
            setenv("WORLD_SIZE", size, 1);
            setenv("RANK", rank, 1);
            setenv("LOCAL_RANK", rank, 1);
            _exit(fn(r, arg));
        }
    }
    double start = now_s();
    for (int left = world; left > 0;) {
        for (int r = 0; r < world; r++) {
            int st;
            if (pids[r] <= 0 || waitpid(pids[r], &st, WNOHANG) != pids[r]) continue;
            codes[r] = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);  // -13: SIGPIPE, -9: SIGKILL
            pids[r] = 0;
            left--;
        }
        bool only_straggler = left == 1 && straggler >= 0 && pids[straggler] > 0;
        if (left > 0 && (only_straggler || now_s() - start > limit_s))
            for (int r = 0; r < world; r++)
                if (pids[r] > 0) kill(pids[r], SIGKILL);
        usleep(10000);
    }
}

static dist *init_cpu(double timeout_s) {
    dist_options o = {.device = TENSOR_CPU, .timeout_s = timeout_s};
    return dist_init(&o);
}

static dist *the_dist;  // the context of this rank's test, whose device from_host places tensors on

// A host buffer on this rank's device (strict device mode: its own cpu:N).
static tensor *from_host(const void *v, const int64_t *shape, int ndim, tensor_dtype dtype) {
    return tensor_to_device(tensor_from_host(v, shape, ndim, dtype, false), dist_device(the_dist), false);
}

static tensor *from_floats(const float *v, const int64_t *shape, int ndim) { return from_host(v, shape, ndim, TENSOR_F32); }

static dist *init_rank(double timeout_s) { return the_dist = init_cpu(timeout_s); }

// ---- results -------------------------------------------------------------------------------------

static int rank_all_reduce(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(20);
    CHECK(d && dist_rank(d) == rank && dist_world_size(d) == 3);
    CHECK(dist_get_env(d)->launcher == DIST_LAUNCHER_TORCHRUN);
    tensor_scope_begin();
    float a[6], flat[10];
    int64_t b[4];
    double c = rank + 0.25;
    for (int i = 0; i < 6; i++) a[i] = (float)((rank + 1) * (i + 1)) * 0.5f;
    for (int i = 0; i < 4; i++) b[i] = rank * 1000 + i;
    for (int i = 0; i < 10; i++) flat[i] = (float)rank;
    int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[1] = {1}, sf[1] = {10};
    tensor *ta = from_floats(a, sa, 2), *tb = from_host(b, sb, 1, TENSOR_I64);
    tensor *tc = from_host(&c, sc, 1, TENSOR_F64), *tf = from_floats(flat, sf, 1);
    tensor *ts[] = {ta, tb, tc, tensor_slice(tf, 0, 2, 7)};  // the last: a bucket of a flat buffer
    CHECK(dist_all_reduce(d, ts, 4) == 0);
    CHECK(tensor_to_host(ta, a, sizeof a) == 0 && tensor_to_host(tb, b, sizeof b) == 0);
    CHECK(tensor_to_host(tc, &c, sizeof c) == 0 && tensor_to_host(tf, flat, sizeof flat) == 0);
    for (int i = 0; i < 6; i++) CHECK(a[i] == 3.0f * (float)(i + 1));
    for (int i = 0; i < 4; i++) CHECK(b[i] == 3000 + 3 * i);
    CHECK(c == 3.75);
    for (int i = 0; i < 10; i++) CHECK(flat[i] == (i >= 2 && i < 7 ? 3.0f : (float)rank));
    double host[2] = {rank, 1};
    CHECK(dist_all_reduce_f64(d, host, 2) == 0 && host[0] == 3 && host[1] == 3);
    // Two all_reduce calls: 24 + 32 + 8 + 20 bytes, then 16; nothing else.
    dist_pg_stats st = dist_pg_get_stats(dist_get_pg(d));
    CHECK(st.op[DIST_OP_ALL_REDUCE].calls == 2 && st.op[DIST_OP_ALL_REDUCE].bytes == 100);
    CHECK(st.op[DIST_OP_ALL_REDUCE].seconds > 0 && dist_comm_seconds(d) == st.op[DIST_OP_ALL_REDUCE].seconds);
    for (int k = 0; k < DIST_OP_COUNT; k++) CHECK(k == DIST_OP_ALL_REDUCE || st.op[k].calls == 0);
    tensor_scope_end();
    dist_free(d);
    return 0;
}

// The stats after rank_gather_scatter's collectives: one call of each kind but the sums, with
// the (6, 3) float tensor gathered and scattered, 3 floats and 4 int64 broadcast.
static int check_gather_scatter_stats(int rank, const dist *d) {
    dist_pg_stats st = dist_pg_get_stats(dist_get_pg(d));
    const int64_t bytes[DIST_OP_COUNT] = {[DIST_OP_ALL_GATHER] = 72, [DIST_OP_REDUCE_SCATTER] = 72,
                                          [DIST_OP_BROADCAST] = 44, [DIST_OP_BARRIER] = 0};
    for (int k = 0; k < DIST_OP_COUNT; k++) {
        bool sum = k == DIST_OP_ALL_REDUCE || k == DIST_OP_REDUCE;
        CHECK(st.op[k].calls == (sum ? 0 : 1) && st.op[k].bytes == bytes[k]);
        CHECK(sum ? st.op[k].seconds == 0 : st.op[k].seconds > 0);
    }
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    dist_print_stats(d, 10.0, f);
    fclose(f);
    bool ok = strstr(text, "of 3 (gloo): ") && strstr(text, "all_gather") && strstr(text, "1 calls    72.00 B") &&
              strstr(text, "44.00 B") && !strstr(text, "all_reduce");
    if (!ok) fprintf(stderr, "rank %d: unexpected stats:\n%s", rank, text);
    free(text);
    CHECK(ok);
    return 0;
}

static int rank_gather_scatter(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(20);
    CHECK(d);
    tensor_scope_begin();
    // all_gather: in (2, 3) = rank*10 + i; out (6, 3) holds rank r's rows at [2r, 2r+2).
    float in[6], out[18];
    for (int i = 0; i < 6; i++) in[i] = (float)(rank * 10 + i);
    int64_t s_in[2] = {2, 3}, s_out[2] = {6, 3};
    tensor *tout = tensor_zeros(s_out, 2, TENSOR_F32, dist_device(d));
    CHECK(dist_all_gather(d, tout, from_floats(in, s_in, 2)) == 0);
    CHECK(tensor_to_host(tout, out, sizeof out) == 0);
    for (int i = 0; i < 18; i++) CHECK(out[i] == (float)((i / 6) * 10 + i % 6));
    // reduce_scatter: in (6, 3) = rank*100 + i; this rank's out (2, 3) = sum over ranks of rows [2 rank, 2 rank + 2).
    float all[18], mine[6];
    for (int i = 0; i < 18; i++) all[i] = (float)(rank * 100 + i);
    tensor *tmine = tensor_zeros(s_in, 2, TENSOR_F32, dist_device(d));
    CHECK(dist_reduce_scatter(d, tmine, from_floats(all, s_out, 2)) == 0);
    CHECK(tensor_to_host(tmine, mine, sizeof mine) == 0);
    for (int k = 0; k < 6; k++) CHECK(mine[k] == (float)(300 + 3 * (rank * 6 + k)));
    // broadcast of two tensors from rank 1.
    float x[3] = {(float)rank, (float)rank, (float)rank};
    int64_t y[4] = {rank * 7, rank * 7, rank * 7, rank * 7}, sx[1] = {3}, sy[2] = {2, 2};
    tensor *tx = from_floats(x, sx, 1), *ty = from_host(y, sy, 2, TENSOR_I64);
    tensor *both[] = {tx, ty};
    CHECK(dist_broadcast(d, both, 2, 1) == 0);
    CHECK(tensor_to_host(tx, x, sizeof x) == 0 && tensor_to_host(ty, y, sizeof y) == 0);
    for (int i = 0; i < 3; i++) CHECK(x[i] == 1.0f);
    for (int i = 0; i < 4; i++) CHECK(y[i] == 7);
    CHECK(dist_barrier(d) == 0 && dist_synchronize(d) == 0);
    CHECK(check_gather_scatter_stats(rank, d) == 0);
    tensor_scope_end();
    dist_free(d);
    return 0;
}

// The multi-rank tests run on Gloo (a build without it, such as one against a libtorch without
// c10d's Gloo headers, skips them).
static void need_gloo(void) {
    if (!dist_backend_built(DIST_BACKEND_GLOO)) skip();
}

static void expect_all_zero(const int *codes, int world) {
    for (int r = 0; r < world; r++)
        if (codes[r] != 0) fail_msg("rank %d ended with %d", r, codes[r]);
}

static void test_all_reduce(void **state) {
    (void)state;
    need_gloo();
    int codes[3];
    run_ranks(3, rank_all_reduce, NULL, -1, 30, codes);
    expect_all_zero(codes, 3);
}

static void test_gather_scatter_broadcast(void **state) {
    (void)state;
    need_gloo();
    int codes[3];
    run_ranks(3, rank_gather_scatter, NULL, -1, 30, codes);
    expect_all_zero(codes, 3);
}

// ---- dead and stuck peers ------------------------------------------------------------------------

typedef struct {
    int victim;
    bool stuck;  // sleeps instead of exiting
} dead_case;

#define DEAD_TIMEOUT_S 3.0

static int rank_dead_peer(int rank, const void *arg) {
    const dead_case *dc = arg;
    dist *d = init_rank(DEAD_TIMEOUT_S);
    CHECK(d);
    int64_t shape[1] = {4};
    tensor *t = tensor_ones(shape, 1, TENSOR_F32, dist_device(d));
    CHECK(dist_all_reduce(d, &t, 1) == 0);  // everyone is there once
    dist_set_step(d, 12);
    if (rank == dc->victim) {
        if (dc->stuck) sleep(60);
        _exit(0);
    }
    double t0 = now_s();
    int rc = dist_all_reduce(d, &t, 1);
    double took = now_s() - t0;
    CHECK(rc == -1);
    fprintf(stderr, "%s (after %.1f s)\n", err_msg(), took);
    char expect[64];
    snprintf(expect, sizeof expect, "rank %d: all_reduce at step 12 ", rank);
    CHECK(strstr(err_msg(), expect) == err_msg());
    snprintf(expect, sizeof expect, "(peer rank %d gone?)", dc->victim);
    CHECK(strstr(err_msg(), expect));
    CHECK(!dc->stuck || strstr(err_msg(), "timed out after 3 s"));
    CHECK(took < DEAD_TIMEOUT_S + 4);  // the timeout, then at most 2 s looking for who is missing (and slack)
    CHECK(dist_barrier(d) == -1 && strstr(err_msg(), "all_reduce at step 12"));  // the group stays broken
    double f0 = now_s();
    dist_free(d);
    CHECK(now_s() - f0 < 5);
    tensor_free(t);
    return 0;
}

static void run_dead_case(int victim, bool stuck) {
    need_gloo();
    dead_case dc = {victim, stuck};
    int codes[3];
    double t0 = now_s();
    run_ranks(3, rank_dead_peer, &dc, victim, 30, codes);
    for (int r = 0; r < 3; r++)
        if (r != victim && codes[r] != 0) fail_msg("rank %d ended with %d", r, codes[r]);
    assert_true(now_s() - t0 < 25);
}

static void test_stuck_peer(void **state) {
    (void)state;
    run_dead_case(2, true);
}

static void test_exited_peer(void **state) {
    (void)state;
    run_dead_case(1, false);
}

static void test_store_rank_exited(void **state) {
    (void)state;
    run_dead_case(0, false);
}

static char last_notice[512];  // the last line the rendezvous reported while waiting
static int n_notices;

static void keep_notice(const char *line) {
    snprintf(last_notice, sizeof last_notice, "%s", line);
    n_notices++;
}

static int rank_alone(int rank, const void *arg) {
    const int *absent = arg;
    if (rank == *absent) return 0;  // never joins
    double t0 = now_s();
    dist *d = dist_init(&(dist_options){.device = TENSOR_CPU, .timeout_s = 2, .notice = keep_notice});
    CHECK(!d);
    // It never waits silently: a line after half the timeout says for what.
    fprintf(stderr, "notice: %s\n", last_notice);
    CHECK(n_notices >= 1);
    CHECK(strstr(last_notice, rank == 0 ? "rank 0: waiting for rank 1 to join the gloo group at 127.0.0.1:"
                                        : "rank 1: waiting for the store of rank 0 at 127.0.0.1:"));
    fprintf(stderr, "%s (after %.1f s)\n", err_msg(), now_s() - t0);
    char expect[64];
    snprintf(expect, sizeof expect, "rank %d: joining the gloo group of 2 ranks at 127.0.0.1:", rank);
    CHECK(strstr(err_msg(), expect) == err_msg());
    // Rank 0 names who is missing; without rank 0 there is no store to reach.
    CHECK(strstr(err_msg(), rank == 0 ? "rank 1 did not join within 2 s" : "timed out"));
    CHECK(now_s() - t0 < 6);
    return 0;
}

static void test_rendezvous_timeout(void **state) {
    (void)state;
    need_gloo();
    for (int absent = 0; absent < 2; absent++) {
        int codes[2];
        run_ranks(2, rank_alone, &absent, -1, 20, codes);
        expect_all_zero(codes, 2);
    }
}

// ---- one process ---------------------------------------------------------------------------------

// A fresh one-process context whose next all_gather(out, in) fails with a message containing `text`.
static int expect_local_gather_error(int rank, tensor *out, tensor *in, const char *text) {
    dist *d = init_cpu(0);
    CHECK(d && dist_get_env(d)->launcher == DIST_LAUNCHER_NONE);
    dist_set_step(d, 40);
    dist_set_phase(d, "eval");
    CHECK(dist_all_gather(d, out, in) == -1);
    if (!strstr(err_msg(), text)) fprintf(stderr, "'%s' lacks '%s'\n", err_msg(), text);
    CHECK(strstr(err_msg(), text));
    CHECK(dist_pg_get_stats(dist_get_pg(d)).op[DIST_OP_ALL_GATHER].calls == 0);  // failed calls are not counted
    dist_free(d);
    return 0;
}

static int rank_local(int rank, const void *arg) {
    (void)arg;
    unsetenv("RANK"), unsetenv("WORLD_SIZE"), unsetenv("LOCAL_RANK");
    dist *d = init_rank(0);
    CHECK(d && dist_world_size(d) == 1 && dist_rank(d) == 0);
    tensor_scope_begin();
    float v[6] = {1, 2, 3, 4, 5, 6}, got[6];
    int64_t s[2] = {2, 3};
    tensor *in = from_floats(v, s, 2), *out = tensor_zeros(s, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_all_gather(d, out, in) == 0 && tensor_to_host(out, got, sizeof got) == 0);
    CHECK(!memcmp(got, v, sizeof v));
    tensor *sum = tensor_zeros(s, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_reduce_scatter(d, sum, in) == 0 && tensor_to_host(sum, got, sizeof got) == 0);
    CHECK(!memcmp(got, v, sizeof v));
    CHECK(dist_all_reduce(d, &in, 1) == 0 && tensor_to_host(in, got, sizeof got) == 0);
    CHECK(!memcmp(got, v, sizeof v));
    double host[1] = {2.5};
    CHECK(dist_all_reduce_f64(d, host, 1) == 0 && host[0] == 2.5);
    dist_free(d);

    int64_t s3[2] = {3, 3};
    if (expect_local_gather_error(rank, tensor_zeros(s3, 2, TENSOR_F32, TENSOR_CPU), in,
                                  "rank 0: all_gather at step 40 (eval): out is [3, 3], expected [2, 3]"))
        return 1;
    if (expect_local_gather_error(rank, tensor_zeros(s, 2, TENSOR_F64, TENSOR_CPU), in, "out is Double but in is Float"))
        return 1;
    if (expect_local_gather_error(rank, tensor_zeros(s, 2, TENSOR_F32, TENSOR_CPU), tensor_transpose(out, 0, 1),
                                  "in is not contiguous"))
        return 1;
    tensor_scope_end();
    CHECK(tensor_live_count() == 0);
    return 0;
}

static void test_local(void **state) {
    (void)state;
    int codes[1];
    run_ranks(1, rank_local, NULL, -1, 20, codes);
    expect_all_zero(codes, 1);
}

static int rank_nccl(int rank, const void *arg) {
    const int *port = arg;
    dist_pg_options o = {.backend = DIST_BACKEND_NCCL, .rank = 0, .world_size = 1, .master_addr = "127.0.0.1",
                         .master_port = *port, .timeout_s = 5};
    dist_pg *pg = dist_pg_new(&o);
    if (tensor_cuda_device_count() == 0) {
        CHECK(!pg);
        fprintf(stderr, "%s\n", err_msg());
        CHECK(strstr(err_msg(), "rank 0: the NCCL backend needs a GPU and none is visible") ||
              strstr(err_msg(), "the NCCL backend needs a CUDA-enabled libtorch"));
        return 0;
    }
    CHECK(pg);  // a GPU machine: one rank through NCCL
    int64_t s[1] = {4};
    tensor *t = tensor_ones(s, 1, TENSOR_F32, (tensor_device){TENSOR_DEVICE_CUDA, 0});
    float got[4];
    CHECK(dist_pg_all_reduce(pg, &t, 1) == 0 && dist_pg_synchronize(pg) == 0 && dist_pg_barrier(pg) == 0);
    CHECK(tensor_to_host(t, got, sizeof got) == 0 && got[0] == 1.0f);
    tensor_free(t);
    dist_pg_free(pg);
    return 0;
}

static void test_nccl(void **state) {
    (void)state;
    if (!dist_backend_built(DIST_BACKEND_NCCL)) skip();
    int port = free_port(), codes[1];
    run_ranks(1, rank_nccl, &port, -1, 20, codes);
    expect_all_zero(codes, 1);
}

// ---- strict device mode, control messages, the consistency check ---------------------------------

// Each rank computes on a device of its own: what NCCL would refuse, the group refuses (a refused
// call breaks the group: with *arg, the refusal of a host tensor ends the test).
static int rank_strict(int rank, const void *arg) {
    bool host_tensor = *(const bool *)arg;
    dist *d = init_rank(20);
    CHECK(d);
    tensor_device mine = dist_device(d), other = {TENSOR_DEVICE_CPU, 3 - dist_device(d).index};
    CHECK(tensor_strict_devices() && mine.type == TENSOR_DEVICE_CPU && mine.index == rank + 1);
    tensor_scope_begin();
    char name[16];
    tensor_device parsed;
    tensor_device_format(mine, name, sizeof name);
    CHECK(tensor_device_parse(name, &parsed) == 0 && parsed.index == mine.index);
    // Failure 1's kind: a control message made on the host and handed to a collective.
    char text[32] = "", expect[128];
    snprintf(text, sizeof text, "rank %d's name", rank);
    if (host_tensor) {
        int64_t n = sizeof text;
        tensor *host = tensor_from_host(text, &n, 1, TENSOR_U8, false);
        CHECK(dist_broadcast(d, &host, 1, 0) == -1);
        snprintf(expect, sizeof expect, "tensor 0 is on the host but the group works on cpu:%d (strict device mode", rank + 1);
        if (!strstr(err_msg(), expect)) fprintf(stderr, "rank %d: %s\n", rank, err_msg());
        CHECK(strstr(err_msg(), expect));
        tensor_scope_end();
        dist_free(d);
        return 0;
    }
    // Control messages go through the helpers, which the control-message helpers place right.
    CHECK(dist_broadcast_text(d, text, sizeof text, 0) == 0 && !strcmp(text, "rank 0's name"));
    int64_t values[2] = {rank, 40 + rank};
    CHECK(dist_broadcast_i64(d, values, 2, 1) == 0 && values[0] == 1 && values[1] == 41);
    bool yes = true, no = rank == 0;
    CHECK(dist_all_agree(d, &yes) == 0 && yes && dist_all_agree(d, &no) == 0 && !no);
    // Tensors of two devices in one op, as CUDA refuses; a host scalar goes with any device.
    int64_t s2[1] = {2};
    tensor *a = tensor_ones(s2, 1, TENSOR_F32, mine), *b = tensor_ones(s2, 1, TENSOR_F32, other);
    CHECK(tensor_add(a, b) == NULL && strstr(err_msg(), "expected all tensors to be on the same device"));
    CHECK(tensor_add(a, tensor_from_host(values, s2, 1, TENSOR_F32, false)) == NULL);
    tensor *sum = tensor_add(a, tensor_scalar(1, TENSOR_F32, TENSOR_CPU));
    CHECK(sum && tensor_get_device(sum).index == mine.index);
    // A dtype NCCL lacks.
    tensor *flags = tensor_to_dtype(a, TENSOR_BOOL);
    CHECK(dist_all_reduce(d, &flags, 1) == -1 && strstr(err_msg(), "a dtype NCCL lacks"));
    tensor_scope_end();
    dist_free(d);
    return 0;
}

static void test_strict_devices(void **state) {
    (void)state;
    need_gloo();
    for (int host = 0; host < 2; host++) {
        bool host_tensor = host;
        int codes[2];
        run_ranks(2, rank_strict, &host_tensor, -1, 60, codes);
        expect_all_zero(codes, 2);
    }
}

typedef enum { MISMATCH_KIND, MISMATCH_SHAPE } mismatch;

// Rank 1 calls a different collective (or shape) than rank 0: both stop at once naming both.
static int rank_mismatch(int rank, const void *arg) {
    mismatch m = *(const mismatch *)arg;
    dist *d = init_rank(30);
    CHECK(d);
    dist_set_step(d, 5);
    int64_t s4[1] = {4}, s5[1] = {5}, s8[1] = {8};
    tensor *t4 = tensor_ones(s4, 1, TENSOR_F32, dist_device(d)), *t5 = tensor_ones(s5, 1, TENSOR_F32, dist_device(d));
    tensor *t8 = tensor_zeros(s8, 1, TENSOR_F32, dist_device(d));
    CHECK(dist_barrier(d) == 0);
    double t0 = now_s();
    int rc = rank == 0 ? dist_all_reduce(d, &t4, 1)
             : m == MISMATCH_KIND ? dist_all_gather(d, t8, t4)
                                  : dist_all_reduce(d, &t5, 1);
    CHECK(rc == -1);
    fprintf(stderr, "%s\n", err_msg());
    char expect[64];
    snprintf(expect, sizeof expect, "rank %d: collectives differ across ranks (--dist-debug): ", rank);
    CHECK(strstr(err_msg(), expect) == err_msg() && !strchr(err_msg(), '\n'));
    CHECK(strstr(err_msg(), "rank 0 collective 2 all_reduce of 1 tensor: Float [4] at step 5 (tests/test_dist.c:"));
    CHECK(strstr(err_msg(), m == MISMATCH_KIND ? "rank 1 collective 2 all_gather of 2 tensors: Float [8], Float [4] at step 5"
                                              : "rank 1 collective 2 all_reduce of 1 tensor: Float [5] at step 5"));
    CHECK(now_s() - t0 < 10);  // at once, not after the 30 s timeout
    tensor_free(t4), tensor_free(t5), tensor_free(t8);
    dist_free(d);
    return 0;
}

static void test_mismatch_named(void **state) {
    (void)state;
    need_gloo();
    for (mismatch m = MISMATCH_KIND; m <= MISMATCH_SHAPE; m++) {
        int codes[2];
        run_ranks(2, rank_mismatch, &m, -1, 40, codes);
        expect_all_zero(codes, 2);
    }
}

// Rank 0 works alone for longer than the collective timeout; the others wait for its outcome,
// then the group goes on.
static int rank_wait_lead(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(1);
    CHECK(d);
    int status = 0;
    if (rank == 0) {
        usleep(2500000);
        status = -1;
    }
    CHECK(dist_wait_lead(d, &status) == 0 && status == -1);
    int64_t s1[1] = {1};
    tensor *t = tensor_ones(s1, 1, TENSOR_F32, dist_device(d));
    CHECK(dist_all_reduce(d, &t, 1) == 0);
    tensor_free(t);
    dist_free(d);
    return 0;
}

static void test_wait_lead(void **state) {
    (void)state;
    need_gloo();
    int codes[3];
    run_ranks(3, rank_wait_lead, NULL, -1, 30, codes);
    expect_all_zero(codes, 3);
}

// A failure after the call returned (CLIPC_DIST_FAIL_AT, as NCCL's watchdog): the call succeeds,
// dist_synchronize reports it, and every later call too.
static int rank_async_failure(int rank, const void *arg) {
    (void)arg;
    setenv("CLIPC_DIST_FAIL_AT", "2", 1);
    dist *d = init_rank(20);
    CHECK(d);
    dist_set_step(d, 3);
    int64_t s1[1] = {1};
    tensor *t = tensor_ones(s1, 1, TENSOR_F32, dist_device(d));
    CHECK(dist_all_reduce(d, &t, 1) == 0 && dist_synchronize(d) == 0);
    CHECK(dist_all_reduce(d, &t, 1) == 0);
    char expect[128];
    snprintf(expect, sizeof expect, "rank %d: all_reduce at step 3 failed after it returned", rank);
    CHECK(dist_synchronize(d) == -1 && strstr(err_msg(), expect) == err_msg());
    CHECK(dist_barrier(d) == -1 && strstr(err_msg(), expect) == err_msg());
    tensor_free(t);
    dist_free(d);
    return 0;
}

static void test_async_failure(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_async_failure, NULL, -1, 30, codes);
    expect_all_zero(codes, 2);
}

// ---- the training step over 2 ranks ------------------------------------------------------------

#define STEP_IN 10
#define STEP_OUT 32  // 320 weights: over 256 buckets of one element

typedef struct {
    const float *x;  // (R*n, STEP_IN): the global batch; this rank's rows from rank*n
    int64_t first;   // this rank's first row
    tensor_device dev;
    tensor *w;       // (STEP_IN, STEP_OUT)
    tensor *scale;   // (1): multiplies the loss's logits, as the logit scale; NULL: none
} lin_objective;

// What one_step varies beyond its arguments (the overlap tests): the sums overlapped with the
// backward (distributed/reducer.h), a second parameter that the loss alone uses (as the logit
// scale: its gradient comes from the loss's backward, before the towers'), a rank that exits at
// its exit_at-th call of the features (a peer gone mid-step); scale_after: that parameter after.
typedef struct {
    bool overlap, scaled;
    int exit_at, calls;
    float scale_after;
    step_result result;
} step_variant;
static step_variant step_case;

static int lin_features(void *ctx, const void *batch, int64_t begin, int64_t end, tensor **out) {
    const lin_objective *o = ctx;
    (void)batch;
    if (++step_case.calls == step_case.exit_at) _exit(0);
    int64_t shape[2] = {end - begin, STEP_IN};
    const float *rows = o->x + (o->first + begin) * STEP_IN;
    out[0] = tensor_matmul(tensor_to_device(tensor_from_host(rows, shape, 2, TENSOR_F32, false), o->dev, false), o->w);
    return out[0] ? 0 : -1;
}

// Rows [r0, r1)'s share of sum_ij exp(f_i . f_j / 10) / N: every row's gradient reaches every rank.
static tensor *lin_loss_rows(void *ctx, tensor *const *all, int64_t r0, int64_t r1) {
    const lin_objective *o = ctx;
    tensor *g = tensor_matmul(tensor_slice(all[0], 0, r0, r1), tensor_transpose(all[0], 0, 1));
    if (o->scale) g = tensor_mul(g, o->scale);
    return tensor_mul_scalar(tensor_sum(tensor_exp(tensor_mul_scalar(g, 0.1))), 1.0 / (double)tensor_size(all[0], 0));
}

// Step number `step` from fresh weights (initial_weights) on n samples a rank, in K micro-batches
// and buckets of `bucket` gradients (0: the default), with ZeRO stage `zero` (train/zero.h) and
// clipping to `clip` (0: none); the weights after it into w. Returns step_run's result.
static int one_step_zero(dist *d, int64_t step, int64_t n, int K, int64_t bucket, int zero, double clip, float *w) {
    int R = dist_world_size(d);
    float *x = malloc((size_t)(R * n * STEP_IN) * sizeof *x);
    for (int64_t i = 0; i < R * n * STEP_IN; i++) x[i] = (float)((i * 7919) % 101) / 101.0f - 0.5f;
    tensor_generator *gen = tensor_generator_new(11, TENSOR_CPU);
    int64_t ws[2] = {STEP_IN, STEP_OUT};
    param_list l;
    param_list_init(&l);
    param_list_add(&l, "w", tensor_normal(ws, 2, 0, 0.1, TENSOR_F32, TENSOR_CPU, gen));
    int64_t one = 1;
    if (step_case.scaled) param_list_add(&l, "scale", tensor_full(&one, 1, 1.0, TENSOR_F32, TENSOR_CPU));
    tensor_generator_free(gen);
    int rc = param_list_pack(&l, dist_device(d));
    lin_objective lo = {x, dist_rank(d) * n, dist_device(d), l.items[0].value, step_case.scaled ? l.items[1].value : NULL};
    param_list *lists[1] = {&l};
    int64_t shard_lo, shard_hi;
    zero_shard_ranges(d, lists, 1, &shard_lo, &shard_hi);
    adamw_config ac = {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6};
    adamw *opt = rc == 0 ? adamw_init_range(lists, 1, ac, ADAMW_PATH_AUTO, zero ? &shard_lo : NULL, zero ? &shard_hi : NULL) : NULL;
    schedule sched = {.kind = SCHEDULE_CONST, .base_lr = 1e-2, .total_steps = 10};
    step_config sc = {.lists = lists, .n_lists = 1, .opt = opt, .sched = &sched, .accum_freq = K, .dist = d,
                      .bucket_elements = bucket, .overlap_reduce = step_case.overlap, .zero = zero,
                      .grad_clip_norm = clip};
    step_objective obj = {.n_features = 1, .n_trained = 1, .features = lin_features, .loss_rows = lin_loss_rows, .ctx = &lo};
    step_result res;
    dist_set_step(d, step);
    rc = opt ? step_run(&sc, step, &obj, NULL, n, &res) : -1;
    step_case.result = res;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err_msg());
    if (tensor_to_host(l.items[0].value, w, sizeof(float) * STEP_IN * STEP_OUT) != 0) rc = -2;
    if (step_case.scaled && tensor_to_host(l.items[1].value, &step_case.scale_after, sizeof(float)) != 0) rc = -2;
    adamw_free(opt);
    param_list_free(&l);
    free(x);
    err_set("%s", msg);
    return rc;
}

static int one_step(dist *d, int64_t step, int64_t n, int K, int64_t bucket, float *w) {
    return one_step_zero(d, step, n, K, bucket, 0, 0, w);
}

static int initial_weights(float *w) {
    tensor_generator *gen = tensor_generator_new(11, TENSOR_CPU);
    int64_t ws[2] = {STEP_IN, STEP_OUT};
    tensor *w0 = tensor_normal(ws, 2, 0, 0.1, TENSOR_F32, TENSOR_CPU, gen);
    int rc = tensor_to_host(w0, w, sizeof(float) * STEP_IN * STEP_OUT);
    tensor_free(w0);
    tensor_generator_free(gen);
    return rc;
}

static double rel_diff(const float *a, const float *b, int n) {
    double d2 = 0, n2 = 0;
    for (int i = 0; i < n; i++) d2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), n2 += (double)b[i] * b[i];
    return sqrt(d2 / n2);
}

// Beyond the old limits: 321 tensors in the gradient all_reduce (255 before) and 65 micro-batches
// (64 before), each the same step as the plain one.
static int rank_step_limits(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(60);
    CHECK(d);
    float plain[STEP_IN * STEP_OUT], buckets[STEP_IN * STEP_OUT], micro[STEP_IN * STEP_OUT], start[STEP_IN * STEP_OUT];
    CHECK(one_step(d, 0, 65, 1, 0, plain) == 0);
    CHECK(one_step(d, 0, 65, 1, 1, buckets) == 0);
    double diff = rel_diff(buckets, plain, STEP_IN * STEP_OUT);
    if (!(diff < 1e-6)) fprintf(stderr, "rank %d: 321 buckets %.3g away\n", rank, diff);
    CHECK(diff < 1e-6);
    CHECK(one_step(d, 0, 65, 65, 0, micro) == 0);
    diff = rel_diff(micro, plain, STEP_IN * STEP_OUT);
    if (!(diff < 1e-5)) fprintf(stderr, "rank %d: 65 micro-batches %.3g away\n", rank, diff);
    CHECK(diff < 1e-5);
    // The step does move the weights (the comparisons can fail).
    CHECK(initial_weights(start) == 0 && rel_diff(plain, start, STEP_IN * STEP_OUT) > 1e-3);
    dist_free(d);
    return 0;
}

static void test_step_beyond_old_limits(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_step_limits, NULL, -1, 120, codes);
    expect_all_zero(codes, 2);
}

// ZeRO on 3 ranks: 320 weights in shards of 107, 107 and 106, reduced and gathered in one bucket
// and in buckets of 2 a rank (7 elements: the last bucket padded), clipped to 0.5: the
// same weights as the unsharded step (the reduce_scatter sums in another order: float noise).
static int rank_zero_step(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(60);
    CHECK(d);
    enum { W = STEP_IN * STEP_OUT };
    float plain[W], sharded[W], start[W];
    CHECK(one_step_zero(d, 0, 4, 1, 0, 0, 0.5, plain) == 0);
    CHECK(initial_weights(start) == 0 && rel_diff(plain, start, W) > 1e-3);
    for (int zero = 1; zero <= 2; zero++)
        for (int64_t bucket = 0; bucket <= 7; bucket += 7) {
            CHECK(one_step_zero(d, 0, 4, 1, bucket, zero, 0.5, sharded) == 0);
            double diff = rel_diff(sharded, plain, W);
            if (!(diff < 1e-6)) fprintf(stderr, "rank %d: --zero %d, bucket %lld: %.3g away\n", rank, zero, (long long)bucket, diff);
            CHECK(diff < 1e-6);
        }
    dist_free(d);
    return 0;
}

static void test_zero_step(void **state) {
    (void)state;
    need_gloo();
    int codes[3];
    run_ranks(3, rank_zero_step, NULL, -1, 120, codes);
    expect_all_zero(codes, 3);
}

// The shard definition that ZeRO's collectives and optimizers share.
static void test_shard_range(void **state) {
    (void)state;
    static const struct { int64_t n; int world; int64_t lo[4], hi[4]; } cases[] = {
        {10, 4, {0, 3, 6, 9}, {3, 6, 9, 10}},
        {2, 4, {0, 1, 2, 2}, {1, 2, 2, 2}},
        {8, 4, {0, 2, 4, 6}, {2, 4, 6, 8}},
        {0, 4, {0, 0, 0, 0}, {0, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int r = 0; r < cases[i].world; r++) {
            int64_t lo, hi;
            dist_shard_range(cases[i].n, r, cases[i].world, &lo, &hi);
            assert_int_equal(lo, cases[i].lo[r]);
            assert_int_equal(hi, cases[i].hi[r]);
        }
}

// Failure 5: the gradient all_reduce fails after it returned; the step fails before the update,
// leaving the weights as they were, with one line naming the rank and the collective.
static int rank_step_failure(int rank, const void *arg) {
    (void)arg;
    float stepped[STEP_IN * STEP_OUT], failed[STEP_IN * STEP_OUT], initial[STEP_IN * STEP_OUT];
    setenv("CLIPC_DIST_FAIL_AT", "all_reduce at step 1", 1);
    dist *d = init_rank(60);
    CHECK(d);
    CHECK(one_step(d, 0, 4, 1, 0, stepped) == 0);
    CHECK(one_step(d, 1, 4, 1, 0, failed) == -1);  // the same step from the same weights, failing
    char expect[128];
    snprintf(expect, sizeof expect, "rank %d: all_reduce at step 1 failed after it returned", rank);
    fprintf(stderr, "%s\n", err_msg());
    CHECK(strstr(err_msg(), expect) == err_msg() && !strchr(err_msg(), '\n'));
    dist_free(d);
    CHECK(initial_weights(initial) == 0 && !memcmp(failed, initial, sizeof initial));
    CHECK(rel_diff(stepped, initial, STEP_IN * STEP_OUT) > 1e-3);
    return 0;
}

static void test_step_failure_leaves_weights(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_step_failure, NULL, -1, 60, codes);
    expect_all_zero(codes, 2);
}

// ---- the gradient sums overlapped with the backward (distributed/reducer.h) -----------------------

// Overlapped, the step gives bitwise the weights of the sums after the backward (2 ranks: each sum
// is one addition whatever the buckets), with K = 1 and 2 micro-batches and buckets of 7 gradients
// or the default; the scale (a parameter of the loss alone) too. The step reports its sums' times.
static int rank_overlap_same_weights(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(60);
    CHECK(d);
    float after[STEP_IN * STEP_OUT], overlapped[STEP_IN * STEP_OUT];
    for (int K = 1; K <= 2; K++)
        for (int64_t bucket = 0; bucket <= 7; bucket += 7) {
            step_case = (step_variant){.scaled = true};
            CHECK(one_step(d, 0, 6, K, bucket, after) == 0);
            float scale_after = step_case.scale_after;
            CHECK(step_case.result.comm_s > 0 && step_case.result.comm_exposed_s == step_case.result.comm_s);
            step_case.overlap = true;
            CHECK(one_step(d, 0, 6, K, bucket, overlapped) == 0);
            if (memcmp(after, overlapped, sizeof after) != 0 || scale_after != step_case.scale_after)
                fprintf(stderr, "rank %d: K %d, buckets of %lld: overlapped %.3g away, scale %.9g against %.9g\n", rank, K,
                        (long long)bucket, rel_diff(overlapped, after, STEP_IN * STEP_OUT), step_case.scale_after, scale_after);
            CHECK(!memcmp(after, overlapped, sizeof after) && scale_after == step_case.scale_after);
            CHECK(scale_after != 1.0f);  // the scale did get a summed gradient
            const step_result *r = &step_case.result;
            CHECK(r->comm_s > 0 && r->comm_exposed_s >= 0 && r->comm_exposed_s <= r->comm_s);
        }
    dist_free(d);
    return 0;
}

static void test_overlap_same_weights(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_overlap_same_weights, NULL, -1, 120, codes);
    expect_all_zero(codes, 2);
}

// A list of a (5), b (7), c (4) trainable and one frozen: 16 gradients, rank 0's shard [0, 8).
static int reducer_list(param_list *l, tensor_device dev) {
    const int64_t sizes[4] = {5, 7, 4, 3};
    const char *names[4] = {"a", "b", "c", "frozen"};
    param_list_init(l);
    for (int i = 0; i < 4; i++) param_list_add(l, names[i], tensor_zeros(&sizes[i], 1, TENSOR_F32, TENSOR_CPU));
    return param_set_frozen(&l->items[3], true) || param_list_pack(l, dev);
}

// loss = (rank + 1) (sum a + 2 sum b + 3 sum c), or without b; the reducer counting.
static int reducer_backward(param_list *l, int rank, bool with_b) {
    tensor_scope_begin();
    tensor *sum = tensor_add(tensor_sum(l->items[0].value), tensor_mul_scalar(tensor_sum(l->items[2].value), 3.0));
    if (with_b) sum = tensor_add(sum, tensor_mul_scalar(tensor_sum(l->items[1].value), 2.0));
    int rc = tensor_backward(tensor_mul_scalar(sum, rank + 1.0), NULL);
    tensor_scope_end();
    return rc;
}

// The buckets: from the end, 4 gradients at most, cut at the shard boundary 8; the bucket of c
// alone starts during the backward, the others wait for b; with every parameter taking part all
// start during it. Summed to every rank or to each bucket's owner.
static int rank_reducer(int rank, const void *arg) {
    (void)arg;
    dist *d = init_rank(30);
    CHECK(d);
    param_list l;
    CHECK(reducer_list(&l, dist_device(d)) == 0);
    param_list *lists[1] = {&l};
    for (int mode = 0; mode < 3; mode++) {  // all parameters, b missing, to the owners
        bool with_b = mode != 1, to_owners = mode == 2;
        CHECK(param_list_zero_grad(&l) == 0);
        reducer *r = reducer_new(d, lists, 1, &(reducer_options){.bucket_elements = 4, .to_owners = to_owners});
        CHECK(r && reducer_bucket_count(r) == 4);
        const int64_t begins[4] = {12, 8, 4, 0};
        for (int b = 0; b < 4; b++) {
            reducer_bucket w = reducer_get_bucket(r, b);
            CHECK(w.list == 0 && w.begin == begins[b] && w.end == begins[b] + 4 && w.owner == (b < 2 ? 1 : 0));
        }
        reducer_count(r, true);
        CHECK(reducer_backward(&l, rank, with_b) == 0);
        if (reducer_started(r) != (with_b ? 4 : 1)) fprintf(stderr, "rank %d: %d buckets started\n", rank, reducer_started(r));
        CHECK(reducer_started(r) == (with_b ? 4 : 1));
        CHECK(reducer_finish(r, NULL, 0) == 0 && reducer_started(r) == 4);
        double comm_s, exposed_s;
        CHECK(reducer_times(r, &comm_s, &exposed_s) == 0 && comm_s > 0 && exposed_s >= 0 && exposed_s <= comm_s);
        reducer_free(r);
        float g[16];
        CHECK(tensor_to_host(l.grad, g, sizeof g) == 0);
        for (int i = 0; i < 16; i++) {
            float want = 3.0f * (i < 5 ? 1 : i < 12 ? (with_b ? 2 : 0) : 3);  // (1 + 2) ranks' factors
            bool mine = !to_owners || (i < 8) == (rank == 0);
            if (mine && g[i] != want) fprintf(stderr, "rank %d mode %d: gradient %d is %g, not %g\n", rank, mode, i, g[i], want);
            CHECK(!mine || g[i] == want);
        }
    }
    dist_pg_stats st = dist_pg_get_stats(dist_get_pg(d));
    CHECK(st.op[DIST_OP_REDUCE].calls == 4 && st.op[DIST_OP_REDUCE].bytes == 64);  // mode 2's buckets
    param_list_free(&l);
    dist_free(d);
    return 0;
}

static void test_reducer(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_reducer, NULL, -1, 60, codes);
    expect_all_zero(codes, 2);
}

// A peer gone mid-step: rank 1 exits in its last micro-batch's backward, after the scale's bucket
// (1 gradient a bucket) started. Rank 0 fails within the timeout with one line naming its rank,
// the collective, the step and the peer, its weights untouched. Without the consistency check, so
// that the failure comes out of the asynchronous sums themselves.
static int rank_overlap_peer_gone(int rank, const void *arg) {
    (void)arg;
    unsetenv("CLIPC_DIST_DEBUG");
    dist *d = init_rank(DEAD_TIMEOUT_S);
    CHECK(d);
    float w[STEP_IN * STEP_OUT], initial[STEP_IN * STEP_OUT];
    step_case = (step_variant){.overlap = true, .scaled = true, .exit_at = rank == 1 ? 4 : 0};
    double t0 = now_s();
    CHECK(one_step(d, 7, 4, 2, 1, w) == -1);
    double took = now_s() - t0;
    fprintf(stderr, "%s (after %.1f s)\n", err_msg(), took);
    CHECK(strstr(err_msg(), "rank 0: all_reduce at step 7 ") == err_msg() && !strchr(err_msg(), '\n'));
    CHECK(strstr(err_msg(), "(peer rank 1 gone?)"));
    CHECK(took < DEAD_TIMEOUT_S + 4);
    CHECK(initial_weights(initial) == 0 && !memcmp(w, initial, sizeof initial));
    dist_free(d);
    return 0;
}

static void test_overlap_peer_gone(void **state) {
    (void)state;
    need_gloo();
    int codes[2];
    run_ranks(2, rank_overlap_peer_gone, NULL, 1, 30, codes);
    if (codes[0] != 0) fail_msg("rank 0 ended with %d", codes[0]);
}

int main(void) {
    // As every multi-rank test: each rank on a device of its own (shim/tensor.h), and the
    // consistency check before every collective (shim/dist.h).
    setenv("CLIPC_DIST_STRICT", "1", 1);
    setenv("CLIPC_DIST_DEBUG", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce),    cmocka_unit_test(test_gather_scatter_broadcast),
        cmocka_unit_test(test_stuck_peer),    cmocka_unit_test(test_exited_peer),
        cmocka_unit_test(test_store_rank_exited), cmocka_unit_test(test_rendezvous_timeout),
        cmocka_unit_test(test_zero_step),     cmocka_unit_test(test_shard_range),
        cmocka_unit_test(test_local),         cmocka_unit_test(test_nccl),
        cmocka_unit_test(test_strict_devices), cmocka_unit_test(test_mismatch_named),
        cmocka_unit_test(test_wait_lead),     cmocka_unit_test(test_async_failure),
        cmocka_unit_test(test_step_beyond_old_limits), cmocka_unit_test(test_step_failure_leaves_weights),
        cmocka_unit_test(test_overlap_same_weights), cmocka_unit_test(test_reducer),
        cmocka_unit_test(test_overlap_peer_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
