// atomic_file: writing a file so that an interruption never leaves it damaged. The content goes to
// "<path>.tmp.<pid>", written by the caller's function by whatever means (stdio, zlib, HDF5,
// cairo); that file is fsync'ed, renamed over path, and the folder fsync'ed. On any failure path
// keeps what it held and the temporary file is removed.
#ifndef CLIPC_COMMON_ATOMIC_FILE_H
#define CLIPC_COMMON_ATOMIC_FILE_H

#include <stddef.h>

// Writes the whole file at tmp_path. Returns 0, or -1 with err_msg() saying what failed (without
// the path: atomic_file_write prefixes the target's).
typedef int (*atomic_file_writer)(const char *tmp_path, void *ctx);

// Returns 0, or -1 with err_msg() "<path>: <what failed>".
int atomic_file_write(const char *path, atomic_file_writer write, void *ctx);

// atomic_file_write of a buffer in memory.
int atomic_file_write_bytes(const char *path, const void *data, size_t size);

#endif
