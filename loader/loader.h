// loader: the training and evaluation data loader over clipc shards (docs/data.md).
//
// The calling thread asks for batches; a reader thread walks the shards in the order the sampler
// decides (loader/sampler.h) and fills a bounded queue of batch slots; worker threads decode the
// images, normalize them into the slot's batch buffer and tokenize the captions. Training crops
// and scales inside libwebp (RandomResizedCrop); evaluation decodes the stored image whole and
// applies OpenCLIP's evaluation transform (image_decode_eval: PIL's resize, centre crop). Which
// samples form batch k, and every random crop, depend only on (seed, epoch, global batch size =
// world size x batch size, batch index, rank): never on the number of workers, on timing, or on how
// a global batch is split among ranks (loader/sampler.h).
//
// A sample whose image does not decode (or caption does not tokenize) is passed over: the batch
// takes the next good sample of the stream instead, so a batch never holds a sample twice, and
// the batches stay the same for any number of workers and across a saved position. Each batch
// names the samples passed over to make it. A missing, truncated or unreadable shard is an error
// naming it.
#ifndef CLIPC_LOADER_LOADER_H
#define CLIPC_LOADER_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"
#include "text/tokenizer.h"

typedef struct loader loader;

typedef enum {
    LOADER_OUTPUT_FLOAT,  // float32, (x / 255 - mean) / std
    LOADER_OUTPUT_UINT8,  // raw 0-255 values
} loader_output;

// Where the batch buffers live (e.g. pinned host memory for fast GPU copies). NULL functions: the
// loader's own 64-byte aligned allocation.
typedef struct {
    void *(*alloc)(size_t size, void *ctx);
    void (*free)(void *ptr, void *ctx);
    void *ctx;
} loader_allocator;

typedef struct {
    const char *data;                // manifest path(s) (or folders holding manifest.json), "a::b"
    const char *upsampling_factors;  // NULL, or one weight per source "1::2" (resampled only)
    int batch_size;
    int image_size;                  // output H = W
    image_preprocess preprocess;     // mean and std; evaluation: the resize filter and mode
    bool train;                      // RandomResizedCrop and shuffling; else resize + centre crop in file order
    float scale_min, scale_max;      // RandomResizedCrop area fraction (0.9, 1.0)
    float ratio_min, ratio_max;      // RandomResizedCrop aspect ratio (3/4, 4/3)
    uint64_t seed;
    int rank, world_size;
    int workers;                     // decoding threads; 0 decodes in the calling thread
    int prefetch;                    // batches prepared ahead
    int shuffle_buffer;              // samples (train only)
    bool resampled;                  // shards drawn with replacement (--dataset-resampled)
    int64_t samples_per_epoch;       // resampled epoch length across ranks (0: dataset size)
    bool drop_last;                  // equal full batches on every rank (training)
    const tokenizer *tok;            // NULL: tokens are zeros (captions still returned)
    int context_length;
    int teacher_image_size;          // > 0: also each image's crop at this size (teacher_images), float output only
    loader_output output;
    loader_allocator allocator;
} loader_config;

typedef struct {
    int n;                         // samples (batch_size, except a final partial evaluation batch)
    int64_t index;                 // batch number within the epoch
    int64_t epoch;
    float *images;                 // (n, 3, H, W) for LOADER_OUTPUT_FLOAT, else NULL
    uint8_t *images_u8;            // (n, 3, H, W) for LOADER_OUTPUT_UINT8, else NULL
    float *teacher_images;         // (n, 3, T, T), the same crops at T = teacher_image_size, else NULL
    int64_t *tokens;               // (n, context_length)
    int32_t *labels;               // (n), -1 for unlabelled sets
    const char *const *keys;       // (n)
    const char *const *captions;   // (n)
    const int32_t *shards;         // (n) each sample's shard: an index of loader_shard_path()
    const int64_t *indices;        // (n) each sample's position within its shard
    int n_corrupt;                 // corrupt samples passed over to make this batch
    const char *const *corrupt;    // (n_corrupt) "<shard>: sample <i> ('<key>'): <reason>"
} loader_batch;

typedef struct {
    int64_t batches, samples;
    int64_t corrupt_skipped;       // corrupt samples passed over since loader_init
    double wait_seconds;           // time loader_next spent waiting for a batch
} loader_stats;

// Defaults: batch 64, 224 px, OpenAI mean/std (bicubic, shortest side), train, scale 0.9-1.0, ratio 3/4-4/3, seed 0,
// rank 0 of 1, 2 workers, prefetch 4, shuffle buffer 2000, drop_last, context 77, float output.
void loader_config_default(loader_config *cfg);
// The defaults plus what every caller sets: the data, batch size and output size, and the mode:
// training (random crops, shuffling, full batches only) or evaluation (centre crops, file order,
// every sample).
void loader_config_init(loader_config *cfg, const char *data, int batch_size, int image_size, bool train);

// Loads the manifests, checks that every shard exists and starts epoch 0. Returns NULL with
// err_msg() set.
loader *loader_init(const loader_config *cfg);
void loader_free(loader *l);

// Fills *out with the next batch: 1, 0 at the end of the epoch (and until loader_set_epoch),
// -1 on error (err_msg() names the shard). The buffers stay valid until the next call.
int loader_next(loader *l, loader_batch *out);

// Starts epoch `epoch` from its first batch.
void loader_set_epoch(loader *l, int64_t epoch);

int64_t loader_num_batches(const loader *l);  // in the current epoch, on this rank
int64_t loader_num_samples(const loader *l);  // in all sources
int loader_num_classes(const loader *l);      // of the first source; 0 for an unlabelled set
const char *loader_class_name(const loader *l, int c);
int loader_num_shards(const loader *l);       // in all sources, in order
const char *loader_shard_path(const loader *l, int shard);
int64_t loader_shard_size(const loader *l, int shard);  // samples, as the manifest says
loader_stats loader_get_stats(const loader *l);

// The position after the last batch returned, as a versioned byte string (docs/data.md):
// restoring it into a loader with the same data, seed and global batch (any rank and world size)
// makes the next batch the one that would have come next. Returns 0 with *bytes malloc'ed.
int loader_state_save(const loader *l, uint8_t **bytes, size_t *n);
int loader_state_restore(loader *l, const uint8_t *bytes, size_t n);

#endif
