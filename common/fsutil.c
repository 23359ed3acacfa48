#include "common/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"
#include "common/error.h"

uint8_t *fs_read_all(const char *path, size_t *size) {
    FILE *f = fopen_checked(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n + 1 < cap) break;
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        err_set("%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (size) *size = n;
    return buf;
}

int fs_read_lines(const char *path, char ***lines) {
    FILE *f = fopen_checked(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, alloc = 0;
    ssize_t len;
    *lines = NULL;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (n == alloc) *lines = xrealloc(*lines, (size_t)(alloc = alloc ? 2 * alloc : 16) * sizeof(char *));
        (*lines)[n++] = xstrdup(line);
    }
    free(line);
    fclose(f);
    return n;
}

void fs_free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

char *fs_join(const char *dir, const char *name) {
    if (name[0] == '/' || !dir[0]) return xstrdup(name);
    char *out = xmalloc(strlen(dir) + strlen(name) + 2);
    sprintf(out, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return out;
}

char *fs_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    char *out = xstrdup(path);
    out[slash - path] = '\0';
    return out;
}

int fs_mkdirs(const char *path) {
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; rc == 0; s++) {
        if (*s != '/' && *s != '\0') continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) rc = err_errno(p);
        *s = saved;
        if (!saved) break;
    }
    if (rc == 0 && !fs_is_dir(path)) rc = err_set("%s: exists and is not a folder", path);
    free(p);
    return rc;
}

int fs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_write_json(const char *path, const cJSON *root) {
    char *text = cJSON_Print(root);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n', text[len + 1] = '\0';
    char *dir = fs_dirname(path);
    int rc = fs_mkdirs(dir) ? -1 : atomic_file_write_bytes(path, text, len + 1);
    free(dir);
    free(text);
    return rc;
}
