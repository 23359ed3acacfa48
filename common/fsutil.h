// fsutil: the small file-system helpers shared by the data modules (whole-file reads, list files,
// JSON files, path joining, folder creation).
#ifndef CLIPC_COMMON_FSUTIL_H
#define CLIPC_COMMON_FSUTIL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

// Reads a whole file into a new NUL-terminated buffer. Returns NULL with err_msg() "<path>: ...".
uint8_t *fs_read_all(const char *path, size_t *size);

// The lines of a list file (class names, templates, mappings): trailing '\r' removed, empty lines
// and comment lines (starting with '#') left out, each line a new string. Returns the count (0 for
// a file without such lines), or -1 with err_msg() naming the file.
int fs_read_lines(const char *path, char ***lines);
void fs_free_lines(char **lines, int n);

// dir + "/" + name (name alone when it is absolute or dir is empty); malloc'ed.
char *fs_join(const char *dir, const char *name);

// The folder part of a path ("." when it has none); malloc'ed.
char *fs_dirname(const char *path);

// Writes root as indented JSON and a newline to path, atomically (common/atomic_file.h), creating
// the folder when missing. Returns 0 or -1 with err_msg() naming the file.
int fs_write_json(const char *path, const cJSON *root);

// Creates a folder and its parents when missing. Returns 0 or -1.
int fs_mkdirs(const char *path);

int fs_is_dir(const char *path);

#endif
