// fuzz_util: what the fuzz harnesses share: handing an input to a reader that takes a path.
#ifndef CLIPC_TESTS_FUZZ_UTIL_H
#define CLIPC_TESTS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

// Writes data to this process's temporary file "<TMPDIR>/clipc-fuzz-<pid><suffix>" (removed at
// exit) and returns its path.
const char *fuzz_temp_file(const uint8_t *data, size_t size, const char *suffix);

#endif
