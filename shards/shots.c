#include "shards/shots.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "common/rng.h"
#include "shards/shard.h"

#define SHOTS_STREAM 0x73686f7473ull  // "shots": keeps these draws apart from the loader's streams

// The labels of every sample of m, in file order, into a new array of m->num_samples.
static int32_t *read_labels(const manifest *m) {
    int32_t *labels = xmalloc((size_t)(m->num_samples ? m->num_samples : 1) * sizeof(int32_t));
    int64_t at = 0;
    for (int s = 0; s < m->n_shards; s++) {
        shard_reader *r = shard_reader_open(m->shards[s].resolved_path);
        if (!r) goto fail;
        int64_t n = shard_reader_count(r);
        bool ok = n == m->shards[s].num_samples;
        if (!ok) err_set("%s: holds %lld samples but %s says %lld", m->shards[s].resolved_path, (long long)n, m->path,
                         (long long)m->shards[s].num_samples);
        for (int64_t i = 0; ok && i < n; i++) {
            int32_t label = shard_reader_label(r, i);
            ok = label >= 0 && label < m->n_classes;
            if (!ok) err_set("%s: sample '%s' has label %d outside the %d classes of %s", m->shards[s].resolved_path,
                             shard_reader_key(r, i), label, m->n_classes, m->path);
            labels[at + i] = label;
        }
        shard_reader_close(r);
        if (!ok) goto fail;
        at += n;
    }
    return labels;
fail:
    free(labels);
    return NULL;
}

// Draws the first k of a seeded Fisher-Yates shuffle of pos[0..n) into pos[0..k).
static void draw_prefix(int64_t *pos, int64_t n, int k, uint64_t seed) {
    rng r = {seed};
    for (int j = 0; j < k; j++) {
        int64_t pick = j + (int64_t)rng_below(&r, (uint64_t)(n - j));
        int64_t tmp = pos[j];
        pos[j] = pos[pick];
        pos[pick] = tmp;
    }
}

// Maps a position in file order to (shard, index).
static void locate(const manifest *m, int64_t pos, int32_t *shard, int64_t *index) {
    int s = 0;
    while (pos >= m->shards[s].num_samples) pos -= m->shards[s++].num_samples;
    *shard = s;
    *index = pos;
}

int shots_draw(const manifest *m, int shots, uint64_t seed, shot_set *out) {
    memset(out, 0, sizeof *out);
    if (shots < 1) return err_set("the number of shots must be at least 1, got %d", shots);
    if (m->n_classes <= 0) return err_set("%s: an unlabelled set (no class_names); few-shot needs labels", m->path);
    int32_t *labels = read_labels(m);
    if (!labels) return -1;
    int C = m->n_classes;
    int64_t *count = xcalloc((size_t)C, sizeof(int64_t)), *start = xcalloc((size_t)C + 1, sizeof(int64_t));
    for (int64_t i = 0; i < m->num_samples; i++) count[labels[i]]++;
    int rc = 0;
    for (int c = 0; c < C && rc == 0; c++)
        if (count[c] < shots)
            rc = err_set("%s: class %d ('%s') has %lld samples, fewer than the %d shots asked for", m->path, c,
                         m->class_names[c], (long long)count[c], shots);
    if (rc == 0) {
        for (int c = 0; c < C; c++) start[c + 1] = start[c] + count[c];
        int64_t *pos = xmalloc((size_t)m->num_samples * sizeof(int64_t)), *fill = xcalloc((size_t)C, sizeof(int64_t));
        for (int64_t i = 0; i < m->num_samples; i++) pos[start[labels[i]] + fill[labels[i]]++] = i;
        out->n_classes = C, out->shots = shots;
        out->shard = xmalloc((size_t)C * (size_t)shots * sizeof(int32_t));
        out->index = xmalloc((size_t)C * (size_t)shots * sizeof(int64_t));
        for (int c = 0; c < C; c++) {
            draw_prefix(pos + start[c], count[c], shots, rng_mix(rng_mix(seed, SHOTS_STREAM), (uint64_t)c));
            for (int j = 0; j < shots; j++) {
                int64_t at = (int64_t)c * shots + j;
                locate(m, pos[start[c] + j], &out->shard[at], &out->index[at]);
            }
        }
        free(pos);
        free(fill);
    }
    free(count);
    free(start);
    free(labels);
    return rc;
}

