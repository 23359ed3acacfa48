// npy: writing float32 matrices in NumPy's .npy format (version 1.0): the magic "\x93NUMPY", the
// version bytes, a little-endian uint16 header length, a Python-literal header
// {'descr': '<f4', 'fortran_order': False, 'shape': (rows, cols), } padded with spaces and a
// newline so that the data starts at a multiple of 64 bytes, then the data, little-endian, C order.
#ifndef CLIPC_EVAL_NPY_H
#define CLIPC_EVAL_NPY_H

#include <stdint.h>

// Writes data (rows, cols) to path atomically. Returns 0, or -1 with err_msg() naming the file.
int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols);

#endif
