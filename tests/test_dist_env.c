// Tests distributed/env: reading rank, world size, local rank and the store's address from the
// environments of torchrun (with and without its agent's store), Open MPI and Slurm (and of none),
// the errors for missing or malformed variables, and the first host of Slurm's compressed node lists.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "distributed/env.h"

static void test_no_launcher(void **state) {
    (void)state;
    char *envp[] = {"HOME=/root", "SLURM_PROCID=0", "SLURM_NTASKS=4", NULL};  // a batch script: no step
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), 0);
    assert_int_equal(e.launcher, DIST_LAUNCHER_NONE);
    assert_int_equal(e.rank, 0);
    assert_int_equal(e.world_size, 1);
    assert_string_equal(e.master_addr, "");
}

static void test_torchrun(void **state) {
    (void)state;
    char *envp[] = {"RANK=5", "WORLD_SIZE=8", "LOCAL_RANK=1", "MASTER_ADDR=node01", "MASTER_PORT=29400",
                    "SLURM_PROCID=3", "SLURM_STEP_ID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", NULL};
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), 0);
    assert_int_equal(e.launcher, DIST_LAUNCHER_TORCHRUN);  // torchrun's variables win over Slurm's
    assert_int_equal(e.rank, 5);
    assert_int_equal(e.world_size, 8);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.master_addr, "node01");
    assert_int_equal(e.master_port, 29400);
    assert_string_equal(e.agent_store_prefix, "");  // rank 0 serves the store
}

// What torchrun's agent gives its workers (PyTorch 1.13, static rendezvous): the agent serves the
// store, every rank connects to it, keys under the attempt's prefix.
static void test_torchrun_agent_store(void **state) {
    (void)state;
    char *envp[] = {"LOCAL_RANK=1", "RANK=1", "GROUP_RANK=0", "ROLE_RANK=1", "ROLE_NAME=default",
                    "LOCAL_WORLD_SIZE=2", "WORLD_SIZE=2", "GROUP_WORLD_SIZE=1", "ROLE_WORLD_SIZE=2",
                    "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29500", "TORCHELASTIC_RESTART_COUNT=3",
                    "TORCHELASTIC_MAX_RESTARTS=3", "TORCHELASTIC_RUN_ID=none", "TORCHELASTIC_USE_AGENT_STORE=True",
                    "NCCL_ASYNC_ERROR_HANDLING=1", NULL};
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), 0);
    assert_int_equal(e.launcher, DIST_LAUNCHER_TORCHRUN);
    assert_int_equal(e.rank, 1);
    assert_int_equal(e.world_size, 2);
    assert_int_equal(e.master_port, 29500);
    assert_string_equal(e.agent_store_prefix, "/worker/attempt_3");

    // Only "True" means the agent's store, as torch.distributed reads it (--standalone: False).
    char *not_agent[] = {"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1",
                         "TORCHELASTIC_USE_AGENT_STORE=False", "TORCHELASTIC_RESTART_COUNT=0", NULL};
    assert_int_equal(dist_env_read(&e, not_agent), 0);
    assert_string_equal(e.agent_store_prefix, "");
}

static void test_openmpi(void **state) {
    (void)state;
    char *envp[] = {"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=0",
                    "MASTER_ADDR=10.1.2.3", NULL};
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), 0);
    assert_int_equal(e.launcher, DIST_LAUNCHER_OPENMPI);
    assert_int_equal(e.rank, 2);
    assert_int_equal(e.world_size, 4);
    assert_int_equal(e.local_rank, 0);
    assert_string_equal(e.master_addr, "10.1.2.3");
    assert_int_equal(e.master_port, DIST_ENV_DEFAULT_PORT);

    char *no_addr[] = {"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=0", NULL};
    assert_int_equal(dist_env_read(&e, no_addr), -1);
    assert_non_null(strstr(err_msg(), "MASTER_ADDR"));
}

