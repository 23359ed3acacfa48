#include "data_testutil.h"

#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "shards/manifest.h"
#include "shards/shard.h"

char *testutil_dir;

int testutil_setup(void **state) {
    (void)state;
    testutil_dir = testutil_tmpdir();
    return 0;
}

int testutil_teardown(void **state) {
    (void)state;
    testutil_rmtree(testutil_dir);
    free(testutil_dir);
    return 0;
}

char *testutil_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *t = xmalloc(strlen(base ? base : "/tmp") + 32);
    sprintf(t, "%s/clipc-data-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(t)) abort();
    return t;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void testutil_rmtree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

char *testutil_path(const char *dir, const char *name) { return fs_join(dir, name); }

image_rgb testutil_picture(int w, int h, int seed) {
    image_rgb img = {w, h, xmalloc((size_t)w * (size_t)h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = 127.5 + 100 * sin(0.07 * (c + 1) * x + 0.05 * y + seed * 0.9 + c) * cos(0.04 * y * (c + 1) + seed);
                img.rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)lround(v);
            }
    return img;
}

int testutil_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, size, f);
    fclose(f);
    return n == size ? 0 : -1;
}

int testutil_write_jpeg(const char *path, const image_rgb *img, int quality) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *mem = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &mem, &size);
    c.image_width = (JDIMENSION)img->width;
    c.image_height = (JDIMENSION)img->height;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = img->rgb + (size_t)c.next_scanline * (size_t)img->width * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    int rc = testutil_write_file(path, mem, size);
    free(mem);
    return rc;
}

int testutil_write_png(const char *path, const image_rgb *img) {
    png_image p;
    memset(&p, 0, sizeof p);
    p.version = PNG_IMAGE_VERSION;
    p.width = (png_uint_32)img->width;
    p.height = (png_uint_32)img->height;
    p.format = PNG_FORMAT_RGB;
    return png_image_write_to_file(&p, path, 0, img->rgb, 0, NULL) ? 0 : -1;
}

int testutil_write_webp(const char *path, const image_rgb *img, bool lossless) {
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (image_encode_webp(img, img->width, img->height, 90, lossless, &bytes, &size)) return -1;
    int rc = testutil_write_file(path, bytes, size);
    free(bytes);
    return rc;
}

int testutil_truncate(const char *path, long keep) { return truncate(path, keep); }

double testutil_psnr(const uint8_t *a, const uint8_t *b, size_t pixels) {
    double se = 0;
    for (size_t i = 0; i < pixels * 3; i++) se += (double)(a[i] - b[i]) * (a[i] - b[i]);
    if (se == 0) return INFINITY;
    return 10 * log10(255.0 * 255.0 / (se / (double)(pixels * 3)));
}

static const char garbage[] = "RIFF\x20\0\0\0WEBPVP8 garbage garbage garbage";  // a WebP header over nothing

static void write_test_shard(const char *path, int first, int n, int w, int h, bool labelled, int corrupt_key) {
    static const char *const classes[] = {"zero", "one", "two"};
    uint8_t **images = xcalloc((size_t)n + 1, sizeof(uint8_t *));
    size_t *sizes = xcalloc((size_t)n + 1, sizeof(size_t));
    char **captions = xcalloc((size_t)n + 1, sizeof(char *)), **keys = xcalloc((size_t)n + 1, sizeof(char *));
    int32_t *labels = xcalloc((size_t)n + 1, sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        int k = first + i;
        image_rgb img = testutil_picture(w, h, k);
        if (k == corrupt_key || corrupt_key == TESTUTIL_ALL_CORRUPT) {
            sizes[i] = sizeof garbage;
            images[i] = memcpy(xmalloc(sizes[i]), garbage, sizes[i]);
        } else if (image_encode_webp(&img, w, h, 90, true, &images[i], &sizes[i])) {
            abort();
        }
        image_rgb_free(&img);
        captions[i] = xmalloc(32), keys[i] = xmalloc(32);
        sprintf(captions[i], "caption %d", k);
        sprintf(keys[i], "s%d", k);
        labels[i] = k % 3;
    }
    shard_contents c = {.n = n, .images = (const uint8_t *const *)images, .image_sizes = sizes,
                        .captions = (const char *const *)captions, .keys = (const char *const *)keys,
                        .labels = labelled ? labels : NULL, .class_names = labelled ? classes : NULL,
                        .n_classes = labelled ? 3 : 0};
    if (shard_write(path, &c)) abort();
    for (int i = 0; i < n; i++) free(images[i]), free(captions[i]), free(keys[i]);
    free(images), free(sizes), free(captions), free(keys), free(labels);
}

char *testutil_make_dataset(const char *dir, const int *sizes, int n_shards, int w, int h, bool labelled,
                            int corrupt_key, int first_key) {
    static char *const classes[] = {"zero", "one", "two"};
    manifest m = {.n_shards = n_shards, .made_by = "{\"tool\":\"test\"}", .class_names = labelled ? (char **)classes : NULL,
                  .n_classes = labelled ? 3 : 0};
    m.shards = xcalloc((size_t)n_shards, sizeof(manifest_shard));
    int first = first_key;
    for (int s = 0; s < n_shards; s++) {
        char name[32];
        sprintf(name, "shard-%05d.h5", s);
        char *path = fs_join(dir, name);
        write_test_shard(path, first, sizes[s], w, h, labelled, corrupt_key);
        m.shards[s] = (manifest_shard){.path = xstrdup(name), .num_samples = sizes[s]};
        first += sizes[s];
        free(path);
    }
    char *manifest_path = fs_join(dir, MANIFEST_DEFAULT_NAME);
    if (manifest_save(manifest_path, &m)) abort();
    for (int s = 0; s < n_shards; s++) free(m.shards[s].path);
    free(m.shards);
    return manifest_path;
}

