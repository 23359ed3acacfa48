#include "common/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

static int sync_path(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
    int rc = sync_path(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    return rc;
}

int atomic_file_write(const char *path, atomic_file_writer write, void *ctx) {
    size_t cap = strlen(path) + 32;
    char *tmp = xmalloc(cap);
    snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
    int rc = write(tmp, ctx);
    if (rc != 0) err_prefix("%s", path);
    else if (sync_path(tmp, O_RDONLY) != 0) rc = err_set("%s: cannot sync the temporary file: %s", path, strerror(errno));
    else if (rename(tmp, path) != 0) rc = err_set("%s: cannot rename the temporary file over it: %s", path, strerror(errno));
    else if (sync_parent_dir(path) != 0) rc = err_set("%s: cannot sync its folder: %s", path, strerror(errno));
    if (rc != 0) unlink(tmp);
    free(tmp);
    return rc;
}

typedef struct {
    const void *data;
    size_t size;
} bytes;

static int write_bytes(const char *tmp, void *ctx) {
    const bytes *b = ctx;
    FILE *f = fopen(tmp, "wb");
    if (!f) return err_set("cannot create temporary file: %s", strerror(errno));
    int rc = fwrite(b->data, 1, b->size, f) == b->size ? 0 : -1;
    int saved = errno;
    if (fclose(f) != 0 && rc == 0) rc = -1, saved = errno;
    return rc == 0 ? 0 : err_set("write failed: %s", strerror(saved));
}

int atomic_file_write_bytes(const char *path, const void *data, size_t size) {
    bytes b = {data, size};
    return atomic_file_write(path, write_bytes, &b);
}
