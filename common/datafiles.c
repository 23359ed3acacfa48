#include "common/datafiles.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

int datafile_path(const char *rel, char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return err_errno("/proc/self/exe");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';  // the binary's folder
    int len = snprintf(out, cap, "%s/../share/clipc/%s", exe, rel);
    if (len < 0 || (size_t)len >= cap) return err_set("%s: path too long", rel);
    if (access(out, R_OK) != 0) return err_set("%s: not found (the data files clipc ships: is it installed?)", out);
    return 0;
}
