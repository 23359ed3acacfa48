// rng: the small counter-seeded random generator behind every random choice of the data modules.
//
// splitmix64: one 64-bit word of state, so a generator is saved and restored as that word. Seeds
// are mixed from (seed, stream, epoch, rank, ...) with rng_mix so that each random decision has its
// own independent stream and never depends on thread timing.
#ifndef CLIPC_COMMON_RNG_H
#define CLIPC_COMMON_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} rng;

static inline uint64_t rng_next(rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A well-mixed combination of a and b (order matters).
static inline uint64_t rng_mix(uint64_t a, uint64_t b) {
    rng r = {a ^ (b * 0xD1B54A32D192ED03ull)};
    return rng_next(&r);
}

// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
static inline uint64_t rng_below(rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

// Uniform double in [0, 1).
static inline double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

#endif