// Rewrites one shard with garbage as the image of each sample whose number (first + i) is
// `every - 1` modulo `every`; *first counts on over the shards.
static int damage_shard(const char *path, int every, int64_t *first) {
    shard_reader *r = shard_reader_open(path);
    if (!r) return -1;
    int64_t n = shard_reader_count(r);
    uint64_t blob = shard_reader_image_offset(r, n);
    uint8_t *all = xmalloc(blob ? blob : 1);
    const uint8_t **images = xcalloc((size_t)n + 1, sizeof(uint8_t *));
    size_t *sizes = xcalloc((size_t)n + 1, sizeof(size_t));
    const char **captions = xcalloc((size_t)n + 1, sizeof(char *)), **keys = xcalloc((size_t)n + 1, sizeof(char *));
    int32_t *labels = xcalloc((size_t)n + 1, sizeof(int32_t));
    int C = shard_reader_num_classes(r);
    const char **classes = xcalloc((size_t)C + 1, sizeof(char *));
    for (int c = 0; c < C; c++) classes[c] = shard_reader_class_name(r, c);
    int rc = shard_reader_read_images(r, 0, n, all);
    for (int64_t i = 0; i < n; i++, (*first)++) {
        bool bad = *first % every == every - 1;
        images[i] = bad ? (const uint8_t *)garbage : all + shard_reader_image_offset(r, i);
        sizes[i] = bad ? sizeof garbage : shard_reader_image_offset(r, i + 1) - shard_reader_image_offset(r, i);
        captions[i] = shard_reader_caption(r, i), keys[i] = shard_reader_key(r, i), labels[i] = shard_reader_label(r, i);
    }
    shard_contents c = {.n = n, .images = images, .image_sizes = sizes, .captions = captions, .keys = keys,
                        .labels = C ? labels : NULL, .class_names = C ? classes : NULL, .n_classes = C,
                        .made_by = shard_reader_made_by(r), .skipped = shard_reader_skipped(r)};
    if (rc == 0) rc = shard_write(path, &c);
    shard_reader_close(r);
    free(all), free(images), free(sizes), free(captions), free(keys), free(labels), free(classes);
    return rc;
}

int testutil_damage_every(const char *manifest_path, int every) {
    manifest *m = manifest_load(manifest_path);
    if (!m) return -1;
    int64_t first = 0;
    int rc = 0;
    for (int s = 0; rc == 0 && s < m->n_shards; s++) rc = damage_shard(m->shards[s].resolved_path, every, &first);
    manifest_free(m);
    return rc;
}

static void converted_push(testutil_converted *c, shard_reader *r, int64_t i, image_rgb img) {
    c->keys = xrealloc(c->keys, (size_t)(c->n + 1) * sizeof(char *));
    c->captions = xrealloc(c->captions, (size_t)(c->n + 1) * sizeof(char *));
    c->labels = xrealloc(c->labels, (size_t)(c->n + 1) * sizeof(int));
    c->w = xrealloc(c->w, (size_t)(c->n + 1) * sizeof(int));
    c->h = xrealloc(c->h, (size_t)(c->n + 1) * sizeof(int));
    c->pixels = xrealloc(c->pixels, (size_t)(c->n + 1) * sizeof(image_rgb));
    c->keys[c->n] = xstrdup(shard_reader_key(r, i));
    c->captions[c->n] = xstrdup(shard_reader_caption(r, i));
    c->labels[c->n] = shard_reader_label(r, i);
    c->w[c->n] = img.width, c->h[c->n] = img.height;
    c->pixels[c->n++] = img;
}

static int read_shard_samples(const char *path, testutil_converted *c) {
    shard_reader *r = shard_reader_open(path);
    if (!r) return -1;
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < shard_reader_count(r); i++) {
        size_t size = shard_reader_image_offset(r, i + 1) - shard_reader_image_offset(r, i);
        uint8_t *bytes = xmalloc(size);
        image_rgb img = {0};
        rc = shard_reader_read_images(r, i, 1, bytes);
        if (rc == 0 && image_sniff(bytes, size) != IMAGE_FORMAT_WEBP) rc = err_set("%s: sample %lld is not WebP", path, (long long)i);
        if (rc == 0) rc = image_decode(bytes, size, 0, &img);
        if (rc == 0) converted_push(c, r, i, img);
        free(bytes);
    }
    shard_reader_close(r);
    return rc;
}

int testutil_read_converted(const char *out, testutil_converted *c) {
    memset(c, 0, sizeof *c);
    manifest *m = manifest_load(out);
    if (!m) return -1;
    int rc = 0;
    for (int s = 0; rc == 0 && s < m->n_shards; s++) rc = read_shard_samples(m->shards[s].resolved_path, c);
    if (rc == 0 && c->n != m->num_samples) rc = err_set("%s: %d samples read, the manifest says %lld", out, c->n, (long long)m->num_samples);
    manifest_free(m);
    return rc;
}

void testutil_free_converted(testutil_converted *c) {
    for (int i = 0; i < c->n; i++) free(c->keys[i]), free(c->captions[i]), image_rgb_free(&c->pixels[i]);
    free(c->keys), free(c->captions), free(c->labels), free(c->w), free(c->h), free(c->pixels);
    memset(c, 0, sizeof *c);
}

int testutil_find_key(const testutil_converted *c, const char *key) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->keys[i], key)) return i;
    return -1;
}
