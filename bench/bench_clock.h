// bench_clock: the clocks and the median the benchmark programs report with.
#ifndef CLIPC_BENCH_BENCH_CLOCK_H
#define CLIPC_BENCH_BENCH_CLOCK_H

double bench_now_s(void);  // monotonic wall-clock seconds
// CPU seconds of the process so far (user + system, every thread); *faults (if not NULL) gets its
// minor page faults.
double bench_cpu_s(long *faults);
double bench_median(double *v, long n);  // sorts v

#endif
