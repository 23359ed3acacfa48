// fixture: reading tensors of the OpenCLIP reference fixtures (safetensors files) into shim
// tensors, and comparing results against them with a stated tolerance. Shared by the tests.
#ifndef CLIPC_TESTS_FIXTURE_H
#define CLIPC_TESTS_FIXTURE_H

#include "shim/tensor.h"

// The tensor `name` (F32 or I64) of the safetensors file at path, as a new CPU tensor; NULL with a
// message naming the file and key when the file is unreadable or the key is missing.
tensor *fixture_tensor(const char *path, const char *name);

// fixture_tensor() of <dir>/<file>.
tensor *fixture_tensor_in(const char *dir, const char *file, const char *name);

// Max |got - want| over all elements, where want is fixture_tensor(path, name); NaN when the
// shapes differ, the file cannot be read or got has a NaN. *max_abs receives max |want|.
double fixture_max_diff(const char *path, const char *name, const tensor *got, double *max_abs);

#endif
