// fixture: a TEST-ONLY reader of single tensors from a safetensors file (F32 and I64 only), for
// comparing against the OpenCLIP reference fixtures. Not for library use: the model's loader is
// model/safetensors.h.
#ifndef CLIPC_TESTS_FIXTURE_H
#define CLIPC_TESTS_FIXTURE_H

#include "shim/tensor.h"

// The tensor `name` of the safetensors file at path, as a new CPU tensor; NULL with a message
// naming the file and key when the file is unreadable or malformed or the key is missing.
tensor *fixture_tensor(const char *path, const char *name);

// fixture_tensor() of <dir>/<file>.
tensor *fixture_tensor_in(const char *dir, const char *file, const char *name);

#endif
