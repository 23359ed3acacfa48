// tmpdir: the scratch folder of a test program. tmpdir_setup/tmpdir_teardown are cmocka group
// fixtures that create it (under $TMPDIR or /tmp) and remove it with all its contents; tests name
// files in it with tmpdir_path().
#ifndef CLIPC_TESTS_TMPDIR_H
#define CLIPC_TESTS_TMPDIR_H

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir_root[256];

// "<root>/<name>" in one of 4 rotating buffers (valid until the 4th next call).
static inline char *tmpdir_path(const char *name) {
    static char buf[4][512];
    static int next;
    char *p = buf[next++ % 4];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir_root, name);
    return p;
}

// Files left in the root whose name contains ".tmp." (temporaries of atomic writes); -1 on error.
static inline int tmpdir_count_leftovers(void) {
    DIR *d = opendir(tmpdir_root);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static inline int tmpdir_remove_entry(const char *path, const struct stat *st, int flag,
                                      struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static inline int tmpdir_setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpdir_root, sizeof tmpdir_root, "%s/clipc-test-XXXXXX", base);
    return mkdtemp(tmpdir_root) ? 0 : -1;
}

static inline int tmpdir_teardown(void **state) {
    (void)state;
    return nftw(tmpdir_root, tmpdir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
