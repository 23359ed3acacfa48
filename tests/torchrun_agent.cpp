// torchrun_agent: what torchrun (PyTorch 1.13's torch.distributed.run with its default static
// rendezvous, one node) sets up for its workers, reproduced for the tests, because Debian's
// torchrun fails on Python 3.11 before it starts any worker:
//   - the agent serves a c10d TCPStore on MASTER_PORT itself, before any worker starts, and
//     keeps it for the whole run (its own keys under the run id's prefix);
//   - each worker gets the environment of LocalElasticAgent._start_workers: LOCAL_RANK, RANK,
//     GROUP_RANK, ROLE_RANK, ROLE_NAME, LOCAL_WORLD_SIZE, WORLD_SIZE, GROUP_WORLD_SIZE,
//     ROLE_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RESTART_COUNT,
//     TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_RUN_ID, TORCHELASTIC_USE_AGENT_STORE=True,
//     NCCL_ASYNC_ERROR_HANDLING=1, TORCHELASTIC_ERROR_FILE and (more than one worker, none set)
//     OMP_NUM_THREADS=1;
//   - when a worker fails, the others get SIGTERM and, while restarts are left, every worker is
//     started again with TORCHELASTIC_RESTART_COUNT one higher, against the same store.
// Exits 0 when an attempt succeeds, else with the last failure's status (128 + signal if killed).
// Usage: torchrun_agent --nproc-per-node N --master-port P [--max-restarts R] -- COMMAND ARGS...
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char **environ;

namespace {

struct options {
    int nproc = 1, port = 0, max_restarts = 0;
    std::vector<char *> command;
};

bool parse(int argc, char **argv, options &o) {
    int i = 1;
    for (; i + 1 < argc && std::strcmp(argv[i], "--") != 0; i += 2) {
        int v = std::atoi(argv[i + 1]);
        if (!std::strcmp(argv[i], "--nproc-per-node")) o.nproc = v;
        else if (!std::strcmp(argv[i], "--master-port")) o.port = v;
        else if (!std::strcmp(argv[i], "--max-restarts")) o.max_restarts = v;
        else return false;
    }
    if (i >= argc || std::strcmp(argv[i], "--") != 0 || i + 1 >= argc || o.nproc < 1 || o.port < 1) return false;
    o.command.assign(argv + i + 1, argv + argc);
    o.command.push_back(nullptr);
    return true;
}

// The environment of worker `local` in attempt `attempt`: the agent's own, plus the worker's.
std::vector<std::string> worker_env(const options &o, int local, int attempt) {
    std::vector<std::string> env;
    for (char **e = environ; *e; e++) env.emplace_back(*e);
    std::string n = std::to_string(o.nproc), r = std::to_string(local);
    std::string error_file = "/tmp/torchelastic_clipc/none_" + std::to_string(getpid()) + "/attempt_" +
                             std::to_string(attempt) + "/" + r + "/error.json";
    const std::pair<const char *, std::string> vars[] = {
        {"LOCAL_RANK", r},
        {"RANK", r},
        {"GROUP_RANK", "0"},
        {"ROLE_RANK", r},
        {"ROLE_NAME", "default"},
        {"LOCAL_WORLD_SIZE", n},
        {"WORLD_SIZE", n},
        {"GROUP_WORLD_SIZE", "1"},
        {"ROLE_WORLD_SIZE", n},
        {"MASTER_ADDR", "127.0.0.1"},
        {"MASTER_PORT", std::to_string(o.port)},
        {"TORCHELASTIC_RESTART_COUNT", std::to_string(attempt)},
        {"TORCHELASTIC_MAX_RESTARTS", std::to_string(o.max_restarts)},
        {"TORCHELASTIC_RUN_ID", "none"},
        {"TORCHELASTIC_USE_AGENT_STORE", "True"},
        {"NCCL_ASYNC_ERROR_HANDLING", "1"},
        {"TORCHELASTIC_ERROR_FILE", error_file},
    };
    for (const auto &v : vars) env.push_back(std::string(v.first) + "=" + v.second);
    if (o.nproc > 1 && !std::getenv("OMP_NUM_THREADS")) env.emplace_back("OMP_NUM_THREADS=1");
    return env;
}

pid_t start_worker(const options &o, int local, int attempt) {
    std::vector<std::string> env = worker_env(o, local, attempt);
    std::vector<char *> envp;
    for (std::string &s : env) envp.push_back(&s[0]);
    envp.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // a test that times out leaves no rank behind
        execvpe(o.command[0], o.command.data(), envp.data());
        std::perror(o.command[0]);
        _exit(127);
    }
    return pid;
}

// Runs one attempt: 0 when every worker succeeded, else the first failure's status.
int run_attempt(const options &o, int attempt) {
    std::vector<pid_t> pids;
    for (int i = 0; i < o.nproc; i++) pids.push_back(start_worker(o, i, attempt));
    int status = 0, live = o.nproc;
    while (live > 0) {
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) break;
        live--;
        int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        for (pid_t &p : pids)
            if (p == pid) p = 0;
        if (code == 0 || status != 0) continue;
        status = code;
        std::fprintf(stderr, "torchrun_agent: attempt %d: a worker failed with status %d; stopping the others\n",
                     attempt, code);
        for (pid_t p : pids)
            if (p > 0) kill(p, SIGTERM);
    }
    return status;
}

}  // namespace

int main(int argc, char **argv) {
    options o;
    if (!parse(argc, argv, o)) {
        std::fprintf(stderr, "usage: %s --nproc-per-node N --master-port P [--max-restarts R] -- COMMAND ARGS...\n",
                     argv[0]);
        return 2;
    }
    // The static rendezvous's store: served by the agent of node 0 (world size: the agents).
    c10d::TCPStoreOptions so;
    so.port = (uint16_t)o.port;
    so.isServer = true;
    so.numWorkers = 1;
    so.waitWorkers = false;
    so.multiTenant = true;
    auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
    // The agent's own keys, under the run id's prefix (as the static rendezvous keeps them).
    c10d::PrefixStore agent("none", server);
    agent.set("torchelastic/role_info0", std::vector<uint8_t>{'d'});
    int status = 0;
    for (int attempt = 0; attempt <= o.max_restarts; attempt++) {
        status = run_attempt(o, attempt);
        if (status == 0) break;
    }
    return status;
}
