// convert_test: helpers of the `clipc shards` tests (include after cmocka.h): files in the group's
// folder, running the command in-process, and reading back what it converted.
#ifndef CLIPC_TESTS_CONVERT_TEST_H
#define CLIPC_TESTS_CONVERT_TEST_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "data_testutil.h"

static inline char *sub(const char *name) { return testutil_path(testutil_dir, name); }

static inline char *make_dir(const char *name) {
    char *d = sub(name);
    assert_int_equal(fs_mkdirs(d), 0);
    return d;
}

static inline void write_text(const char *path, const char *text) {
    assert_int_equal(testutil_write_file(path, text, strlen(text)), 0);
}

// Runs `clipc shards` with a NULL-terminated argument list.
static inline int shards(const char *first, ...) {
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) argv[argc++] = (char *)a;
    va_end(ap);
    return cmd_shards(argc, argv);
}

static inline void read_converted(const char *out, testutil_converted *c) {
    if (testutil_read_converted(out, c)) fail_msg("%s", err_msg());
}

static inline int find_key(const testutil_converted *c, const char *key) {
    int i = testutil_find_key(c, key);
    if (i < 0) fail_msg("key %s not converted", key);
    return i;
}

#endif
