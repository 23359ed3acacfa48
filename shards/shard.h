// shard: the clipc HDF5 shard format (docs/data-format.md), its writer and its validating reader.
//
// One shard is one HDF5 file holding N samples: WebP image bytes, UTF-8 captions and sample keys,
// each as one byte blob with N+1 offsets, optional int32 labels with the class names as a root
// attribute. The reader validates the whole structure on open and names the shard and the defect.
// Every HDF5 call of clipc goes through this module under one process-wide mutex, so any number of
// threads may use shard readers and writers at once.
#ifndef CLIPC_SHARDS_SHARD_H
#define CLIPC_SHARDS_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_FORMAT_NAME "clipc-shard"
#define SHARD_FORMAT_VERSION 1
#define SHARD_IMAGE_ENCODING "webp"

// What a shard holds, as given to shard_write. labels and class_names are NULL for an unlabelled
// set; made_by (JSON text of the converter options) and skipped (report lines) may be NULL.
typedef struct {
    int64_t n;                              // samples
    const uint8_t *const *images;           // (n) WebP files
    const size_t *image_sizes;              // (n)
    const char *const *captions;            // (n) UTF-8, no NUL inside
    const char *const *keys;                // (n)
    const int32_t *labels;                  // (n) in [0, n_classes), or NULL
    const char *const *class_names;         // (n_classes), or NULL
    int n_classes;
    const char *made_by;
    const char *skipped;                    // "key\tsource\treason\n" lines of inputs left out
} shard_contents;

// Writes the shard atomically (common/atomic_file.h), so an existing file is
// replaced only by a whole one. Returns 0, or -1 with err_msg() naming the file.
int shard_write(const char *path, const shard_contents *c);

typedef struct shard_reader shard_reader;

// Opens and validates a shard: format name, version, sample count, every offset array (starts at
// 0, never decreases, ends at its blob's length), labels within the class names, no NUL in
// captions or keys. Captions, keys and labels are read into memory; image bytes stay on disk.
// Returns NULL with err_msg() "<path>: <defect>".
shard_reader *shard_reader_open(const char *path);
void shard_reader_close(shard_reader *r);

const char *shard_reader_path(const shard_reader *r);
int64_t shard_reader_count(const shard_reader *r);
const char *shard_reader_caption(const shard_reader *r, int64_t i);
const char *shard_reader_key(const shard_reader *r, int64_t i);
int32_t shard_reader_label(const shard_reader *r, int64_t i);  // -1 for an unlabelled shard
int shard_reader_num_classes(const shard_reader *r);           // 0 for an unlabelled shard
const char *shard_reader_class_name(const shard_reader *r, int c);
const char *shard_reader_made_by(const shard_reader *r);  // "" when absent
const char *shard_reader_skipped(const shard_reader *r);  // "" when absent

// Byte offset of image i within the image blob; image i spans [offset(i), offset(i + 1)).
uint64_t shard_reader_image_offset(const shard_reader *r, int64_t i);
// Reads the images of samples [first, first + count) as one contiguous run of bytes into dst
// (offset(first + count) - offset(first) bytes). Returns 0 or -1 (a read failure names the shard).
int shard_reader_read_images(shard_reader *r, int64_t first, int64_t count, uint8_t *dst);

#endif
