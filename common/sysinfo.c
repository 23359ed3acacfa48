#include "common/sysinfo.h"

#include "common/error.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <link.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char path[PATH_MAX];
} blas_search;

static int find_blas(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    blas_search *s = data;
    if (info->dlpi_name && strstr(info->dlpi_name, "libblas.so")) {
        if (!realpath(info->dlpi_name, s->path)) snprintf(s->path, sizeof s->path, "%s", info->dlpi_name);
        return 1;
    }
    return 0;
}

void sysinfo_blas(char *out, size_t cap) {
    blas_search s = {{0}};
    dl_iterate_phdr(find_blas, &s);
    const char *(*openblas_config)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_config");
    int (*openblas_threads)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "openblas_get_num_threads");
    if (openblas_config)
        snprintf(out, cap, "%s, %d threads (%s)", openblas_config(),
                 openblas_threads ? openblas_threads() : 0, s.path[0] ? s.path : "linked");
    else if (s.path[0] && strstr(s.path, "/blas/"))
        snprintf(out, cap, "reference BLAS, slow: run scripts/setup.sh to install OpenBLAS (%s)", s.path);
    else
        snprintf(out, cap, "%s", s.path[0] ? s.path : "no libblas loaded");
}

int sysinfo_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void sysinfo_tune_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
}

void sysinfo_tune_malloc(void) {
    const char *tunables = getenv("GLIBC_TUNABLES");
    if (tunables && strstr(tunables, "glibc.malloc.")) return;
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

int64_t sysinfo_peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return err_errno("/proc/self/status");
    char line[256];
    long long kb = -1;
    while (kb < 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) != 1) kb = -1;
    fclose(f);
    return kb >= 0 ? (int64_t)kb * 1024 : err_set("/proc/self/status: no VmHWM line");
}

int sysinfo_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return err_errno("/proc/self/clear_refs");
    bool ok = fputs("5", f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : err_errno("/proc/self/clear_refs");
}
