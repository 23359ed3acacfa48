#include "common/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ERR_CAP 1024
static _Thread_local char err_buf[ERR_CAP];

// Messages are one line even when they quote a file's bytes (a key with a newline in it): control
// characters other than tab become '?'.
static void keep_one_line(char *s) {
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f) *s = '?';
}

int err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, ERR_CAP, fmt, ap);
    va_end(ap);
    keep_one_line(err_buf);
    return -1;
}

int err_prefix(const char *fmt, ...) {
    char prefix[ERR_CAP], old[ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, ERR_CAP, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, ERR_CAP);
    size_t n = strlen(prefix);
    if (n > ERR_CAP - 3) n = ERR_CAP - 3;
    memcpy(err_buf, prefix, n);
    memcpy(err_buf + n, ": ", 2);
    size_t rest = strlen(old);
    if (rest > ERR_CAP - 3 - n) rest = ERR_CAP - 3 - n;
    memcpy(err_buf + n + 2, old, rest);
    err_buf[n + 2 + rest] = '\0';
    keep_one_line(err_buf);
    return -1;
}

const char *err_msg(void) { return err_buf; }

void err_clear(void) { err_buf[0] = '\0'; }

int err_errno(const char *path) { return err_set("%s: %s", path, strerror(errno)); }

FILE *fopen_checked(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    if (!f) err_errno(path);
    return f;
}

static void *oom(size_t n) {
    fprintf(stderr, "clipc: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : oom(count * size);
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}
