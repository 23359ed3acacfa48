// sampler: the order in which a sharded dataset is visited in one epoch, computed on sample
// references alone (no I/O), so that it depends only on (seed, epoch) and can be saved and
// restored exactly.
//
// There is ONE global stream, the same on every rank: without resampling, the shards are put in
// an order drawn from (seed, epoch) (file order when not shuffling) and their samples concatenated;
// with resampling, shards are drawn with replacement (weighted) from (seed, epoch) and each drawn
// shard is read in order. The stream passes through a shuffle buffer (webdataset-style: keep up to
// S samples, emit a uniformly drawn one) seeded from (seed, epoch). Cut into global batches of
// G = world_size x batch_size samples, global batch k gives rank r its positions
// [r*B, (r+1)*B): the global batches depend only on the seed and G, never on the world size, so a
// position saved on R ranks restores on R' ranks with the same G. Every rank walks the whole
// stream (reading the references and payloads of the others' samples, and dropping them undecoded).
#ifndef CLIPC_LOADER_SAMPLER_H
#define CLIPC_LOADER_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

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
    int64_t lo, hi, cursor;       // the stream's range of the concatenated sequence and the next position
    rng input_rng;                // resampled shard draws
    int64_t cur_shard, cur_index; // resampled: shard being read (-1: none) and next sample
    rng shuffle_rng;
    sample_ref *buf;              // (buffer_size)
    void **payload;               // (buffer_size)
    int n_buf;
    int64_t emitted, n_emit;      // samples of the global stream emitted this epoch, and the epoch's total
    sample_ref *batch;            // (world_size x batch_size) the global batch being drawn, by row
} sampler;

void sampler_init(sampler *s, const sampler_config *cfg, sampler_fetch_fn fetch, void *fetch_ctx);
void sampler_free(sampler *s);

// Starts epoch `epoch` from its beginning (the buffer is emptied).
void sampler_start_epoch(sampler *s, int64_t epoch);

// The global batches of the epoch, the same on every rank: with drop_last every rank gets this
// many (full); without it the last global batch may be partial, and a rank's share of it empty.
int64_t sampler_num_batches(const sampler *s);

// The references of the global batch being drawn, by row (world_size x batch_size): after
// sampler_next returned a rank's last sample of a global batch, all of that batch.
const sample_ref *sampler_batch_refs(const sampler *s);

// Draw `attempt` (0, 1, ...) of a replacement for the sample at `ordinal` of epoch `epoch`'s global
// stream: a sample drawn from (seed, epoch, ordinal, attempt) over all shards, each sample with a
// probability proportional to its shard's weight (uniform without weights). The same on every
// rank and for every world size. Returns 0, or -1 when every shard is empty or weighted 0.
int sampler_substitute(const sampler_config *c, int64_t epoch, int64_t ordinal, int attempt, sample_ref *out);

// This rank's next sample of the epoch and its ordinal in the global stream: 1, 0 at the end of
// the epoch, -1 when fetch failed. After a rank's last sample of a global batch the stream is
// advanced to the end of that global batch, so a saved position always falls between batches.
int sampler_next(sampler *s, sample_ref *ref, void **payload, int64_t *ordinal);

// The position as bytes (documented in docs/data.md): epoch, counters, RNG states, buffer.
size_t sampler_state_size(const sampler *s);
void sampler_state_write(const sampler *s, uint8_t *dst);
// Restores a position written by sampler_state_write and re-fetches the buffered payloads (in
// shard order). Returns the bytes consumed, or -1 with err_msg() when the bytes do not fit.
int64_t sampler_state_read(sampler *s, const uint8_t *src, size_t n);

#endif
