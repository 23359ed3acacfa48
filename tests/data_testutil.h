// data_testutil: helpers shared by the data tests: temporary folders, small generated images in
// every input format, and datasets of shards written through the library.
#ifndef CLIPC_TESTS_DATA_TESTUTIL_H
#define CLIPC_TESTS_DATA_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image/image.h"

// cmocka group setup/teardown: testutil_dir is a new empty folder for the group's files.
extern char *testutil_dir;
int testutil_setup(void **state);
int testutil_teardown(void **state);

// A new empty folder under $TMPDIR (or /tmp); testutil_rmtree removes it with its contents.
char *testutil_tmpdir(void);
void testutil_rmtree(const char *path);
char *testutil_path(const char *dir, const char *name);  // malloc'ed join

// A smooth RGB test picture whose colours depend on seed.
image_rgb testutil_picture(int w, int h, int seed);

int testutil_write_file(const char *path, const void *data, size_t size);
int testutil_write_jpeg(const char *path, const image_rgb *img, int quality);
int testutil_write_png(const char *path, const image_rgb *img);
int testutil_write_webp(const char *path, const image_rgb *img, bool lossless);
// Keeps the first `keep` bytes of a file.
int testutil_truncate(const char *path, long keep);

// PSNR (dB) between two RGB buffers of n pixels.
double testutil_psnr(const uint8_t *a, const uint8_t *b, size_t pixels);

// Writes shards of the given sizes into dir (shard-NNNNN.h5) with a manifest, sample k (counted
// over all shards) keyed "s<k>", captioned "caption <k>", labelled k % 3 when labelled, with a
// w x h lossless picture of seed k. corrupt_key >= 0 stores garbage as that sample's image
// (TESTUTIL_ALL_CORRUPT: as every image). Keys start at first_key. Returns the manifest path
// (malloc'ed).
#define TESTUTIL_ALL_CORRUPT (-2)
char *testutil_make_dataset(const char *dir, const int *sizes, int n_shards, int w, int h, bool labelled,
                            int corrupt_key, int first_key);

// Stores garbage (a WebP header over nothing) as the image of every `every`-th sample of a
// sharded dataset (samples every-1, 2*every-1, ... counted over its shards in order), rewriting
// its shards in place. Returns 0, or -1 with err_msg().
int testutil_damage_every(const char *manifest_path, int every);

// Every sample of a converted folder (its manifest's shards in order): key, caption, label, the
// stored WebP's size and its decoded pixels.
typedef struct {
    int n;
    char **keys, **captions;
    int *labels, *w, *h;
    image_rgb *pixels;
} testutil_converted;

// Returns 0, or -1 with err_msg() (a shard or image that does not read back).
int testutil_read_converted(const char *out, testutil_converted *c);
void testutil_free_converted(testutil_converted *c);
// The index of the sample with this key, or -1.
int testutil_find_key(const testutil_converted *c, const char *key);

#endif
