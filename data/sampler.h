// sampler: the order in which one rank visits a sharded dataset in one epoch, computed on sample
// references alone (no I/O), so that it depends only on (seed, epoch, rank, world size) and can be
// saved and restored exactly.
//
// Without resampling, the shards are put in an order drawn from (seed, epoch) (the same on every
// rank; file order when not shuffling), their samples are concatenated into one sequence of T
// samples, and rank r reads the contiguous range [T*r/W, T*(r+1)/W): each sample belongs to exactly
// one rank, and a rank touches whole shards except at most two at its ends. With resampling, each
// rank draws shards with replacement (weighted) from (seed, epoch, rank) and reads each drawn shard
// in order. Either stream then passes through a shuffle buffer (webdataset-style: keep up to S
// samples, emit a uniformly drawn one) seeded from (seed, epoch, rank).
#ifndef CLIPC_DATA_SAMPLER_H
#define CLIPC_DATA_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/rng.h"

typedef struct {
    uint32_t shard;  // index into the global shard list (all sources, in order)
    uint32_t index;  // sample within the shard
} sample_ref;

typedef struct {
    int n_shards;
    const int64_t *shard_sizes;   // (n_shards)
    const double *shard_weights;  // (n_shards) resampling weights; NULL: all equal
    uint64_t seed;
    int rank, world_size, batch_size;
    bool shuffle;                 // shard order and shuffle buffer; otherwise file order
    int buffer_size;              // shuffle buffer capacity in samples
    bool resampled;
    int64_t samples_per_epoch;    // resampled: across all ranks (0: the dataset's size)
    bool drop_last;               // every rank emits the same number of full batches
} sampler_config;

// Called when a sample enters the shuffle buffer, to attach its payload (a malloc'ed block the
// sampler frees if it is never emitted). sequential is false for the scattered re-reads after a
// restore. Returns 0 or -1 (err_msg() set).
typedef int (*sampler_fetch_fn)(void *ctx, sample_ref ref, bool sequential, void **payload);

typedef struct {
    sampler_config cfg;
    double *cum_weights;          // (n_shards) resampled: cumulative draw weights
    sampler_fetch_fn fetch;       // NULL: references only
    void *fetch_ctx;
    int64_t epoch;
    uint32_t *order;              // (n_shards) shard order of this epoch
    int64_t *prefix;              // (n_shards + 1) samples before each shard in that order
    int64_t lo, hi, cursor;       // this rank's range of the sequence and the next position
    rng input_rng;                // resampled shard draws
    int64_t cur_shard, cur_index; // resampled: shard being read (-1: none) and next sample
    rng shuffle_rng;
    sample_ref *buf;              // (buffer_size)
    void **payload;               // (buffer_size)
    int n_buf;
    int64_t emitted, n_emit;      // samples emitted this epoch, and the epoch's total
} sampler;

void sampler_init(sampler *s, const sampler_config *cfg, sampler_fetch_fn fetch, void *fetch_ctx);
void sampler_free(sampler *s);

// Starts epoch `epoch` from its beginning (the buffer is emptied).
void sampler_start_epoch(sampler *s, int64_t epoch);

int64_t sampler_num_batches(const sampler *s);

// The next sample of the epoch: 1, 0 at the end of the epoch, -1 when fetch failed.
int sampler_next(sampler *s, sample_ref *ref, void **payload);

// The position as bytes (documented in docs/data.md): epoch, counters, RNG states, buffer.
size_t sampler_state_size(const sampler *s);
void sampler_state_write(const sampler *s, uint8_t *dst);
// Restores a position written by sampler_state_write and re-fetches the buffered payloads (in
// shard order). Returns the bytes consumed, or -1 with err_msg() when the bytes do not fit.
int64_t sampler_state_read(sampler *s, const uint8_t *src, size_t n);

#endif
