// Tests the collectives (shim/dist.h through distributed/dist.h) with several processes on this machine:
// each test forks its ranks with torchrun's variables (127.0.0.1, a free port), so dist_init()
// takes the Gloo backend. Checked exactly: all_reduce of several tensors (and of a bucket view of
// a flat buffer), all_gather, reduce_scatter, broadcast, barrier and dist_all_reduce_f64, and the
// counts of dist_pg_get_stats (calls and bytes per kind; failed calls not counted). Then the
// failures: a peer that exits or is stuck before a collective (rank 0, which serves the store,
// included) makes the others fail within the timeout with one line naming their rank, the
// collective, the step and the peer; a missing rank fails the rendezvous; the one-process backend
// checks shapes, dtypes and contiguity; NCCL refuses to start without a GPU.
//
// Ranks report through their exit code (cmocka asserts stay in the parent) and print what failed.
#include <arpa/inet.h>
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
            codes[r] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
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
    dist_options o = {TENSOR_CPU, timeout_s};
    return dist_init(&o);
}

static tensor *from_floats(const float *v, const int64_t *shape, int ndim) {
    return tensor_from_host(v, shape, ndim, TENSOR_F32, false);
}

// ---- results -------------------------------------------------------------------------------------

static int rank_all_reduce(int rank, const void *arg) {
    (void)arg;
    dist *d = init_cpu(20);
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
    tensor *ta = from_floats(a, sa, 2), *tb = tensor_from_host(b, sb, 1, TENSOR_I64, false);
    tensor *tc = tensor_from_host(&c, sc, 1, TENSOR_F64, false), *tf = from_floats(flat, sf, 1);
    tensor *ts[] = {ta, tb, tc, tensor_slice(tf, 0, 2, 7)};  // the last: a bucket of a flat buffer
    CHECK(dist_pg_all_reduce(dist_get_pg(d), ts, 4) == 0);
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

// The stats after rank_gather_scatter's collectives: one call of each kind but all_reduce, with
// the (6, 3) float tensor gathered and scattered, 3 floats and 4 int64 broadcast.
static int check_gather_scatter_stats(int rank, const dist *d) {
    dist_pg_stats st = dist_pg_get_stats(dist_get_pg(d));
    const int64_t bytes[DIST_OP_COUNT] = {[DIST_OP_ALL_GATHER] = 72, [DIST_OP_REDUCE_SCATTER] = 72,
                                          [DIST_OP_BROADCAST] = 44, [DIST_OP_BARRIER] = 0};
    for (int k = 0; k < DIST_OP_COUNT; k++) {
        CHECK(st.op[k].calls == (k == DIST_OP_ALL_REDUCE ? 0 : 1) && st.op[k].bytes == bytes[k]);
        CHECK(k == DIST_OP_ALL_REDUCE ? st.op[k].seconds == 0 : st.op[k].seconds > 0);
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
    dist *d = init_cpu(20);
    CHECK(d);
    dist_pg *pg = dist_get_pg(d);
    tensor_scope_begin();
    // all_gather: in (2, 3) = rank*10 + i; out (6, 3) holds rank r's rows at [2r, 2r+2).
    float in[6], out[18];
    for (int i = 0; i < 6; i++) in[i] = (float)(rank * 10 + i);
    int64_t s_in[2] = {2, 3}, s_out[2] = {6, 3};
    tensor *tout = tensor_zeros(s_out, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_pg_all_gather(pg, tout, from_floats(in, s_in, 2)) == 0);
    CHECK(tensor_to_host(tout, out, sizeof out) == 0);
    for (int i = 0; i < 18; i++) CHECK(out[i] == (float)((i / 6) * 10 + i % 6));
    // reduce_scatter: in (6, 3) = rank*100 + i; this rank's out (2, 3) = sum over ranks of rows [2 rank, 2 rank + 2).
    float all[18], mine[6];
    for (int i = 0; i < 18; i++) all[i] = (float)(rank * 100 + i);
    tensor *tmine = tensor_zeros(s_in, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_pg_reduce_scatter(pg, tmine, from_floats(all, s_out, 2)) == 0);
    CHECK(tensor_to_host(tmine, mine, sizeof mine) == 0);
    for (int k = 0; k < 6; k++) CHECK(mine[k] == (float)(300 + 3 * (rank * 6 + k)));
    // broadcast of two tensors from rank 1.
    float x[3] = {(float)rank, (float)rank, (float)rank};
    int64_t y[4] = {rank * 7, rank * 7, rank * 7, rank * 7}, sx[1] = {3}, sy[2] = {2, 2};
    tensor *tx = from_floats(x, sx, 1), *ty = tensor_from_host(y, sy, 2, TENSOR_I64, false);
    tensor *both[] = {tx, ty};
    CHECK(dist_pg_broadcast(pg, both, 2, 1) == 0);
    CHECK(tensor_to_host(tx, x, sizeof x) == 0 && tensor_to_host(ty, y, sizeof y) == 0);
    for (int i = 0; i < 3; i++) CHECK(x[i] == 1.0f);
    for (int i = 0; i < 4; i++) CHECK(y[i] == 7);
    CHECK(dist_pg_barrier(pg) == 0 && dist_pg_synchronize(pg) == 0);
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
    dist *d = init_cpu(DEAD_TIMEOUT_S);
    CHECK(d);
    dist_pg *pg = dist_get_pg(d);
    int64_t shape[1] = {4};
    tensor *t = tensor_ones(shape, 1, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_pg_all_reduce(pg, &t, 1) == 0);  // everyone is there once
    dist_set_step(d, 12);
    if (rank == dc->victim) {
        if (dc->stuck) sleep(60);
        _exit(0);
    }
    double t0 = now_s();
    int rc = dist_pg_all_reduce(pg, &t, 1);
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
    CHECK(dist_pg_barrier(pg) == -1 && strstr(err_msg(), "all_reduce at step 12"));  // the group stays broken
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

static int rank_alone(int rank, const void *arg) {
    const int *absent = arg;
    if (rank == *absent) return 0;  // never joins
    double t0 = now_s();
    dist *d = init_cpu(2);
    CHECK(!d);
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
    CHECK(dist_pg_all_gather(dist_get_pg(d), out, in) == -1);
    if (!strstr(err_msg(), text)) fprintf(stderr, "'%s' lacks '%s'\n", err_msg(), text);
    CHECK(strstr(err_msg(), text));
    CHECK(dist_pg_get_stats(dist_get_pg(d)).op[DIST_OP_ALL_GATHER].calls == 0);  // failed calls are not counted
    dist_free(d);
    return 0;
}

static int rank_local(int rank, const void *arg) {
    (void)arg;
    unsetenv("RANK"), unsetenv("WORLD_SIZE"), unsetenv("LOCAL_RANK");
    dist *d = init_cpu(0);
    CHECK(d && dist_world_size(d) == 1 && dist_rank(d) == 0);
    tensor_scope_begin();
    float v[6] = {1, 2, 3, 4, 5, 6}, got[6];
    int64_t s[2] = {2, 3};
    tensor *in = from_floats(v, s, 2), *out = tensor_zeros(s, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_pg_all_gather(dist_get_pg(d), out, in) == 0 && tensor_to_host(out, got, sizeof got) == 0);
    CHECK(!memcmp(got, v, sizeof v));
    tensor *sum = tensor_zeros(s, 2, TENSOR_F32, TENSOR_CPU);
    CHECK(dist_pg_reduce_scatter(dist_get_pg(d), sum, in) == 0 && tensor_to_host(sum, got, sizeof got) == 0);
    CHECK(!memcmp(got, v, sizeof v));
    CHECK(dist_pg_all_reduce(dist_get_pg(d), &in, 1) == 0 && tensor_to_host(in, got, sizeof got) == 0);
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
    dist_pg_options o = {DIST_BACKEND_NCCL, 0, 1, "127.0.0.1", *port, 0, 5, NULL};
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce),    cmocka_unit_test(test_gather_scatter_broadcast),
        cmocka_unit_test(test_stuck_peer),    cmocka_unit_test(test_exited_peer),
        cmocka_unit_test(test_store_rank_exited), cmocka_unit_test(test_rendezvous_timeout),
        cmocka_unit_test(test_local),         cmocka_unit_test(test_nccl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
