// reader_shard: the sample_format of clipc's HDF5 shards (shards/shard.h) listed by a manifest
// (shards/manifest.h): the loader's first format (loader/reader.h).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "loader/reader.h"
#include "shards/manifest.h"
#include "shards/shard.h"

// An open shard with the image bytes of its last run.
struct sample_reader {
    shard_reader *shard;
    int64_t first, count;
    uint8_t *run;
    size_t cap;
};

// A manifest file, or a folder holding manifest.json.
static bool shard_claims(const char *data_path) {
    size_t n = strlen(data_path);
    if (n >= 5 && strcmp(data_path + n - 5, ".json") == 0) return true;
    char *inside = fs_join(data_path, MANIFEST_DEFAULT_NAME);
    bool found = access(inside, F_OK) == 0;
    free(inside);
    return found;
}

static int shard_list(const char *data_path, reader_listing *out) {
    manifest *m = manifest_load(data_path);
    if (!m) return -1;
    reader_unit *units = xcalloc((size_t)(m->n_shards ? m->n_shards : 1), sizeof(reader_unit));
    for (int j = 0; j < m->n_shards; j++) units[j] = (reader_unit){m->shards[j].resolved_path, m->shards[j].num_samples};
    *out = (reader_listing){.path = m->path, .n_units = m->n_shards, .units = units, .num_samples = m->num_samples,
                            .n_classes = m->n_classes, .class_names = (const char *const *)m->class_names, .impl = m};
    return 0;
}

static void shard_release(reader_listing *listing) {
    manifest_free(listing->impl);
    free(listing->units);
}

static sample_reader *shard_open(const char *unit_path) {
    shard_reader *s = shard_reader_open(unit_path);
    if (!s) return NULL;
    sample_reader *r = xcalloc(1, sizeof *r);
    r->shard = s;
    return r;
}

static int64_t shard_count(const sample_reader *r) { return shard_reader_count(r->shard); }

static int shard_read(sample_reader *r, int64_t first, int64_t count) {
    size_t bytes = shard_reader_image_offset(r->shard, first + count) - shard_reader_image_offset(r->shard, first);
    if (bytes > r->cap) {
        r->cap = bytes;
        r->run = xrealloc(r->run, bytes);
    }
    r->count = 0;
    if (shard_reader_read_images(r->shard, first, count, r->run)) return -1;
    r->first = first;
    r->count = count;
    return 0;
}

static void shard_get(const sample_reader *r, int64_t i, reader_sample *out) {
    uint64_t start = shard_reader_image_offset(r->shard, r->first);
    *out = (reader_sample){
        .image = r->run + (shard_reader_image_offset(r->shard, i) - start),
        .image_size = shard_reader_image_offset(r->shard, i + 1) - shard_reader_image_offset(r->shard, i),
        .caption = shard_reader_caption(r->shard, i), .key = shard_reader_key(r->shard, i),
        .label = shard_reader_label(r->shard, i),
    };
}

static void shard_close(sample_reader *r) {
    if (!r) return;
    shard_reader_close(r->shard);
    free(r->run);
    free(r);
}

const sample_format reader_format_shard = {
    .name = SHARD_FORMAT_NAME, .claims = shard_claims, .list = shard_list, .release = shard_release,
    .open = shard_open, .count = shard_count, .read = shard_read, .get = shard_get, .close = shard_close,
};
