#include "distributed/launch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

extern char **environ;

// The variables every rank gets (torchrun's names), replacing any the launcher inherited.
// TORCHELASTIC_USE_AGENT_STORE=False: rank 0 serves the store, even when `clipc launch` itself runs
// under torchrun's agent (whose True would otherwise reach the ranks).
static const char *const launch_vars[] = {"MASTER_ADDR", "MASTER_PORT",      "WORLD_SIZE", "RANK",
                                          "LOCAL_RANK",  "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                          "TORCHELASTIC_USE_AGENT_STORE"};
enum { N_LAUNCH_VARS = sizeof launch_vars / sizeof launch_vars[0] };

typedef struct {
    const dist_launch_options *o;
    dist_launch_result *r;
    pid_t *pids;  // one per local rank; 0 once reaped (or never started)
    int live;
    bool stopping, killed;
    struct timespec deadline;  // SIGKILL for those left then
} supervisor;

static bool is_launch_var(const char *entry) {
    for (int i = 0; i < N_LAUNCH_VARS; i++) {
        size_t n = strlen(launch_vars[i]);
        if (!strncmp(entry, launch_vars[i], n) && entry[n] == '=') return true;
    }
    return false;
}

// The environment of local rank `local` (every string malloc'ed; free with free_environ).
static char **rank_environ(const dist_launch_options *o, int local) {
    size_t n = 0;
    while (environ && environ[n]) n++;
    char **env = xcalloc(n + N_LAUNCH_VARS + 1, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_launch_var(environ[i])) env[k++] = xstrdup(environ[i]);
    long values[N_LAUNCH_VARS] = {0, o->master_port, (long)o->nnodes * o->nproc_per_node,
                                  (long)o->node_rank * o->nproc_per_node + local, local, o->nproc_per_node, o->node_rank};
    for (int i = 0; i < N_LAUNCH_VARS; i++) {
        char buf[512];
        if (i == 0) snprintf(buf, sizeof buf, "%s=%s", launch_vars[i], o->master_addr);
        else if (i == N_LAUNCH_VARS - 1) snprintf(buf, sizeof buf, "%s=False", launch_vars[i]);
        else snprintf(buf, sizeof buf, "%s=%ld", launch_vars[i], values[i]);
        env[k++] = xstrdup(buf);
    }
    return env;
}

static void free_environ(char **env) {
    for (char **e = env; *e; e++) free(*e);
    free(env);
}

// In the child: its own process group (so that a signal reaches whatever it starts), death with
// the launcher, the signal mask the launcher started with, then the command. An exec failure
// goes back through the close-on-exec pipe.
static void exec_rank(const dist_launch_options *o, char **env, const sigset_t *mask, pid_t launcher, int report) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher) _exit(128 + SIGTERM);
    sigprocmask(SIG_SETMASK, mask, NULL);
    execvpe(o->command[0], o->command, env);
    int e = errno;
    ssize_t unused = write(report, &e, sizeof e);
    (void)unused;
    _exit(127);
}

