// sysinfo: what the running process computes with: which BLAS library libtorch resolved and how
// many threads it uses, and the core count. Printed by every tool that does heavy math.
#ifndef CLIPC_COMMON_SYSINFO_H
#define CLIPC_COMMON_SYSINFO_H

#include <stddef.h>

// A short description of the BLAS loaded in this process, e.g. "OpenBLAS 0.3.21 (openmp),
// /usr/lib/.../libblas.so.3", or "reference BLAS (slow: run scripts/setup.sh)".
void sysinfo_blas(char *out, size_t cap);
int sysinfo_cores(void);

#endif
