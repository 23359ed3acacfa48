// loader: the training and evaluation data loader over clipc shards (docs/data.md).
//
// The calling thread asks for batches; a reader thread walks the shards in the order the sampler
// decides (loader/sampler.h) and fills a bounded queue of batch slots; worker threads decode the
// images, normalize them into the slot's batch buffer and tokenize the captions. Training crops
// and scales inside libwebp (RandomResizedCrop); evaluation decodes the stored image whole and
// applies OpenCLIP's evaluation transform (image_decode_eval: PIL's resize, centre crop). Which
// samples form batch k, and every random crop, depend only on (seed, epoch, global batch size G =
// world size x batch size B, batch index, rank): never on the number of workers, on timing, or on
// how a global batch is split among ranks (loader/sampler.h): rank r's batch k is rows
// [r*B, (r+1)*B) of global batch k, so R ranks of batch B see exactly what one rank of batch R*B
// sees. Samples are read through loader/reader.h (one file per on-disk format).
//
// Corrupt samples (an image that does not decode, a caption that does not tokenize), the global
// rule:
// - Training: the sample at position p of the epoch's global stream (row p % G of global batch
//   p / G) is replaced in its row by the first good sample of the draws d = 0, 1, ...
//   sampler_substitute(seed, epoch, p, d) that is not one of the G samples the stream put in that
//   global batch: a draw over the whole data, each sample with a probability proportional to its
//   source's upsampling factor (uniform without factors). The replacement is decoded with the crop
//   of position p. The rule depends only on (seed, epoch, p) and the data, so every rank computes
//   it without communication, checking only its own rows, and the batches stay those of one rank
//   of the global batch, for any world size, number of workers and after a restore. A batch holds
//   a sample twice only when two replacements draw the same sample (or, resampling, when the
//   stream repeats one). 100 draws without a good
//   sample stop the run (the data looks damaged).
// - Evaluation: the row of a corrupt sample is left out (every good sample is evaluated once; a
//   batch may be short, and one whose rows were all corrupt is not returned); max(B, 100) corrupt
//   samples in a row on a rank stop it.
// Each batch names the corrupt samples met to make it. A missing, truncated or unreadable shard is
// an error naming it.
//
// The contract with several ranks: with drop_last (training) every rank returns exactly
// loader_num_batches() full batches per epoch, whatever is corrupt, so the ranks' steps (and their
// collectives) pair up; without it (evaluation) a rank returns at most that many (its share of the
// last global batch may be empty).
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
    float color_jitter[4];           // ColorJitter (training): brightness, contrast, saturation, hue; 0: off
    int views;                       // evaluation: also `views` random training views per sample (view_images)
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
    float *view_images;            // (n, views, 3, H, W) evaluation with cfg.views > 0, else NULL
    const struct loader_view *views;  // (n, views) their parameters, else NULL
    const int32_t *view_index;     // (n) training with a view source: the stored view each row shows, else NULL
    int n_corrupt;                 // corrupt samples met to make this batch (replaced, or left out)
    const char *const *corrupt;    // (n_corrupt) "<shard>: sample <i> ('<key>'): <reason>"
} loader_batch;

typedef struct {
    int64_t batches, samples;
    int64_t corrupt_skipped;       // corrupt samples met (replaced, or left out) since loader_init
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

// The global batches of the current epoch: with drop_last the batches every rank returns, else
// the most a rank returns.
int64_t loader_num_batches(const loader *l);
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

// ---- views: the random transform of a training sample ------------------------------------------
// A training sample's view is one struct of drawn parameters, drawn by loader_view_draw() from a
// key (the loader mixes it from (seed, epoch, the sample's position in the epoch's stream)) and
// applied by loader_view_apply(): the student's view and the teacher's (another size) and a stored
// view of `clipc distill-cache --augmentations K` are the same parameters applied again.
typedef struct loader_view {
    image_rect crop;     // RandomResizedCrop's box in the stored image
    uint8_t order[4];    // ColorJitter's order (torch.randperm(4)): 0 brightness, 1 contrast, 2 saturation, 3 hue
    float jitter[4];     // their factors (hue: the shift in [-0.5, 0.5]); NAN: that adjustment is off
} loader_view;

// The view of an image of w x h drawn from key: RandomResizedCrop's box (torchvision's get_params
// with c's scale and ratio ranges), then, for each ColorJitter range of c that is not 0, a random
// order and a factor uniform in [max(0, 1 - x), 1 + x] (hue: [-x, x]), as torchvision 0.14's
// ColorJitter.get_params draws them (with clipc's generator).
void loader_view_draw(const loader_config *c, int w, int h, uint64_t key, loader_view *out);

// Decodes the view of a WebP image at size x size into rgb (size, size, 3): the crop scaled by
// libwebp, then the colour adjustments in their order (image/image.h). Returns 0, or -1 with err_msg().
int loader_view_apply(const loader_view *v, const uint8_t *webp, size_t webp_size, int size, uint8_t *rgb);

// OpenCLIP's --aug-cfg: "key=value ..." (v2.20.0's AugmentationCfg keys, Python literals): scale
// and ratio (2-tuples), color_jitter (x for brightness, contrast and saturation, or a 3- or 4-tuple
// adding hue, as timm's create_transform reads it). Fields not given keep c's values. The timm
// keys (use_timm, interpolation, re_prob, re_count) and unknown keys are refused, naming the key.
// Returns 0, or -1 with err_msg().
int loader_aug_cfg_parse(loader_config *c, const char *kwargs);

// Where a training sample's view comes from instead of a fresh draw: pick() returns the number of
// the stored view of sample (shard, index) chosen by `draw` (a uniform 64-bit number mixed from
// (seed, epoch, the sample's position in the epoch's stream): resumable exactly) and its parameters.
typedef struct {
    int (*pick)(void *ctx, int32_t shard, int64_t index, uint64_t draw, loader_view *out);
    void *ctx;
} loader_view_source;

// Sets the view source of a training loader and restarts its current epoch from its first batch.
void loader_set_view_source(loader *l, loader_view_source source);

#endif
