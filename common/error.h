// error: the thread-local "last error" message shared by every clipc module.
//
// Library functions report failure through their return value (-1, NULL, false) and describe it
// here in one line that names the file, key or argument at fault. The caller either adds context
// with err_prefix() or prints err_msg() and stops. Nothing in clipc prints errors from library code.
#ifndef CLIPC_COMMON_ERROR_H
#define CLIPC_COMMON_ERROR_H

#include <stdio.h>
#include <stdlib.h>

// Sets the message (printf-style). Always returns -1 so callers can `return err_set(...)`.
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prepends "<context>: " to the current message. Returns -1.
int err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The current message ("" when none was set).
const char *err_msg(void);
void err_clear(void);

// Sets the message from errno: "<path>: <strerror>". Returns -1.
int err_errno(const char *path);

// Opens a file or sets "<path>: <reason>" and returns NULL.
FILE *fopen_checked(const char *path, const char *mode);

// Aborts with file:line when an internal invariant (never user input) does not hold.
#define CLIPC_ASSERT(cond)                                                                      \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "clipc: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

// malloc/calloc/realloc that abort on exhaustion (which no caller can recover from).
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
