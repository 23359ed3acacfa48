// sysinfo: what the running process computes with: which BLAS library libtorch resolved and how
// many threads it uses, and the core count. Printed by every tool that does heavy math.
#ifndef CLIPC_COMMON_SYSINFO_H
#define CLIPC_COMMON_SYSINFO_H

#include <stddef.h>
#include <stdint.h>

// A short description of the BLAS loaded in this process, e.g. "OpenBLAS 0.3.21 (openmp),
// /usr/lib/.../libblas.so.3", or "reference BLAS (slow: run scripts/setup.sh)".
void sysinfo_blas(char *out, size_t cap);
int sysinfo_cores(void);

// libgomp spin-waits between parallel regions by default. libtorch and OpenBLAS each keep an
// OpenMP pool, and on a small machine the spinning threads of one starve the other: a training
// step ran 5-8x slower with 2 threads than with 1 here. The policy is read only when libgomp
// loads, so when OMP_WAIT_POLICY is unset this sets it to "passive" and re-executes the program
// (argv as given to main). Returns only if nothing needed doing or the re-exec failed.
void sysinfo_tune_openmp(char **argv);

// glibc's malloc hands a freed block above its mmap threshold (128 KiB at first) straight back to
// the system and trims the top of its heap: a training step's temporaries (hundreds of blocks of
// megabytes) were then mapped and faulted in anew every step, a fifth of the step's cycles in
// page faults. This keeps them in the process (mmap threshold 1 GiB, no trimming), so later steps
// reuse the same pages; docs/benchmarks.md compares it with jemalloc and tcmalloc. Call at start-up.
// Malloc settings of the user's own (GLIBC_TUNABLES naming a glibc.malloc tunable) are left as
// they are, e.g. GLIBC_TUNABLES=glibc.malloc.check=0 keeps glibc's defaults.
void sysinfo_tune_malloc(void);
// The process's peak resident memory in bytes (VmHWM of /proc/self/status), and its reset
// (writing "5" to /proc/self/clear_refs, Linux >= 4.0), so that a peak can be read per step.
// -1 with a message where the files are missing or refused (not Linux, a restricted /proc).
int64_t sysinfo_peak_rss(void);
int sysinfo_peak_rss_reset(void);
#endif
