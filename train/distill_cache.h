// distill_cache: stored teacher targets for distillation (docs/distillation.md).
//
// `clipc distill-cache` runs a frozen teacher once over a shard set in evaluation order (resize and
// centre crop at the teacher's image size, captions tokenized at its context length) and writes one
// side file per shard, DIR/<shard file name>.distill.safetensors (the shards' own folder by default):
//   image_features, text_features   F32 (n, E), L2-normalized; row i is sample i of the shard
//   teacher.logit_scale             F32 rank 0, the teacher's log-space logit scale
// with metadata: the format name and version; the teacher's identity (config JSON, name, weights
// file name, its CRC-32 and size); the shard's identity (file name, path, sample count, FNV-1a
// hash of its keys); the image size and context length used.
//
// Version 2 adds the stored training views (`--augmentations K`, 0 by default): per sample, K views
// drawn by the loader (loader_view_draw with --aug-cfg and --seed; keys from the sample's shard,
// index and view number) and the teacher's features of exactly those views, at its image size:
//   views                  F32 (n K, 12) row i K + k: crop left, top, width, height; ColorJitter
//                          order (4); its factors (4, NaN: off)
//   view_image_features    F32 (n K, E), L2-normalized
// with metadata views.count (K), views.aug_cfg, views.seed. Version 1 files (no views) still open,
// as K = 0: evaluation crops only.
//
// `clipc train --distill-cache DIR` opens the side files of its training shards and validates
// each like a shard (format, version, shapes, finite values, the shard's count and keys, one teacher
// for all files and, when given, the expected teacher), then hands the rows of each batch's samples
// (loader_batch.shards, .indices) to the objective with no teacher forward at all.
#ifndef CLIPC_TRAIN_DISTILL_CACHE_H
#define CLIPC_TRAIN_DISTILL_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "loader/loader.h"
#include "session/session.h"

#define DISTILL_CACHE_FORMAT "clipc-distill-cache"
#define DISTILL_CACHE_VERSION 2
#define DISTILL_CACHE_SUFFIX ".distill.safetensors"

// Who made the targets: the teacher's config and its weights file.
typedef struct {
    char *config;           // the config as JSON (clip_config_to_json), malloc'ed
    char name[256];         // the config's name (as long as clip_config.name)
    char weights[256];      // the weights file's name
    uint32_t weights_crc32; // of the whole weights file
    int64_t weights_bytes;
} distill_teacher_id;

// The identity of the teacher with config cfg and weights file `weights` (read once for its
// CRC-32). Returns 0, or -1 naming the unreadable file.
int distill_teacher_id_init(distill_teacher_id *id, const clip_config *cfg, const char *weights);
void distill_teacher_id_free(distill_teacher_id *id);

// The teacher's L2-normalized features (n, E) of host images (n, 3, S, S) at its image size and
// tokens (n, C) at its context length, on its device, without gradient (new handles).
int distill_teacher_encode(const clip_model *teacher, const float *images, const int64_t *tokens, int n,
                           tensor **image, tensor **text);

typedef struct {
    const char *data;  // manifest(s), "a::b"
    const char *dir;   // where the side files go (created when missing)
    int batch_size, workers;
    bool bf16;         // the teacher runs under bf16 autocast (CUDA)
    int views;         // K stored training views per sample (0: evaluation crops only)
    const char *aug_cfg;  // their --aug-cfg ("": the loader's default RandomResizedCrop)
    uint64_t seed;     // their draws
    void (*on_shard)(void *ctx, const char *path, int64_t samples);  // after each file written; may be NULL
    void *ctx;
} distill_cache_build_options;

// Runs the teacher (a session with its tokenizer) over every sample of o->data and writes the side
// files. Returns 0, or -1 with err_msg() naming the shard or file at fault.
int distill_cache_build(const session *teacher, const distill_teacher_id *id, const distill_cache_build_options *o);

typedef struct distill_cache distill_cache;

// Opens and validates the side files in dir of every shard of l. expect: the teacher they must come
// from (NULL: any one teacher). NULL with err_msg() naming the file and, for a mismatch, both sides.
distill_cache *distill_cache_open(const char *dir, const loader *l, const distill_teacher_id *expect);
void distill_cache_close(distill_cache *c);

int distill_cache_dim(const distill_cache *c);              // E
double distill_cache_logit_scale(const distill_cache *c);   // the teacher's, log space
const distill_teacher_id *distill_cache_teacher(const distill_cache *c);

// The stored rows of n samples (shards[i], indices[i]: a loader batch's positions) into image and
// text (n, E), host buffers: the image rows of stored view views[i] when views is given,
// views[i] >= 0 (loader_batch.view_index) and the cache holds views, else of the evaluation crop.
void distill_cache_rows(const distill_cache *c, const int32_t *shards, const int64_t *indices, const int32_t *views,
                        int64_t n, float *image, float *text);

int distill_cache_views(const distill_cache *c);  // K stored views per sample (0: none)
// Stored view k of sample (shard, index) into *out.
void distill_cache_view(const distill_cache *c, int32_t shard, int64_t index, int k, loader_view *out);
// A loader_view_source's pick over the stored views (ctx: the cache): view floor(draw K / 2^64).
int distill_cache_pick(void *ctx, int32_t shard, int64_t index, uint64_t draw, loader_view *out);
// Whether two caches hold the same views (count and parameters) for every sample; -1 naming both
// files when not.
int distill_cache_same_views(const distill_cache *a, const distill_cache *b);

#endif