void shots_free(shot_set *s) {
    free(s->shard);
    free(s->index);
    memset(s, 0, sizeof *s);
}

typedef struct {
    int64_t n;
    uint8_t **images;
    size_t *image_sizes;
    char **captions, **keys;
    int32_t *labels;
} shot_samples;

static void samples_free(shot_samples *x) {
    for (int64_t i = 0; i < x->n; i++) {
        free(x->images[i]);
        free(x->captions[i]);
        free(x->keys[i]);
    }
    free(x->images);
    free(x->image_sizes);
    free(x->captions);
    free(x->keys);
    free(x->labels);
}

// Reads sample i of shard r into slot `at` of x.
static int read_sample(shard_reader *r, int64_t i, shot_samples *x, int64_t at) {
    size_t size = (size_t)(shard_reader_image_offset(r, i + 1) - shard_reader_image_offset(r, i));
    x->images[at] = xmalloc(size ? size : 1);
    x->image_sizes[at] = size;
    x->captions[at] = xstrdup(shard_reader_caption(r, i));
    x->keys[at] = xstrdup(shard_reader_key(r, i));
    x->labels[at] = shard_reader_label(r, i);
    return shard_reader_read_images(r, i, 1, x->images[at]);
}

// Reads the drawn samples, opening each shard once.
static int read_samples(const manifest *m, const shot_set *s, shot_samples *x) {
    x->n = (int64_t)s->n_classes * s->shots;
    x->images = xcalloc((size_t)x->n, sizeof(uint8_t *));
    x->image_sizes = xcalloc((size_t)x->n, sizeof(size_t));
    x->captions = xcalloc((size_t)x->n, sizeof(char *));
    x->keys = xcalloc((size_t)x->n, sizeof(char *));
    x->labels = xcalloc((size_t)x->n, sizeof(int32_t));
    for (int sh = 0; sh < m->n_shards; sh++) {
        shard_reader *r = NULL;
        for (int64_t j = 0; j < x->n; j++) {
            if (s->shard[j] != sh) continue;
            if (!r && !(r = shard_reader_open(m->shards[sh].resolved_path))) return -1;
            if (s->index[j] >= shard_reader_count(r)) {
                shard_reader_close(r);
                return err_set("%s: has no sample %lld", m->shards[sh].resolved_path, (long long)s->index[j]);
            }
            if (read_sample(r, s->index[j], x, j) != 0) {
                shard_reader_close(r);
                return -1;
            }
        }
        shard_reader_close(r);
    }
    return 0;
}

static int write_set(const manifest *m, const shot_set *s, const shot_samples *x, const char *dir) {
    char made_by[256];
    snprintf(made_by, sizeof made_by, "{\"shots\":%d,\"classes\":%d}", s->shots, s->n_classes);
    shard_contents c = {.n = x->n, .images = (const uint8_t *const *)x->images, .image_sizes = x->image_sizes,
                        .captions = (const char *const *)x->captions, .keys = (const char *const *)x->keys,
                        .labels = x->labels, .class_names = (const char *const *)m->class_names,
                        .n_classes = m->n_classes, .made_by = made_by};
    char *shard_path = fs_join(dir, "shots.h5"), *manifest_path = fs_join(dir, MANIFEST_DEFAULT_NAME);
    manifest_shard shard = {.path = "shots.h5", .num_samples = x->n};
    manifest out = {.n_shards = 1, .shards = &shard, .n_classes = m->n_classes, .class_names = m->class_names,
                    .made_by = made_by};
    int rc = shard_write(shard_path, &c);
    if (rc == 0) rc = manifest_save(manifest_path, &out);
    free(shard_path);
    free(manifest_path);
    return rc;
}

int shots_write(const manifest *m, const shot_set *s, const char *dir) {
    if (s->n_classes != m->n_classes)
        return err_set("%s: the shots were drawn for %d classes but the set has %d", m->path, s->n_classes, m->n_classes);
    if (fs_mkdirs(dir) != 0) return -1;
    shot_samples x = {0};
    int rc = read_samples(m, s, &x);
    if (rc == 0) rc = write_set(m, s, &x, dir);
    samples_free(&x);
    return rc;
}
