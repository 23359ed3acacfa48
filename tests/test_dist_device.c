// Tests every collective (distributed/dist.h over shim/dist.h) at world size 1 on a device, in
// float32, bfloat16 and uint8: all_reduce of several tensors of different shapes, the started
// (asynchronous) sums to every rank and to one root (reduce), all_gather, reduce_scatter, broadcast, barrier and synchronize leave the values exact, and each is counted;
// then control messages made on the host (dist_all_reduce_f64, dist_broadcast_text,
// dist_broadcast_i64, dist_all_agree) travel through the group's device. DEVICE cpu (CTest) takes
// Gloo; cuda (scripts/gpu-check.sh) takes NCCL, the backend a GPU run uses, which no CPU test
// reaches. Without a launcher's variables the test sets torchrun's
// for a world of 1 on a free port. The last line names the backend ("collectives on rank 0 of 1 (nccl)").
// Usage: test_dist_device [DEVICE]      (cpu (default), cuda, cuda:N)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "distributed/dist.h"
#include "shim/dist.h"  // the counters (dist_pg_get_stats)

static tensor_device device;
static dist *group;

// bfloat16 last: libtorch 1.13's Gloo has none ("Invalid scalar type", and a failed collective
// ends the group), so on the CPU the first n_dtypes = 2 are tested, on a GPU all 3.
static const tensor_dtype dtypes[3] = {TENSOR_F32, TENSOR_U8, TENSOR_BF16};
static const char *const dtype_names[3] = {"float32", "uint8", "bfloat16"};
static int n_dtypes;

// n values, integers in [0, 200): exact in all three dtypes.
static void fill_values(float *v, int64_t n, int seed) {
    for (int64_t k = 0; k < n; k++) v[k] = (float)((k * 37 + seed * 11) % 200);
}

// A tensor of shape (ndim dims) holding fill_values(seed), of dtype, on the device.
static tensor *make(const int64_t *shape, int ndim, tensor_dtype dtype, int seed) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)n * sizeof(float));
    fill_values(v, n, seed);
    tensor *host = tensor_from_host(v, shape, ndim, TENSOR_F32, false), *typed = tensor_to_dtype(host, dtype);
    tensor *t = tensor_to_device(typed, device, false);
    free(v);
    tensor_free(host);
    tensor_free(typed);
    if (!t) fail_msg("%s", err_msg());
    return t;
}

// t holds fill_values(seed) exactly.
static void expect_values(const tensor *t, int seed, const char *what) {
    int64_t n = tensor_numel(t);
    float *got = malloc((size_t)n * sizeof(float)), *want = malloc((size_t)n * sizeof(float));
    tensor *f = tensor_to_dtype(t, TENSOR_F32);
    assert_int_equal(tensor_to_host(f, got, (size_t)n * sizeof(float)), 0);
    fill_values(want, n, seed);
    for (int64_t k = 0; k < n; k++)
        if (got[k] != want[k]) fail_msg("%s: element %lld is %g, expected %g", what, (long long)k, got[k], want[k]);
    tensor_free(f);
    free(got);
    free(want);
}

static dist_pg *pg(void) { return dist_get_pg(group); }

static void test_all_reduce(void **state) {
    (void)state;
    for (int i = 0; i < n_dtypes; i++) {
        int64_t s1[1] = {5}, s2[2] = {2, 3};
        tensor *t[2] = {make(s1, 1, dtypes[i], 1), make(s2, 2, dtypes[i], 2)};
        if (dist_all_reduce(group, t, 2) != 0 || dist_synchronize(group) != 0)
            fail_msg("all_reduce %s: %s", dtype_names[i], err_msg());
        expect_values(t[0], 1, dtype_names[i]);
        expect_values(t[1], 2, dtype_names[i]);
        tensor_free(t[0]);
        tensor_free(t[1]);
    }
}

// The asynchronous sums the overlapped gradient reduction starts from the backward's hooks
// (distributed/reducer.h): to every rank (all_reduce) and to one root (reduce), waited for together.
static void test_started_sums(void **state) {
    (void)state;
    for (int i = 0; i < n_dtypes; i++) {
        int64_t s1[1] = {5}, s2[2] = {2, 3};
        tensor *all[1] = {make(s1, 1, dtypes[i], 7)}, *to_root[1] = {make(s2, 2, dtypes[i], 8)};
        if (dist_start_sum(group, all, 1, DIST_ALL_RANKS) != 0 || dist_start_sum(group, to_root, 1, 0) != 0 ||
            dist_wait_sums(group) != 0 || dist_synchronize(group) != 0)
            fail_msg("started sums %s: %s", dtype_names[i], err_msg());
        expect_values(all[0], 7, dtype_names[i]);
        expect_values(to_root[0], 8, dtype_names[i]);
        tensor_free(all[0]);
        tensor_free(to_root[0]);
    }
}

