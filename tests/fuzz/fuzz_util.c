#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

static char paths[4][512];
static int n_paths;

static void remove_files(void) {
    for (int i = 0; i < n_paths; i++) unlink(paths[i]);
}

static const char *path_for(const char *suffix) {
    char path[512];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/clipc-fuzz-%ld%s", tmp, (long)getpid(), suffix);
    for (int i = 0; i < n_paths; i++)
        if (!strcmp(paths[i], path)) return paths[i];
    CLIPC_ASSERT(n_paths < 4);
    if (n_paths == 0) atexit(remove_files);
    snprintf(paths[n_paths], sizeof paths[n_paths], "%s", path);
    return paths[n_paths++];
}

const char *fuzz_temp_file(const uint8_t *data, size_t size, const char *suffix) {
    const char *path = path_for(suffix);
    FILE *f = fopen(path, "wb");
    CLIPC_ASSERT(f != NULL);
    CLIPC_ASSERT(size == 0 || fwrite(data, 1, size, f) == size);
    CLIPC_ASSERT(fclose(f) == 0);
    return path;
}
