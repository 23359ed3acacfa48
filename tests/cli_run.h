// cli_run: runs a shell command for the end-to-end CLI tests and captures what it prints.
#ifndef CLIPC_TESTS_CLI_RUN_H
#define CLIPC_TESTS_CLI_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

// Reads the "loss" of each "train" line of run WORK/logs/RUN/metrics.jsonl into losses[step - 1],
// as text (for exact comparison). Returns the highest step, or -1 when the file cannot be read or
// a step lies outside 1..max.
static inline int cli_read_losses(const char *work, const char *run, char losses[][32], int max) {
    char path[4096];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, run);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f) && n >= 0) {
        const char *step = strstr(line, "\"step\":"), *loss = strstr(line, "\"loss\":");
        if (!strstr(line, "\"type\":\"train\"") || !step || !loss) continue;
        int s = atoi(step + 7);
        if (s < 1 || s > max) n = -1;
        else sscanf(loss + 7, "%31[^,}]", losses[s - 1]), n = s > n ? s : n;
    }
    fclose(f);
    return n;
}

#endif