static void test_all_gather_reduce_scatter(void **state) {
    (void)state;
    int64_t world = dist_world_size(group);
    assert_int_equal(world, 1);
    for (int i = 0; i < n_dtypes; i++) {
        int64_t s[2] = {3, 4};
        tensor *in = make(s, 2, dtypes[i], 3), *gathered = make(s, 2, dtypes[i], 4), *scattered = make(s, 2, dtypes[i], 5);
        if (dist_all_gather(group, gathered, in) != 0 || dist_synchronize(group) != 0)
            fail_msg("all_gather %s: %s", dtype_names[i], err_msg());
        expect_values(gathered, 3, dtype_names[i]);
        if (dist_reduce_scatter(group, scattered, in) != 0 || dist_synchronize(group) != 0)
            fail_msg("reduce_scatter %s: %s", dtype_names[i], err_msg());
        expect_values(scattered, 3, dtype_names[i]);
        tensor_free(in);
        tensor_free(gathered);
        tensor_free(scattered);
    }
}

static void test_broadcast_barrier(void **state) {
    (void)state;
    for (int i = 0; i < n_dtypes; i++) {
        int64_t s[1] = {7};
        tensor *t[1] = {make(s, 1, dtypes[i], 6)};
        if (dist_broadcast(group, t, 1, 0) != 0 || dist_barrier(group) != 0)
            fail_msg("broadcast %s: %s", dtype_names[i], err_msg());
        expect_values(t[0], 6, dtype_names[i]);
        tensor_free(t[0]);
    }
    assert_int_equal(dist_synchronize(group), 0);
}

// Control messages made on the host (distributed/dist.h's helpers): host values that travel
// through the group's device.
static void test_host_control_message(void **state) {
    (void)state;
    double v[3] = {1.5, -2.0, 9007199254740991.0};  // the last: 2^53 - 1, exact in float64
    assert_int_equal(dist_all_reduce_f64(group, v, 3), 0);
    assert_true(v[0] == 1.5 && v[1] == -2.0 && v[2] == 9007199254740991.0);
    char text[32] = "epoch_3/model.safetensors";
    assert_int_equal(dist_broadcast_text(group, text, sizeof text, 0), 0);
    assert_string_equal(text, "epoch_3/model.safetensors");
    int64_t ints[2] = {-7, INT64_MAX};
    assert_int_equal(dist_broadcast_i64(group, ints, 2, 0), 0);
    assert_true(ints[0] == -7 && ints[1] == INT64_MAX);
    bool flag = true;
    assert_int_equal(dist_all_agree(group, &flag), 0);
    assert_true(flag);
}

// Every kind was made and counted (run last).
static void test_counted(void **state) {
    (void)state;
    dist_pg_stats st = dist_pg_get_stats(pg());
    for (int op = 0; op < DIST_OP_COUNT; op++)
        if (st.op[op].calls < 1) fail_msg("%s was not counted", dist_op_name((dist_op)op));
    dist_print_stats(group, 1.0, stdout);
}

// torchrun's variables for a world of 1 on a free port, unless a launcher set them.
static void set_launcher_env(void) {
    if (getenv("RANK")) return;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    char port[16] = "29500";
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    if (fd >= 0) close(fd);
    setenv("RANK", "0", 1), setenv("WORLD_SIZE", "1", 1), setenv("LOCAL_RANK", "0", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1), setenv("MASTER_PORT", port, 1);
}

static int join(void **state) {
    (void)state;
    set_launcher_env();
    group = dist_init(&(dist_options){.device = device, .timeout_s = 60});
    if (!group) fprintf(stderr, "dist_init: %s\n", err_msg());
    return group ? 0 : -1;
}

static int leave(void **state) {
    (void)state;
    dist_free(group);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 || tensor_device_parse(argc == 2 ? argv[1] : "cpu", &device) != 0) {
        fprintf(stderr, "usage: %s [cpu|cuda|cuda:N]%s%s\n", argv[0], argc > 2 ? "" : ": ", argc > 2 ? "" : err_msg());
        return 2;
    }
    n_dtypes = device.type == TENSOR_DEVICE_CUDA ? 3 : 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce),        cmocka_unit_test(test_started_sums),
        cmocka_unit_test(test_all_gather_reduce_scatter), cmocka_unit_test(test_broadcast_barrier),
        cmocka_unit_test(test_host_control_message),
        cmocka_unit_test(test_counted),
    };
    return cmocka_run_group_tests(tests, join, leave);
}