static void test_slurm(void **state) {
    (void)state;
    char *envp[] = {"SLURM_PROCID=6", "SLURM_NTASKS=8", "SLURM_LOCALID=2", "SLURM_STEP_ID=0",
                    "SLURM_JOB_ID=123456", "SLURM_JOB_NODELIST=gpu[003-004,010],cpu1", NULL};
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), 0);
    assert_int_equal(e.launcher, DIST_LAUNCHER_SLURM);
    assert_int_equal(e.rank, 6);
    assert_int_equal(e.world_size, 8);
    assert_int_equal(e.local_rank, 2);
    assert_string_equal(e.master_addr, "gpu003");
    assert_int_equal(e.master_port, DIST_ENV_DEFAULT_PORT + 456);

    char *explicit_master[] = {"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_STEP_ID=1",
                               "SLURM_JOB_NODELIST=a[1-2]", "MASTER_ADDR=head", "MASTER_PORT=4000", NULL};
    assert_int_equal(dist_env_read(&e, explicit_master), 0);
    assert_string_equal(e.master_addr, "head");
    assert_int_equal(e.master_port, 4000);
}

// One malformed environment: dist_env_read fails and the message names `word`.
static void expect_error(char **envp, const char *word) {
    dist_env e;
    assert_int_equal(dist_env_read(&e, envp), -1);
    if (!strstr(err_msg(), word)) fail_msg("'%s' does not name %s", err_msg(), word);
}

static void test_errors(void **state) {
    (void)state;
    char *no_local[] = {"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=h", "MASTER_PORT=1", NULL};
    expect_error(no_local, "LOCAL_RANK is not set");
    char *bad_rank[] = {"RANK=one", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1", NULL};
    expect_error(bad_rank, "RANK='one'");
    char *negative[] = {"RANK=-1", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1", NULL};
    expect_error(negative, "RANK='-1'");
    char *outside[] = {"RANK=2", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1", NULL};
    expect_error(outside, "rank 2 is not in a world of 2");
    char *zero_world[] = {"RANK=0", "WORLD_SIZE=0", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1", NULL};
    expect_error(zero_world, "world of 0");
    char *bad_port[] = {"RANK=0", "WORLD_SIZE=1", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=70000", NULL};
    expect_error(bad_port, "MASTER_PORT='70000'");
    char *no_nodes[] = {"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_STEP_ID=0", NULL};
    expect_error(no_nodes, "SLURM_JOB_NODELIST");
    char *bad_nodes[] = {"SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_STEP_ID=0",
                         "SLURM_JOB_NODELIST=node[01-04", NULL};
    expect_error(bad_nodes, "SLURM_JOB_NODELIST='node[01-04'");
    char *no_attempt[] = {"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1",
                          "TORCHELASTIC_USE_AGENT_STORE=True", NULL};
    expect_error(no_attempt, "TORCHELASTIC_USE_AGENT_STORE=True: TORCHELASTIC_RESTART_COUNT is not set");
    char *bad_attempt[] = {"RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=h", "MASTER_PORT=1",
                           "TORCHELASTIC_USE_AGENT_STORE=True", "TORCHELASTIC_RESTART_COUNT=x", NULL};
    expect_error(bad_attempt, "TORCHELASTIC_RESTART_COUNT='x'");
}

static void expect_first(const char *list, const char *host) {
    char out[64];
    if (dist_nodelist_first(list, out, sizeof out)) fail_msg("%s: %s", list, err_msg());
    assert_string_equal(out, host);
}

static void test_nodelist(void **state) {
    (void)state;
    expect_first("node01", "node01");
    expect_first("node[01-04,07],gpu5", "node01");
    expect_first("node[07,01-04]", "node07");
    expect_first("gpu5,node[01-04]", "gpu5");
    expect_first("rack[1-2]-n[3-4]", "rack1-n3");
    expect_first("n[7]", "n7");
    expect_first("host-a.example.org", "host-a.example.org");

    char out[8];
    const char *bad[] = {"", ",a", "node[01-04", "node]", "node[]", "node[a-b]", "node[1;2]", "averylonghost"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dist_nodelist_first(bad[i], out, sizeof out) == 0) fail_msg("'%s' was accepted as '%s'", bad[i], out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_launcher), cmocka_unit_test(test_torchrun), cmocka_unit_test(test_torchrun_agent_store),
        cmocka_unit_test(test_openmpi),     cmocka_unit_test(test_slurm),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nodelist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