// Starts local rank `local`; its pid, or -1 with a message when it could not be started.
static pid_t spawn_rank(const dist_launch_options *o, int local, const sigset_t *mask) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) return err_errno("pipe");
    char **env = rank_environ(o, local);
    pid_t launcher = getpid(), pid = fork();
    if (pid == 0) exec_rank(o, env, mask, launcher, fds[1]);
    free_environ(env);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return err_errno("fork");
    }
    int e = 0;
    ssize_t n;
    do n = read(fds[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(fds[0]);
    if (n != (ssize_t)sizeof e) return pid;
    waitpid(pid, NULL, 0);
    return err_set("cannot run '%s': %s", o->command[0], strerror(e));
}

static double seconds_until(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(t->tv_sec - now.tv_sec) + (double)(t->tv_nsec - now.tv_nsec) / 1e9;
}

static void signal_all(supervisor *s, int sig) {
    for (int i = 0; i < s->o->nproc_per_node; i++)
        if (s->pids[i] > 0) kill(-s->pids[i], sig);
}

// Sends sig to every rank left and, the first time, starts the grace period.
static void begin_stop(supervisor *s, int sig) {
    signal_all(s, sig);
    if (s->stopping) return;
    s->stopping = true;
    clock_gettime(CLOCK_MONOTONIC, &s->deadline);
    double end = (double)s->deadline.tv_nsec / 1e9 + s->o->grace_s;
    s->deadline.tv_sec += (time_t)end;
    s->deadline.tv_nsec = (long)((end - (double)(time_t)end) * 1e9);
}

static void reap(supervisor *s) {
    for (int i = 0; i < s->o->nproc_per_node; i++) {
        int st;
        if (s->pids[i] <= 0 || waitpid(s->pids[i], &st, WNOHANG) != s->pids[i]) continue;
        s->pids[i] = 0;
        s->live--;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (code == 0 || s->r->failed_rank >= 0) continue;
        s->r->failed_rank = s->o->node_rank * s->o->nproc_per_node + i;
        s->r->failed_code = code;
        s->r->failed_signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        if (!s->stopping) begin_stop(s, SIGTERM);
    }
}

// Waits for every rank, forwarding the launcher's signals and stopping the others after a failure.
static void supervise(supervisor *s, const sigset_t *watched) {
    while (s->live > 0) {
        double left = s->stopping && !s->killed ? seconds_until(&s->deadline) : 60.0;
        if (left < 0) left = 0;
        struct timespec wait = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int sig = sigtimedwait(watched, NULL, &wait);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            s->r->signal = sig;
            begin_stop(s, sig);
        }
        reap(s);
        if (s->live > 0 && s->stopping && !s->killed && seconds_until(&s->deadline) <= 0) {
            signal_all(s, SIGKILL);
            s->killed = true;
        }
    }
}

static int check_options(const dist_launch_options *o) {
    if (o->nproc_per_node < 1) return err_set("--nproc-per-node must be at least 1");
    if (o->nnodes < 1) return err_set("--nnodes must be at least 1");
    if (o->node_rank < 0 || o->node_rank >= o->nnodes)
        return err_set("--node-rank %d is not in 0..%d", o->node_rank, o->nnodes - 1);
    if (o->master_port < 1 || o->master_port > 65535) return err_set("--master-port %d is not in 1..65535", o->master_port);
    if (!o->master_addr || !*o->master_addr || strlen(o->master_addr) > 255) return err_set("--master-addr is empty or too long");
    if (!(o->grace_s >= 0)) return err_set("--grace must not be negative");
    if (!o->command || !o->command[0]) return err_set("no command to launch (put it after --)");
    return 0;
}

int dist_launch_run(const dist_launch_options *o, dist_launch_result *r) {
    *r = (dist_launch_result){.failed_rank = -1};
    if (check_options(o)) return -1;
    sigset_t watched, old;
    sigemptyset(&watched);
    sigaddset(&watched, SIGCHLD);
    sigaddset(&watched, SIGINT);
    sigaddset(&watched, SIGTERM);
    sigaddset(&watched, SIGHUP);
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old_chld;
    sigaction(SIGCHLD, &dfl, &old_chld);  // an inherited SIG_IGN would reap the ranks behind our back
    sigprocmask(SIG_BLOCK, &watched, &old);

    supervisor s = {.o = o, .r = r, .pids = xcalloc((size_t)o->nproc_per_node, sizeof(pid_t))};
    int rc = 0;
    for (int i = 0; i < o->nproc_per_node && rc == 0; i++) {
        pid_t pid = spawn_rank(o, i, &old);
        if (pid < 0) rc = -1;
        else s.pids[i] = pid, s.live++;
    }
    if (rc) begin_stop(&s, SIGTERM);
    supervise(&s, &watched);
    free(s.pids);

    sigprocmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGCHLD, &old_chld, NULL);
    r->status = r->failed_rank >= 0 ? r->failed_code : r->signal ? 128 + r->signal : 0;
    return rc;
}
