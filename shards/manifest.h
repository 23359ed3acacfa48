// manifest: the JSON index of a sharded dataset (docs/data-format.md): its shards, their sample
// counts, the class names of a labelled set and how the set was made.
#ifndef CLIPC_SHARDS_MANIFEST_H
#define CLIPC_SHARDS_MANIFEST_H

#include <stdint.h>

#define MANIFEST_FORMAT_NAME "clipc-manifest"
#define MANIFEST_FORMAT_VERSION 1
#define MANIFEST_DEFAULT_NAME "manifest.json"

typedef struct {
    char *path;           // as written in the manifest (relative to its folder)
    char *resolved_path;  // usable path: relative ones joined to the manifest's folder
    int64_t num_samples;
    int64_t skipped;      // inputs the converter left out of this shard
} manifest_shard;

typedef struct {
    char *path;           // the manifest file itself
    int n_shards;
    manifest_shard *shards;
    int64_t num_samples;
    int64_t skipped;
    int n_classes;        // 0 for an unlabelled set
    char **class_names;   // (n_classes)
    char *made_by;        // JSON text of the converter options ("{}" when absent)
} manifest;

// Loads and checks a manifest (format, version, counts summing to num_samples). path may also be
// a folder holding manifest.json. Returns NULL with err_msg() naming the file and the key at fault.
manifest *manifest_load(const char *path);
void manifest_free(manifest *m);

// A dataset's short name from its path: "data/imagenet-val" or "data/imagenet-val/manifest.json"
// give "imagenet-val" (malloc'ed).
char *manifest_dataset_name(const char *path);

// Writes m to path atomically (common/atomic_file.h); num_samples and skipped are recomputed
// from the shards. Returns 0 or -1.
int manifest_save(const char *path, const manifest *m);

#endif
