// cli_run: runs a shell command for the end-to-end CLI tests and captures what it prints.
#ifndef CLIPC_TESTS_CLI_RUN_H
#define CLIPC_TESTS_CLI_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

// Runs a shell command (printf-style); returns its exit status (-1 when it did not exit) and the
// combined stdout and stderr in out (cap bytes; out may be NULL).
static inline int cli_run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int cli_run(char *out, size_t cap, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = out ? fread(out, 1, cap - 1, p) : 0;
    if (out) out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
