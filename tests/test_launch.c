// Tests `clipc launch` (cli/cmd_launch.c over distributed/launch.c), run in a forked child with sh
// scripts as ranks: torchrun's variables reach every rank (replacing inherited ones); a failing
// rank makes launch stop the others and return its status (128 + signal for a killed rank); a rank
// that ignores SIGTERM is killed after the grace period; SIGTERM sent to launch is forwarded;
// a command that does not exist and usage errors fail with a message.
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/commands.h"
#include "tmpdir.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

// Runs cmd_launch(argc, argv) in a child with stderr to tmpdir's launch.err; the child's pid.
static pid_t start_argv(int argc, char **argv) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(tmpdir_path("launch.err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0) _exit(99);
        _exit(cmd_launch(argc, argv));
    }
    assert_true(pid > 0);
    return pid;
}

// Starts `clipc launch ARGS... -- sh -c SCRIPT`.
static pid_t start_launch(const char *script, const char *const *args, int n_args) {
    char *argv[32];
    int argc = 0;
    for (int i = 0; i < n_args; i++) argv[argc++] = (char *)args[i];
    char *command[] = {"--", "sh", "-c", (char *)script, NULL};
    for (int i = 0; command[i]; i++) argv[argc++] = command[i];
    argv[argc] = NULL;
    return start_argv(argc, argv);
}

static int finish_launch(pid_t pid) {
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int run_launch(const char *script, const char *const *args, int n_args) {
    return finish_launch(start_launch(script, args, n_args));
}

static void read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("%s is missing", path);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void expect_in_file(const char *name, const char *text) {
    char buf[4096];
    read_file(tmpdir_path(name), buf, sizeof buf);
    if (!strstr(buf, text)) fail_msg("%s: '%s' not in '%s'", name, text, buf);
}

static void test_environment(void **state) {
    (void)state;
    setenv("RANK", "99", 1);  // inherited: must be replaced
    setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);  // launch inside a torchrun worker: rank 0 serves
    char script[1024];
    snprintf(script, sizeof script,
             "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $GROUP_RANK $MASTER_ADDR:$MASTER_PORT "
             "$TORCHELASTIC_USE_AGENT_STORE\" > %s/env$RANK",
             tmpdir_root);
    const char *args[] = {"--nproc-per-node", "2", "--nnodes", "3", "--node-rank", "1",
                          "--master-addr", "10.0.0.1", "--master-port", "1234"};
    assert_int_equal(run_launch(script, args, 10), 0);
    unsetenv("RANK");
    unsetenv("TORCHELASTIC_USE_AGENT_STORE");
    char buf[256];
    read_file(tmpdir_path("env2"), buf, sizeof buf);
    assert_string_equal(buf, "2 0 6 2 1 10.0.0.1:1234 False\n");
    read_file(tmpdir_path("env3"), buf, sizeof buf);
    assert_string_equal(buf, "3 1 6 2 1 10.0.0.1:1234 False\n");
}

static void test_failing_rank_stops_others(void **state) {
    (void)state;
    char script[1024];
    // Rank 1 fails once the others handle SIGTERM (they record that they were stopped).
    snprintf(script, sizeof script,
             "cd %s; if [ $RANK = 1 ]; then until [ -e ready0 ] && [ -e ready2 ]; do sleep 0.02; done; exit 3; fi; "
             "trap 'echo stopped > stopped$RANK; exit 0' TERM; touch ready$RANK; sleep 30 & wait",
             tmpdir_root);
    const char *args[] = {"--nproc-per-node", "3", "--grace", "20"};
    double t0 = now_s();
    assert_int_equal(run_launch(script, args, 4), 3);
    assert_true(now_s() - t0 < 15);  // neither the sleeps nor the grace period were waited for
    expect_in_file("stopped0", "stopped");
    expect_in_file("stopped2", "stopped");
    expect_in_file("launch.err", "rank 1 exited with status 3");
}

static void test_killed_rank(void **state) {
    (void)state;
    const char *args[] = {"--nproc-per-node", "2", "--grace", "5"};
    assert_int_equal(run_launch("if [ $RANK = 0 ]; then kill -KILL $$; fi; sleep 30", args, 4), 128 + SIGKILL);
    expect_in_file("launch.err", "rank 0 was killed by signal 9");
}

static void test_sigkill_after_grace(void **state) {
    (void)state;
    char script[1024];
    snprintf(script, sizeof script,
             "cd %s; if [ $RANK = 1 ]; then until [ -e ignoring ]; do sleep 0.02; done; exit 4; fi; "
             "trap '' TERM; touch ignoring; sleep 30",
             tmpdir_root);
    const char *args[] = {"--nproc-per-node", "2", "--grace", "1"};
    double t0 = now_s();
    assert_int_equal(run_launch(script, args, 4), 4);
    double took = now_s() - t0;
    assert_true(took >= 1 && took < 15);
}

static void test_sigterm_forwarded(void **state) {
    (void)state;
    char script[1024];
    snprintf(script, sizeof script,
             "trap 'echo term > %s/term$RANK; exit 0' TERM; touch %s/up$RANK; sleep 30 & wait", tmpdir_root,
             tmpdir_root);
    const char *args[] = {"--nproc-per-node", "2", "--grace", "5"};
    pid_t pid = start_launch(script, args, 4);
    double t0 = now_s();
    while ((access(tmpdir_path("up0"), F_OK) || access(tmpdir_path("up1"), F_OK)) && now_s() - t0 < 10) usleep(10000);
    kill(pid, SIGTERM);
    assert_int_equal(finish_launch(pid), 128 + SIGTERM);
    expect_in_file("term0", "term");
    expect_in_file("term1", "term");
    expect_in_file("launch.err", "stopped by signal 15");
}

static void test_errors(void **state) {
    (void)state;
    char *missing[] = {"--nproc-per-node", "2", "--", "clipc-no-such-command", NULL};
    assert_int_equal(finish_launch(start_argv(4, missing)), 1);
    expect_in_file("launch.err", "cannot run 'clipc-no-such-command'");
    char *no_command[] = {"--nproc-per-node", "2", "sh", NULL};
    assert_int_equal(finish_launch(start_argv(3, no_command)), 2);
    expect_in_file("launch.err", "no command (put it after --)");

    assert_int_equal(run_launch("true", (const char *[]){"--nnodes", "2", "--node-rank", "2", "--master-addr", "h"}, 6), 1);
    expect_in_file("launch.err", "--node-rank 2 is not in 0..1");
    assert_int_equal(run_launch("true", (const char *[]){"--nnodes", "2"}, 2), 2);
    expect_in_file("launch.err", "needs --master-addr");
    assert_int_equal(run_launch("true", (const char *[]){"--nproc-per-node", "0"}, 2), 1);
    expect_in_file("launch.err", "--nproc-per-node must be at least 1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_environment),       cmocka_unit_test(test_failing_rank_stops_others),
        cmocka_unit_test(test_killed_rank),       cmocka_unit_test(test_sigkill_after_grace),
        cmocka_unit_test(test_sigterm_forwarded), cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
