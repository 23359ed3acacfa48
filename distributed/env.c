#include "distributed/env.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char *env_get(char *const *envp, const char *name) {
    if (!envp) return getenv(name);
    size_t n = strlen(name);
    for (char *const *e = envp; *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

// A non-negative decimal integer at most max.
static int env_int(char *const *envp, const char *name, long max, int *out) {
    const char *s = env_get(envp, name);
    if (!s || !*s) return err_set("%s is not set", name);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || errno || v > max)
        return err_set("%s='%s' is not a number in 0..%ld", name, s, max);
    *out = (int)v;
    return 0;
}

static int env_int_or(char *const *envp, const char *name, long max, int fallback, int *out) {
    if (!env_get(envp, name)) {
        *out = fallback;
        return 0;
    }
    return env_int(envp, name, max, out);
}

static int env_addr(char *const *envp, const char *name, char *out, size_t cap) {
    const char *s = env_get(envp, name);
    if (!s || !*s) return err_set("%s is not set", name);
    if (strlen(s) >= cap) return err_set("%s is longer than %zu bytes", name, cap - 1);
    strcpy(out, s);
    return 0;
}

// TORCHELASTIC_USE_AGENT_STORE is "True" (the agent serves the store) or anything else (it does
// not), exactly as torch.distributed's rendezvous reads it.
static int read_agent_store(dist_env *env, char *const *envp) {
    const char *use = env_get(envp, "TORCHELASTIC_USE_AGENT_STORE");
    if (!use || strcmp(use, "True") != 0) return 0;
    int attempt;
    if (env_int(envp, "TORCHELASTIC_RESTART_COUNT", INT_MAX, &attempt))
        return err_prefix("TORCHELASTIC_USE_AGENT_STORE=True");
    snprintf(env->agent_store_prefix, sizeof env->agent_store_prefix, "/worker/attempt_%d", attempt);
    return 0;
}

static int read_torchrun(dist_env *env, char *const *envp) {
    if (env_int(envp, "RANK", INT_MAX, &env->rank) || env_int(envp, "WORLD_SIZE", INT_MAX, &env->world_size) ||
        env_int(envp, "LOCAL_RANK", INT_MAX, &env->local_rank) ||
        env_addr(envp, "MASTER_ADDR", env->master_addr, sizeof env->master_addr) ||
        env_int(envp, "MASTER_PORT", 65535, &env->master_port))
        return -1;
    return read_agent_store(env, envp);
}

static int read_openmpi(dist_env *env, char *const *envp) {
    if (env_int(envp, "OMPI_COMM_WORLD_RANK", INT_MAX, &env->rank) ||
        env_int(envp, "OMPI_COMM_WORLD_SIZE", INT_MAX, &env->world_size) ||
        env_int(envp, "OMPI_COMM_WORLD_LOCAL_RANK", INT_MAX, &env->local_rank))
        return -1;
    if (env_addr(envp, "MASTER_ADDR", env->master_addr, sizeof env->master_addr))
        return err_prefix("Open MPI run (set MASTER_ADDR to the first rank's host)");
    return env_int_or(envp, "MASTER_PORT", 65535, DIST_ENV_DEFAULT_PORT, &env->master_port);
}

static int read_slurm(dist_env *env, char *const *envp) {
    if (env_int(envp, "SLURM_PROCID", INT_MAX, &env->rank) ||
        env_int(envp, "SLURM_NTASKS", INT_MAX, &env->world_size) ||
        env_int(envp, "SLURM_LOCALID", INT_MAX, &env->local_rank))
        return -1;
    if (env_get(envp, "MASTER_ADDR")) {
        if (env_addr(envp, "MASTER_ADDR", env->master_addr, sizeof env->master_addr)) return -1;
    } else {
        const char *nodes = env_get(envp, "SLURM_JOB_NODELIST");
        if (!nodes) return err_set("SLURM_JOB_NODELIST is not set (nor MASTER_ADDR)");
        if (dist_nodelist_first(nodes, env->master_addr, sizeof env->master_addr))
            return err_prefix("SLURM_JOB_NODELIST='%s'", nodes);
    }
    int job = 0;
    if (env_int_or(envp, "SLURM_JOB_ID", INT_MAX, 0, &job)) return -1;
    return env_int_or(envp, "MASTER_PORT", 65535, DIST_ENV_DEFAULT_PORT + job % 1000, &env->master_port);
}

const char *dist_launcher_name(dist_launcher launcher) {
    switch (launcher) {
    case DIST_LAUNCHER_NONE: return "none";
    case DIST_LAUNCHER_TORCHRUN: return "torchrun";
    case DIST_LAUNCHER_OPENMPI: return "openmpi";
    case DIST_LAUNCHER_SLURM: return "slurm";
    }
    return "?";
}

int dist_env_read(dist_env *env, char *const *envp) {
    memset(env, 0, sizeof *env);
    env->world_size = 1;
    int rc = 0;
    if (env_get(envp, "RANK") || env_get(envp, "WORLD_SIZE")) {
        env->launcher = DIST_LAUNCHER_TORCHRUN;
        rc = read_torchrun(env, envp);
    } else if (env_get(envp, "OMPI_COMM_WORLD_RANK")) {
        env->launcher = DIST_LAUNCHER_OPENMPI;
        rc = read_openmpi(env, envp);
    } else if (env_get(envp, "SLURM_PROCID") && env_get(envp, "SLURM_STEP_ID")) {
        env->launcher = DIST_LAUNCHER_SLURM;
        rc = read_slurm(env, envp);
    }
    if (rc) return err_prefix("%s environment", dist_launcher_name(env->launcher));
    if (env->world_size < 1 || env->rank >= env->world_size)
        return err_set("%s environment: rank %d is not in a world of %d", dist_launcher_name(env->launcher),
                       env->rank, env->world_size);
    if (env->launcher != DIST_LAUNCHER_NONE && env->master_port == 0)
        return err_set("%s environment: master port 0", dist_launcher_name(env->launcher));
    return 0;
}

// Appends the first host of one bracket group "[01-04,07]" (starting at *p, just after '[') and
// moves *p past its ']'.
static int first_of_range(const char **p, char *host, size_t *len, size_t cap) {
    const char *s = *p;
    if (!isdigit((unsigned char)*s)) return err_set("a bracket must start with a number");
    while (isdigit((unsigned char)*s)) {
        if (*len + 1 >= cap) return err_set("the first host is longer than %zu bytes", cap - 1);
        host[(*len)++] = *s++;
    }
    while (*s && *s != ']') {
        if (!isdigit((unsigned char)*s) && *s != ',' && *s != '-') return err_set("unexpected '%c' in a bracket", *s);
        s++;
    }
    if (*s != ']') return err_set("'[' without ']'");
    *p = s + 1;
    return 0;
}

int dist_nodelist_first(const char *nodelist, char *host, size_t cap) {
    size_t len = 0;
    const char *p = nodelist;
    while (*p && *p != ',') {
        if (*p == ']') return err_set("']' without '['");
        if (*p == '[') {
            p++;
            if (first_of_range(&p, host, &len, cap)) return -1;
            continue;
        }
        if (len + 1 >= cap) return err_set("the first host is longer than %zu bytes", cap - 1);
        host[len++] = *p++;
    }
    if (len == 0) return err_set("no host");
    host[len] = '\0';
    return 0;
}
