#include "loader/loader.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "common/error.h"
#include "common/bytes.h"
#include "image/image.h"
#include "common/rng.h"
#include "loader/reader.h"
#include "loader/sampler.h"

#define LOADER_STATE_MAGIC "CLIPCLDR"
#define LOADER_STATE_VERSION 2
#define LOADER_STATE_HEADER (8 + 4 + 8 + 4 * 4 + 8 + 8)
#define READ_CHUNK_SAMPLES 64
#define STREAM_AUGMENT 4
#define STREAM_VIEWS 6      // evaluation views (cfg.views); 5 is the sampler's
#define STREAM_VIEW_PICK 7  // which stored view (a view source)
#define ERROR_CAP 512
#define CORRUPT_LIMIT 100  // replacement draws for one sample (training), corrupt samples in a row (evaluation)

// One sample as read from its shard: a single malloc'ed block holding the struct and its bytes.
typedef struct {
    uint8_t *image;
    size_t image_size;
    const char *caption, *key;
    int32_t label;
} payload;

// The unit (shard) the reader thread has open, and the run of its samples last read.
typedef struct {
    const sample_format *format;
    sample_reader *reader;
    int64_t shard;            // -1: none
    int64_t chunk_first, chunk_count;
} shard_cursor;

typedef enum { SLOT_FREE, SLOT_DECODING, SLOT_READY, SLOT_END, SLOT_ERROR } slot_state;

// This rank's B rows of one global batch as the reader drew them, decoded by the workers (a
// corrupt sample replaced in training, marked in evaluation).
typedef struct {
    slot_state state;
    int n, n_drawn, remaining;  // rows (evaluation: fewer once corrupt ones are left out), rows drawn
    int64_t first_ordinal;    // position of the slot's first sample in the epoch's global stream
    sample_ref *refs;         // (B) as drawn from the stream
    sample_ref *global;       // (world_size x B) the whole global batch (training)
    payload **payloads;       // (B) the samples decoded (a replacement's in a replaced row)
    bool *corrupt;            // (B) evaluation: left out
    char ***lines;            // (B) per row, the corrupt samples met ("<shard>: sample <i> ('<key>'): <reason>")
    int *n_lines;             // (B)
    char **row_error;         // (B) a row that could not be made, or NULL
    float *images;            // (B, 3, H, W) or NULL
    uint8_t *images_u8;       // (B, 3, H, W) or NULL
    float *teacher_images;    // (B, 3, T, T) or NULL
    float *view_images;       // (B, K, 3, H, W) or NULL (evaluation views)
    loader_view *views;       // (B, K) or NULL
    int32_t *view_index;      // (B) training: the stored view of each row, -1 for a fresh draw
    int32_t *shards;          // (B)
    int64_t *indices;         // (B)
    int64_t *tokens;          // (B, ctx)
    int32_t *labels;          // (B)
    const char **keys;        // (B)
    const char **captions;    // (B)
    char error[ERROR_CAP];
} batch_slot;

struct loader {
    loader_config cfg;
    int n_sources;
    reader_listing *sources;   // (n_sources)
    int n_shards;
    const char **shard_paths;  // (n_shards) into the listings
    const sample_format **source_formats;  // (n_sources)
    const sample_format **shard_formats;   // (n_shards) the format of each shard's source
    int64_t *shard_sizes;      // (n_shards)
    double *shard_weights;     // (n_shards)
    sampler producer;          // ahead of the consumer, with payloads
    sampler shadow;            // at the consumer's position, references only
    shard_cursor cursor;       // the reader thread's
    shard_cursor *spares;      // (max(workers, 1)) each worker's, for the replacements of corrupt samples
    float lut[3][256];         // normalized value of each byte, per channel
    loader_view_source views;  // training: stored views to pick from (pick NULL: fresh draws)
    int n_slots;
    batch_slot *slots;
    uint8_t **scratch;         // (max(workers, 1)) RGB decode buffers (H, W, 3)
    int64_t epoch;
    int64_t next_index;        // batch number of the next batch returned in this epoch
    int64_t corrupt_run;       // evaluation: corrupt samples in a row on this rank
    char **skipped;            // (n_skipped) lines naming the corrupt samples met making the last batch
    int n_skipped;

    pthread_mutex_t mu;
    pthread_cond_t cv_reader, cv_work, cv_done;
    pthread_t reader;
    pthread_t *workers;
    bool running, stop, reader_finished, epoch_over;
    int64_t produced, released, consumed, task_batch;
    int task_next, held;
    loader_stats stats;
};

void loader_config_default(loader_config *c) {
    memset(c, 0, sizeof *c);
    c->batch_size = 64;
    c->image_size = 224;
    c->preprocess = image_preprocess_openai();
    c->train = true;
    c->scale_min = 0.9f, c->scale_max = 1.0f;
    c->ratio_min = 3.0f / 4.0f, c->ratio_max = 4.0f / 3.0f;
    c->world_size = 1;
    c->workers = 2;
    c->prefetch = 4;
    c->shuffle_buffer = 2000;
    c->drop_last = true;
    c->context_length = TOKENIZER_DEFAULT_CONTEXT;
    c->output = LOADER_OUTPUT_FLOAT;
}

void loader_config_init(loader_config *c, const char *data, int batch_size, int image_size, bool train) {
    loader_config_default(c);
    c->data = data;
    c->batch_size = batch_size;
    c->image_size = image_size;
    c->train = train;
    c->drop_last = train;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- reading samples (reader thread, or the caller when restoring) ----------------------------

static int cursor_open(loader *l, shard_cursor *c, uint32_t shard) {
    if (c->reader && c->shard == shard) return 0;
    if (c->format) c->format->close(c->reader);
    c->reader = NULL;
    c->shard = -1;
    c->chunk_count = 0;
    c->format = l->shard_formats[shard];
    c->reader = c->format->open(l->shard_paths[shard]);
    if (!c->reader) return -1;
    int64_t n = c->format->count(c->reader);
    if (n != l->shard_sizes[shard])
        return err_set("%s: holds %lld samples but its manifest says %lld", l->shard_paths[shard], (long long)n,
                       (long long)l->shard_sizes[shard]);
    c->shard = shard;
    return 0;
}

static int cursor_load_chunk(shard_cursor *c, int64_t first, int64_t count) {
    c->chunk_count = 0;
    if (c->format->read(c->reader, first, count)) return -1;
    c->chunk_first = first;
    c->chunk_count = count;
    return 0;
}

static payload *payload_make(const shard_cursor *c, int64_t i) {
    reader_sample rs;
    c->format->get(c->reader, i, &rs);
    size_t caption_len = strlen(rs.caption) + 1, key_len = strlen(rs.key) + 1;
    payload *p = xmalloc(sizeof *p + rs.image_size + caption_len + key_len);
    p->image = (uint8_t *)(p + 1);
    memcpy(p->image, rs.image, rs.image_size);
    p->image_size = rs.image_size;
    p->caption = memcpy(p->image + rs.image_size, rs.caption, caption_len);
    p->key = memcpy(p->image + rs.image_size + caption_len, rs.key, key_len);
    p->label = rs.label;
    return p;
}

// Reads one sample through cursor c: in sequence, the run of up to 64 samples it starts.
static int cursor_fetch(loader *l, shard_cursor *c, sample_ref ref, bool sequential, payload **out) {
    if (cursor_open(l, c, ref.shard)) return -1;
    int64_t i = ref.index, n = l->shard_sizes[ref.shard];
    if (i < c->chunk_first || i >= c->chunk_first + c->chunk_count) {
        int64_t count = sequential ? (n - i < READ_CHUNK_SAMPLES ? n - i : READ_CHUNK_SAMPLES) : 1;
        if (cursor_load_chunk(c, i, count)) return -1;
    }
    *out = payload_make(c, i);
    return 0;
}

static int fetch_sample(void *ctx, sample_ref ref, bool sequential, void **out) {
    loader *l = ctx;
    payload *p = NULL;
    int rc = cursor_fetch(l, &l->cursor, ref, sequential, &p);
    *out = p;
    return rc;
}

static void cursor_close(shard_cursor *c) {
    if (c->format) c->format->close(c->reader);
    memset(c, 0, sizeof *c);
    c->shard = -1;
}

// ---- decoding (workers) ----------------------------------------------------------------------

// rgb (size, size, 3) into dst (3, size, size), normalized.
static void normalize_pixels(const loader *l, const uint8_t *rgb, int size, float *dst) {
    size_t plane = (size_t)size * (size_t)size;
    for (size_t p = 0; p < plane; p++)
        for (int c = 0; c < 3; c++) dst[c * plane + p] = l->lut[c][rgb[3 * p + c]];
}

static void store_pixels(const loader *l, const uint8_t *rgb, batch_slot *s, int i) {
    size_t plane = (size_t)l->cfg.image_size * (size_t)l->cfg.image_size;
    if (s->images) {
        normalize_pixels(l, rgb, l->cfg.image_size, s->images + (size_t)i * 3 * plane);
    } else {
        uint8_t *dst = s->images_u8 + (size_t)i * 3 * plane;
        for (size_t p = 0; p < plane; p++)
            for (int c = 0; c < 3; c++) dst[c * plane + p] = rgb[3 * p + c];
    }
}

// The view of row i (the sample `ref`) of an image of w x h: a fresh draw from (seed, epoch, the
// row's position in the epoch's stream), or the view source's pick. Returns the stored view's
// number, or -1 for a fresh draw.
static int32_t row_view(const loader *l, const batch_slot *s, int i, sample_ref ref, int w, int h, loader_view *v) {
    const loader_config *c = &l->cfg;
    uint64_t position = (uint64_t)(s->first_ordinal + i);
    if (l->views.pick) {
        uint64_t draw = rng_mix(rng_mix(rng_mix(c->seed, STREAM_VIEW_PICK), (uint64_t)l->epoch), position);
        return (int32_t)l->views.pick(l->views.ctx, (int32_t)ref.shard, (int64_t)ref.index, draw, v);
    }
    loader_view_draw(c, w, h, rng_mix(rng_mix(rng_mix(rng_mix(c->seed, STREAM_AUGMENT), (uint64_t)l->epoch), 0), position), v);
    return -1;
}

// Evaluation with cfg.views: the sample's K random views (keys from (seed, shard, index, view)),
// normalized into the slot's view_images, their parameters into views.
static bool decode_views(const loader *l, batch_slot *s, int i, sample_ref ref, uint8_t *scratch) {
    const loader_config *c = &l->cfg;
    const payload *p = s->payloads[i];
    int w = 0, h = 0, size = c->image_size;
    if (image_webp_size(p->image, p->image_size, &w, &h)) return false;
    size_t plane = 3 * (size_t)size * (size_t)size;
    for (int k = 0; k < c->views; k++) {
        loader_view *v = &s->views[(size_t)i * (size_t)c->views + (size_t)k];
        uint64_t key = rng_mix(rng_mix(rng_mix(rng_mix(c->seed, STREAM_VIEWS), (uint64_t)ref.shard), (uint64_t)ref.index),
                               (uint64_t)k);
        loader_view_draw(c, w, h, key, v);
        if (loader_view_apply(v, p->image, p->image_size, size, scratch) != 0) return false;
        normalize_pixels(l, scratch, size, s->view_images + ((size_t)i * (size_t)c->views + (size_t)k) * plane);
    }
    return true;
}

// Decodes, transforms and tokenizes row i of a slot (the sample `ref`). Returns false when the
// image is corrupt. The student's view and a distillation teacher's both come from the one view,
// so they always match.
static bool decode_sample(const loader *l, batch_slot *s, int i, sample_ref ref, uint8_t *scratch) {
    const loader_config *c = &l->cfg;
    const payload *p = s->payloads[i];
    loader_view view;
    if (!c->train) {
        if (image_decode_eval(p->image, p->image_size, &c->preprocess, c->image_size, scratch)) return false;
        if (c->views > 0 && !decode_views(l, s, i, ref, scratch + 3 * (size_t)c->image_size * (size_t)c->image_size))
            return false;
    } else {
        int w = 0, h = 0;
        if (image_webp_size(p->image, p->image_size, &w, &h)) return false;
        s->view_index[i] = row_view(l, s, i, ref, w, h, &view);
        if (loader_view_apply(&view, p->image, p->image_size, c->image_size, scratch)) return false;
    }
    store_pixels(l, scratch, s, i);
    int t = c->teacher_image_size;  // the teacher's view: the same view (or evaluation transform) at its size
    bool teacher_ok = t <= 0 || (c->train ? loader_view_apply(&view, p->image, p->image_size, t, scratch) == 0
                                          : image_decode_eval(p->image, p->image_size, &c->preprocess, t, scratch) == 0);
    if (!teacher_ok) return false;
    if (t > 0) normalize_pixels(l, scratch, t, s->teacher_images + (size_t)i * 3 * (size_t)t * (size_t)t);
    int64_t *row = s->tokens + (size_t)i * (size_t)c->context_length;
    if (c->tok) {
        if (tokenizer_encode(c->tok, p->caption, c->context_length, row) < 0) return false;
    } else
        memset(row, 0, (size_t)c->context_length * sizeof(int64_t));
    s->labels[i] = p->label;
    s->keys[i] = p->key;
    s->captions[i] = p->caption;
    s->shards[i] = (int32_t)ref.shard;
    s->indices[i] = ref.index;
    return true;
}

// Adds "<shard>: sample <i> ('<key>'): <reason>" to row i's corrupt samples.
static void note_corrupt(const loader *l, batch_slot *s, int i, sample_ref ref) {
    char line[ERROR_CAP];
    snprintf(line, sizeof line, "%s: sample %u ('%s'): %s", l->shard_paths[ref.shard], ref.index, s->payloads[i]->key,
             err_msg()[0] ? err_msg() : "undecodable");
    s->lines[i] = xrealloc(s->lines[i], (size_t)(s->n_lines[i] + 1) * sizeof(char *));
    s->lines[i][s->n_lines[i]++] = xstrdup(line);
}

static bool in_global_batch(const loader *l, const batch_slot *s, sample_ref ref) {
    int64_t g = (int64_t)l->cfg.batch_size * l->cfg.world_size;
    for (int64_t j = 0; j < g; j++)
        if (s->global[j].shard == ref.shard && s->global[j].index == ref.index) return true;
    return false;
}

// Reads the next replacement drawn for row i that is not in its global batch into the row
// (loader.h's rule), counting the draws in *draw. Returns -1 once CORRUPT_LIMIT draws were made.
static int read_replacement(loader *l, batch_slot *s, int i, shard_cursor *spare, int *draw, sample_ref *ref) {
    int64_t ordinal = s->first_ordinal + i, g = (int64_t)l->cfg.batch_size * l->cfg.world_size;
    while (*draw < CORRUPT_LIMIT) {
        if (sampler_substitute(&l->producer.cfg, l->epoch, ordinal, (*draw)++, ref)) return -1;
        if (in_global_batch(l, s, *ref)) continue;
        payload *p = NULL;
        if (cursor_fetch(l, spare, *ref, false, &p)) return -1;
        free(s->payloads[i]);
        s->payloads[i] = p;
        return 0;
    }
    return err_set("batch %lld: no good sample in %d draws to replace the corrupt one in row %lld (the last: %s): the "
                   "data looks damaged", (long long)(ordinal / g), CORRUPT_LIMIT, (long long)(ordinal % g),
                   s->lines[i][s->n_lines[i] - 1]);
}

// Decodes row i of a slot with worker w's buffers. A corrupt sample is noted, then replaced
// (training) or marked to be left out (evaluation).
static void decode_into(loader *l, batch_slot *s, int i, int w) {
    sample_ref ref = s->refs[i];
    for (int draw = 0;;) {
        err_clear();
        if (decode_sample(l, s, i, ref, l->scratch[w])) return;
        note_corrupt(l, s, i, ref);
        s->corrupt[i] = !l->cfg.train;
        if (!l->cfg.train) return;
        if (read_replacement(l, s, i, &l->spares[w], &draw, &ref) != 0) {
            s->row_error[i] = xstrdup(err_msg());
            return;
        }
    }
}

// Moves row i of slot s to row j < i: pixels, tokens and label copied, the payload (which holds
// the key and caption) handed over.
static void move_sample(const loader *l, batch_slot *s, int i, int j) {
    size_t image = 3 * (size_t)l->cfg.image_size * (size_t)l->cfg.image_size;
    if (s->images) memcpy(s->images + j * image, s->images + i * image, image * sizeof(float));
    else memcpy(s->images_u8 + j * image, s->images_u8 + i * image, image);
    size_t teacher = 3 * (size_t)l->cfg.teacher_image_size * (size_t)l->cfg.teacher_image_size;
    if (s->teacher_images) memcpy(s->teacher_images + j * teacher, s->teacher_images + i * teacher, teacher * sizeof(float));
    size_t k = (size_t)l->cfg.views;
    if (s->view_images) {
        memcpy(s->view_images + j * k * image, s->view_images + i * k * image, k * image * sizeof(float));
        memcpy(s->views + j * k, s->views + i * k, k * sizeof(loader_view));
    }
    s->view_index[j] = s->view_index[i];
    size_t ctx = (size_t)l->cfg.context_length;
    memcpy(s->tokens + j * ctx, s->tokens + i * ctx, ctx * sizeof(int64_t));
    s->shards[j] = s->shards[i];
    s->indices[j] = s->indices[i];
    s->labels[j] = s->labels[i];
    s->keys[j] = s->keys[i];
    s->captions[j] = s->captions[i];
    free(s->payloads[j]);  // a corrupt sample's, or NULL
    s->payloads[j] = s->payloads[i];
    s->payloads[i] = NULL;
}

// Called when the last row of a slot is decoded (lock held): a row that could not be made fails
// the slot.
static void finalize_slot(batch_slot *s) {
    s->state = SLOT_READY;
    for (int i = 0; i < s->n && s->state == SLOT_READY; i++)
        if (s->row_error[i]) {
            snprintf(s->error, ERROR_CAP, "%s", s->row_error[i]);
            s->state = SLOT_ERROR;
        }
}

// ---- producing batches -----------------------------------------------------------------------

static void slot_release_payloads(batch_slot *s) {
    for (int i = 0; i < s->n_drawn; i++) {
        free(s->payloads[i]), s->payloads[i] = NULL;
        free(s->row_error[i]), s->row_error[i] = NULL;
        for (int k = 0; k < s->n_lines[i]; k++) free(s->lines[i][k]);
        free(s->lines[i]), s->lines[i] = NULL;
        s->n_lines[i] = 0;
    }
    s->n = s->n_drawn = 0;
}

static void *slot_alloc(const loader *l, size_t size) {
    void *p = l->cfg.allocator.alloc(size, l->cfg.allocator.ctx);
    CLIPC_ASSERT(p != NULL);
    return p;
}

static void slot_init(const loader *l, batch_slot *s) {
    const loader_config *c = &l->cfg;
    size_t b = (size_t)c->batch_size, pixels = b * 3 * (size_t)c->image_size * (size_t)c->image_size;
    s->refs = xcalloc(b, sizeof(sample_ref));
    s->global = xcalloc(b * (size_t)c->world_size, sizeof(sample_ref));
    s->payloads = xcalloc(b, sizeof(payload *));
    s->corrupt = xcalloc(b, sizeof(bool));
    s->lines = xcalloc(b, sizeof(char **));
    s->n_lines = xcalloc(b, sizeof(int));
    s->row_error = xcalloc(b, sizeof(char *));
    if (c->output == LOADER_OUTPUT_FLOAT) s->images = slot_alloc(l, pixels * sizeof(float));
    else s->images_u8 = slot_alloc(l, pixels);
    size_t teacher = b * 3 * (size_t)c->teacher_image_size * (size_t)c->teacher_image_size;
    if (teacher) s->teacher_images = slot_alloc(l, teacher * sizeof(float));
    if (c->views > 0) {
        s->view_images = slot_alloc(l, pixels * (size_t)c->views * sizeof(float));
        s->views = xcalloc(b * (size_t)c->views, sizeof(loader_view));
    }
    s->view_index = xcalloc(b, sizeof(int32_t));
    s->shards = xcalloc(b, sizeof(int32_t));
    s->indices = xcalloc(b, sizeof(int64_t));
    s->tokens = slot_alloc(l, b * (size_t)c->context_length * sizeof(int64_t));
    s->labels = slot_alloc(l, b * sizeof(int32_t));
    s->keys = xcalloc(b, sizeof(char *));
    s->captions = xcalloc(b, sizeof(char *));
}

static void slot_free(const loader *l, batch_slot *s) {
    free(s->refs), free(s->global), free(s->payloads), free(s->corrupt), free(s->keys), free(s->captions);
    free(s->lines), free(s->n_lines), free(s->row_error);
    free(s->shards), free(s->indices), free(s->views), free(s->view_index);
    if (s->view_images) l->cfg.allocator.free(s->view_images, l->cfg.allocator.ctx);
    if (s->images) l->cfg.allocator.free(s->images, l->cfg.allocator.ctx);
    if (s->teacher_images) l->cfg.allocator.free(s->teacher_images, l->cfg.allocator.ctx);
    if (s->images_u8) l->cfg.allocator.free(s->images_u8, l->cfg.allocator.ctx);
    l->cfg.allocator.free(s->tokens, l->cfg.allocator.ctx);
    l->cfg.allocator.free(s->labels, l->cfg.allocator.ctx);
}

static void clear_skipped(loader *l) {
    for (int i = 0; i < l->n_skipped; i++) free(l->skipped[i]);
    l->n_skipped = 0;
}

// Draws the next B samples of the stream into a free slot (reader thread; no lock held).
static void produce_batch(loader *l, batch_slot *s) {
    slot_release_payloads(s);
    int rc = 1;
    while (s->n < l->cfg.batch_size) {
        void *p = NULL;
        int64_t ordinal;
        rc = sampler_next(&l->producer, &s->refs[s->n], &p, &ordinal);
        if (rc == 1 && s->n == 0) s->first_ordinal = ordinal;
        if (rc <= 0) break;
        s->payloads[s->n] = p;
        s->corrupt[s->n++] = false;
    }
    s->n_drawn = s->n;
    if (rc >= 0 && s->n > 0 && l->cfg.train)
        memcpy(s->global, sampler_batch_refs(&l->producer), (size_t)l->cfg.batch_size * (size_t)l->cfg.world_size * sizeof(sample_ref));
    if (rc < 0) {
        snprintf(s->error, ERROR_CAP, "%s", err_msg());
        s->state = SLOT_ERROR;
    } else {
        s->state = s->n == 0 ? SLOT_END : SLOT_DECODING;
        s->remaining = s->n;
    }
}

static void *reader_main(void *arg) {
    loader *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        if (l->reader_finished || l->produced - l->released >= l->n_slots) {
            pthread_cond_wait(&l->cv_reader, &l->mu);
            continue;
        }
        int64_t k = l->produced;
        batch_slot *s = &l->slots[k % l->n_slots];
        pthread_mutex_unlock(&l->mu);
        produce_batch(l, s);
        pthread_mutex_lock(&l->mu);
        l->produced++;
        l->reader_finished = s->state != SLOT_DECODING;
        pthread_cond_broadcast(&l->cv_work);
        pthread_cond_broadcast(&l->cv_done);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

// Hands out the next (slot, sample) task, or NULL when none is ready. Lock held.
static batch_slot *take_task(loader *l, int *i) {
    while (l->task_batch < l->produced) {
        batch_slot *s = &l->slots[l->task_batch % l->n_slots];
        if (s->state != SLOT_DECODING) {
            l->task_batch++;
            continue;
        }
        *i = l->task_next++;
        if (l->task_next >= s->n) l->task_batch++, l->task_next = 0;
        return s;
    }
    return NULL;
}

typedef struct {
    loader *l;
    int id;
} worker_arg;

static void *worker_main(void *arg) {
    loader *l = ((worker_arg *)arg)->l;
    int id = ((worker_arg *)arg)->id;
    free(arg);
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        int i = 0;
        batch_slot *s = take_task(l, &i);
        if (!s) {
            pthread_cond_wait(&l->cv_work, &l->mu);
            continue;
        }
        pthread_mutex_unlock(&l->mu);
        decode_into(l, s, i, id);
        pthread_mutex_lock(&l->mu);
        if (--s->remaining == 0) {
            finalize_slot(s);
            pthread_cond_broadcast(&l->cv_done);
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

// ---- pipeline control ------------------------------------------------------------------------

static void start_threads(loader *l) {
    if (l->cfg.workers == 0) return;
    l->stop = false;
    pthread_create(&l->reader, NULL, reader_main, l);
    for (int i = 0; i < l->cfg.workers; i++) {
        worker_arg *a = xmalloc(sizeof *a);
        *a = (worker_arg){l, i};
        pthread_create(&l->workers[i], NULL, worker_main, a);
    }
    l->running = true;
}

// Stops the threads and empties the queue.
static void reset_pipeline(loader *l) {
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cv_reader);
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->reader, NULL);
        for (int i = 0; i < l->cfg.workers; i++) pthread_join(l->workers[i], NULL);
        l->running = false;
    }
    for (int i = 0; i < l->n_slots; i++) slot_release_payloads(&l->slots[i]), l->slots[i].state = SLOT_FREE;
    clear_skipped(l);
    l->produced = l->released = l->consumed = l->task_batch = 0;
    l->task_next = 0;
    l->corrupt_run = 0;
    l->held = -1;
    l->reader_finished = l->epoch_over = false;
}

void loader_set_view_source(loader *l, loader_view_source source) {
    reset_pipeline(l);
    l->views = source;
    loader_set_epoch(l, l->epoch);
}

void loader_set_epoch(loader *l, int64_t epoch) {
    reset_pipeline(l);
    l->epoch = epoch;
    l->next_index = 0;
    sampler_start_epoch(&l->producer, epoch);
    sampler_start_epoch(&l->shadow, epoch);
    start_threads(l);
}

// Produces and decodes the next batch in the calling thread (workers == 0).
static void run_batch_here(loader *l) {
    batch_slot *s = &l->slots[l->produced % l->n_slots];
    produce_batch(l, s);
    l->produced++;
    if (s->state != SLOT_DECODING) return;
    for (int i = 0; i < s->n; i++) decode_into(l, s, i, 0);
    finalize_slot(s);
}

// The shadow sampler follows the consumer: sample i of slot s has been used.
static void advance_shadow(loader *l, const batch_slot *s, int i) {
    sample_ref ref;
    int rc = sampler_next(&l->shadow, &ref, NULL, NULL);
    CLIPC_ASSERT(rc == 1 && ref.shard == s->refs[i].shard && ref.index == s->refs[i].index);
}

static void fill_batch(loader *l, const batch_slot *s, loader_batch *out) {
    *out = (loader_batch){
        .n = s->n, .index = l->next_index++, .epoch = l->epoch, .images = s->images, .images_u8 = s->images_u8,
        .tokens = s->tokens, .labels = s->labels, .keys = s->keys, .captions = s->captions,
        .teacher_images = s->teacher_images, .shards = s->shards, .indices = s->indices,
        .view_images = s->view_images, .views = s->views, .view_index = l->views.pick ? s->view_index : NULL,
        .n_corrupt = l->n_skipped, .corrupt = (const char *const *)l->skipped,
    };
    l->stats.batches++;
    l->stats.samples += s->n;
}

// Waits for the slot being consumed to be decoded (lock held when threaded).
static batch_slot *wait_next_slot(loader *l) {
    batch_slot *s = &l->slots[l->consumed % l->n_slots];
    if (!l->running) {
        if (l->consumed >= l->produced) run_batch_here(l);
        return s;
    }
    double t0 = now_seconds();
    while (l->consumed >= l->produced || s->state == SLOT_DECODING) pthread_cond_wait(&l->cv_done, &l->mu);
    l->stats.wait_seconds += now_seconds() - t0;
    return s;
}

// Gives the slot back to the reader (in order).
static void release_slot(loader *l) {
    l->consumed++;
    l->released++;
    pthread_cond_signal(&l->cv_reader);
}

// Takes the slot's notes of corrupt samples over for the batch being made.
static void collect_corrupt(loader *l, batch_slot *s) {
    for (int i = 0; i < s->n; i++) {
        l->skipped = xrealloc(l->skipped, (size_t)(l->n_skipped + s->n_lines[i]) * sizeof(char *));
        for (int k = 0; k < s->n_lines[i]; k++) l->skipped[l->n_skipped++] = s->lines[i][k];
        l->stats.corrupt_skipped += s->n_lines[i];
        s->n_lines[i] = 0;
    }
}

// Evaluation: drops the rows of corrupt samples, moving the others up. Returns -1 once max(B,
// CORRUPT_LIMIT) corrupt samples came in a row on this rank: the data is damaged, not a sample
// here and there.
static int leave_out_corrupt(loader *l, batch_slot *s) {
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        if (!s->corrupt[i]) {
            l->corrupt_run = 0;
            if (n != i) move_sample(l, s, i, n);
            n++;
            continue;
        }
        int64_t limit = l->cfg.batch_size > CORRUPT_LIMIT ? l->cfg.batch_size : CORRUPT_LIMIT;
        if (++l->corrupt_run >= limit)
            return err_set("%lld corrupt samples in a row (the last: %s): the data looks damaged", (long long)l->corrupt_run,
                           l->skipped[l->n_skipped - 1]);
    }
    s->n = n;
    return 0;
}

// The next batch: this rank's rows of the next global batch. In evaluation a batch whose rows
// were all corrupt is passed over (its notes go with the next batch).
static int next_batch(loader *l, loader_batch *out) {
    for (;;) {
        batch_slot *s = wait_next_slot(l);
        if (s->state == SLOT_ERROR) return err_set("%s", s->error);
        if (s->state == SLOT_END) {
            l->epoch_over = true;
            return 0;
        }
        for (int i = 0; i < s->n; i++) advance_shadow(l, s, i);
        collect_corrupt(l, s);
        if (!l->cfg.train && leave_out_corrupt(l, s) != 0) {
            snprintf(s->error, ERROR_CAP, "%s", err_msg());
            s->state = SLOT_ERROR;  // and so for every later call
            return -1;
        }
        if (s->n > 0) {
            fill_batch(l, s, out);
            l->held = (int)(l->consumed++ % l->n_slots);
            return 1;
        }
        release_slot(l);
    }
}

int loader_next(loader *l, loader_batch *out) {
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->released++;
        l->held = -1;
        pthread_cond_signal(&l->cv_reader);
    }
    clear_skipped(l);
    int rc = l->epoch_over ? 0 : next_batch(l, out);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

// ---- setup -----------------------------------------------------------------------------------

static int check_config(const loader_config *c) {
    if (!c->data || !c->data[0]) return err_set("loader: no data given");
    if (c->batch_size <= 0 || c->image_size <= 0) return err_set("loader: batch size and image size must be positive");
    if (c->world_size <= 0 || c->rank < 0 || c->rank >= c->world_size)
        return err_set("loader: rank %d is outside world size %d", c->rank, c->world_size);
    if (c->workers < 0 || c->prefetch < 1) return err_set("loader: workers must be >= 0 and prefetch >= 1");
    if (c->context_length <= 0) return err_set("loader: context length must be positive");
    if (c->teacher_image_size < 0 || (c->teacher_image_size > 0 && c->output != LOADER_OUTPUT_FLOAT))
        return err_set("loader: a teacher image size needs float output and must be positive");
    if (c->upsampling_factors && !c->resampled)
        return err_set("loader: upsampling factors need resampled mode (--dataset-resampled)");
    for (int i = 0; i < 3; i++)
        if (!(c->preprocess.std[i] > 0)) return err_set("loader: std[%d] must be positive", i);
    if (!(c->scale_min > 0 && c->scale_min <= c->scale_max && c->ratio_min > 0 && c->ratio_min <= c->ratio_max))
        return err_set("loader: bad RandomResizedCrop scale or ratio range");
    if (c->views < 0 || (c->views > 0 && (c->train || c->output != LOADER_OUTPUT_FLOAT)))
        return err_set("loader: views per sample are for evaluation with float output");
    return 0;
}

// Splits an OpenCLIP-style "a::b::c" list into malloc'ed pieces.
static char **split_sources(const char *list, int *n) {
    int cap = 1;
    for (const char *p = strstr(list, "::"); p; p = strstr(p + 2, "::")) cap++;
    char **out = xcalloc((size_t)cap, sizeof(char *));
    *n = 0;
    for (const char *p = list;;) {
        const char *end = strstr(p, "::");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        out[*n] = xmalloc(len + 1);
        memcpy(out[*n], p, len);
        out[(*n)++][len] = '\0';
        if (!end) break;
        p = end + 2;
    }
    return out;
}

static void free_strings(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static int parse_weights(const char *list, int n_sources, double *weights) {
    for (int i = 0; i < n_sources; i++) weights[i] = 1.0;
    if (!list) return 0;
    int n = 0;
    char **parts = split_sources(list, &n);
    int rc = n == n_sources ? 0 : err_set("loader: %d upsampling factors for %d data sources", n, n_sources);
    for (int i = 0; rc == 0 && i < n; i++) {
        char *end = NULL;
        weights[i] = strtod(parts[i], &end);
        if (end == parts[i] || *end || !(weights[i] >= 0) || !isfinite(weights[i]))
            rc = err_set("loader: upsampling factor '%s' is not a non-negative number", parts[i]);
    }
    free_strings(parts, n);
    return rc;
}

// Lists each source through its format (loader/reader.h). A source whose listing failed keeps a
// NULL format.
static int list_sources(loader *l, char **paths) {
    l->sources = xcalloc((size_t)l->n_sources, sizeof(reader_listing));
    l->source_formats = xcalloc((size_t)l->n_sources, sizeof(sample_format *));
    for (int i = 0; i < l->n_sources; i++) {
        const sample_format *f = reader_format_find(paths[i]);
        if (f->list(paths[i], &l->sources[i])) return -1;
        l->source_formats[i] = f;
        l->n_shards += l->sources[i].n_units;
    }
    return 0;
}

static int load_sources(loader *l) {
    char **paths = split_sources(l->cfg.data, &l->n_sources);
    double *weights = xmalloc((size_t)l->n_sources * sizeof(double));
    int rc = parse_weights(l->cfg.upsampling_factors, l->n_sources, weights);
    if (rc == 0) rc = list_sources(l, paths);
    free_strings(paths, l->n_sources);
    if (rc == 0) {
        size_t n = (size_t)(l->n_shards ? l->n_shards : 1);
        l->shard_paths = xcalloc(n, sizeof(char *));
        l->shard_formats = xcalloc(n, sizeof(sample_format *));
        l->shard_sizes = xcalloc(n, sizeof(int64_t));
        l->shard_weights = xcalloc(n, sizeof(double));
        int k = 0;
        for (int i = 0; i < l->n_sources; i++)
            for (int j = 0; j < l->sources[i].n_units; j++, k++) {
                const reader_unit *u = &l->sources[i].units[j];
                l->shard_paths[k] = u->path;
                l->shard_formats[k] = l->source_formats[i];
                l->shard_sizes[k] = u->num_samples;
                l->shard_weights[k] = weights[i];
                if (access(u->path, R_OK) != 0)
                    rc = err_set("%s: missing or unreadable shard (listed in %s)", u->path, l->sources[i].path);
            }
    }
    free(weights);
    if (rc == 0 && loader_num_samples(l) == 0) rc = err_set("loader: %s holds no samples", l->cfg.data);
    return rc;
}

static void *default_alloc(size_t size, void *ctx) {
    (void)ctx;
    return aligned_alloc(64, (size + 63) / 64 * 64);
}

static void default_free(void *p, void *ctx) {
    (void)ctx;
    free(p);
}

static void init_slots(loader *l) {
    const loader_config *c = &l->cfg;
    l->n_slots = c->prefetch + 1;  // one more than prefetched: the batch the caller holds
    l->slots = xcalloc((size_t)l->n_slots, sizeof(batch_slot));
    for (int i = 0; i < l->n_slots; i++) slot_init(l, &l->slots[i]);
    int n_scratch = c->workers > 0 ? c->workers : 1;
    l->scratch = xcalloc((size_t)n_scratch, sizeof(uint8_t *));
    size_t side = (size_t)(c->image_size > c->teacher_image_size ? c->image_size : c->teacher_image_size);
    for (int i = 0; i < n_scratch; i++) l->scratch[i] = xmalloc(side * side * 3 * 2);  // two images (evaluation views)
    l->workers = xcalloc((size_t)n_scratch, sizeof(pthread_t));
    l->spares = xcalloc((size_t)n_scratch, sizeof(shard_cursor));
    for (int i = 0; i < n_scratch; i++) l->spares[i].shard = -1;
}

static void init_samplers(loader *l) {
    const loader_config *c = &l->cfg;
    sampler_config sc = {
        .n_shards = l->n_shards, .shard_sizes = l->shard_sizes, .shard_weights = l->shard_weights,
        .seed = c->seed, .rank = c->rank, .world_size = c->world_size, .batch_size = c->batch_size,
        .shuffle = c->train, .buffer_size = c->shuffle_buffer, .resampled = c->resampled,
        .samples_per_epoch = c->samples_per_epoch, .drop_last = c->drop_last || c->resampled,
    };
    sampler_init(&l->producer, &sc, fetch_sample, l);
    sampler_init(&l->shadow, &sc, NULL, NULL);
    for (int ch = 0; ch < 3; ch++)
        for (int v = 0; v < 256; v++) l->lut[ch][v] = ((float)v / 255.0f - c->preprocess.mean[ch]) / c->preprocess.std[ch];
}

loader *loader_init(const loader_config *cfg) {
    if (check_config(cfg)) return NULL;
    loader *l = xcalloc(1, sizeof *l);
    l->cfg = *cfg;
    l->cfg.data = xstrdup(cfg->data);
    l->cfg.upsampling_factors = cfg->upsampling_factors ? xstrdup(cfg->upsampling_factors) : NULL;
    if (!l->cfg.allocator.alloc || !l->cfg.allocator.free)
        l->cfg.allocator = (loader_allocator){default_alloc, default_free, NULL};
    l->cursor.shard = -1;
    l->held = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_reader, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_done, NULL);
    if (load_sources(l)) {
        loader_free(l);
        return NULL;
    }
    init_samplers(l);
    init_slots(l);
    loader_set_epoch(l, 0);
    return l;
}

void loader_free(loader *l) {
    if (!l) return;
    if (l->slots) {
        reset_pipeline(l);
        sampler_free(&l->producer);
        sampler_free(&l->shadow);
    }
    for (int i = 0; l->slots && i < l->n_slots; i++) slot_free(l, &l->slots[i]);
    free(l->skipped);
    for (int i = 0; l->scratch && i < (l->cfg.workers > 0 ? l->cfg.workers : 1); i++) free(l->scratch[i]);
    free(l->scratch);
    free(l->workers);
    free(l->slots);
    cursor_close(&l->cursor);
    for (int i = 0; l->spares && i < (l->cfg.workers > 0 ? l->cfg.workers : 1); i++) cursor_close(&l->spares[i]);
    free(l->spares);
    for (int i = 0; i < l->n_sources; i++)
        if (l->source_formats && l->source_formats[i]) l->source_formats[i]->release(&l->sources[i]);
    free(l->sources), free(l->source_formats);
    free(l->shard_paths), free(l->shard_formats), free(l->shard_sizes), free(l->shard_weights);
    free((char *)l->cfg.data);
    free((char *)l->cfg.upsampling_factors);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_reader);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_done);
    free(l);
}

int64_t loader_num_batches(const loader *l) { return sampler_num_batches(&l->shadow); }

int64_t loader_num_samples(const loader *l) {
    int64_t n = 0;
    for (int i = 0; i < l->n_sources; i++) n += l->sources[i].num_samples;
    return n;
}

int loader_num_classes(const loader *l) { return l->sources[0].n_classes; }
const char *loader_class_name(const loader *l, int c) { return l->sources[0].class_names[c]; }
int loader_num_shards(const loader *l) { return l->n_shards; }
const char *loader_shard_path(const loader *l, int shard) { return l->shard_paths[shard]; }
int64_t loader_shard_size(const loader *l, int shard) { return l->shard_sizes[shard]; }

loader_stats loader_get_stats(const loader *l) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    loader_stats s = l->stats;
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    return s;
}

// ---- saved position --------------------------------------------------------------------------

// Everything besides the seed and the global batch size that decides the order.
static uint64_t order_fingerprint(const loader *l) {
    const loader_config *c = &l->cfg;
    uint64_t h = rng_mix((uint64_t)l->n_shards, (uint64_t)c->train * 2 + (uint64_t)c->resampled);
    h = rng_mix(h, (uint64_t)c->shuffle_buffer);
    h = rng_mix(h, (uint64_t)c->samples_per_epoch * 2 + (uint64_t)c->drop_last);
    for (int i = 0; i < l->n_shards; i++) {
        double w = l->shard_weights[i];
        uint64_t wbits;
        memcpy(&wbits, &w, sizeof wbits);
        h = rng_mix(rng_mix(h, (uint64_t)l->shard_sizes[i]), wbits);
    }
    return h;
}

int loader_state_save(const loader *l, uint8_t **bytes, size_t *n) {
    pthread_mutex_lock((pthread_mutex_t *)&l->mu);
    size_t size = LOADER_STATE_HEADER + sampler_state_size(&l->shadow) + 4;
    uint8_t *buf = xmalloc(size), *p = buf;
    memcpy(p, LOADER_STATE_MAGIC, 8);
    p = bytes_put_u32(p + 8, LOADER_STATE_VERSION);
    p = bytes_put_u64(p, l->cfg.seed);
    p = bytes_put_u32(p, (uint32_t)l->cfg.rank);
    p = bytes_put_u32(p, (uint32_t)l->cfg.world_size);
    p = bytes_put_u32(p, (uint32_t)l->cfg.batch_size);
    p = bytes_put_u32(p, (uint32_t)l->n_shards);
    p = bytes_put_u64(p, order_fingerprint(l));
    p = bytes_put_u64(p, 0);  // corrupt samples passed over this epoch: none under the replacement rule
    sampler_state_write(&l->shadow, p);
    p += sampler_state_size(&l->shadow);
    bytes_put_u32(p, (uint32_t)crc32(0L, buf, (uInt)(size - 4)));
    pthread_mutex_unlock((pthread_mutex_t *)&l->mu);
    *bytes = buf;
    *n = size;
    return 0;
}

static int check_state_header(const loader *l, const uint8_t *bytes, size_t n) {
    if (n < LOADER_STATE_HEADER + 4 || memcmp(bytes, LOADER_STATE_MAGIC, 8) != 0)
        return err_set("saved loader position: not a clipc loader position");
    if ((uint32_t)crc32(0L, bytes, (uInt)(n - 4)) != (bytes_get_u32(&(const uint8_t *){bytes + n - 4})))
        return err_set("saved loader position: checksum mismatch (damaged)");
    const uint8_t *p = bytes + 8;
    uint32_t version = bytes_get_u32(&p);
    if (version != LOADER_STATE_VERSION)
        return err_set("saved loader position: version %u, this build reads version %d", version, LOADER_STATE_VERSION);
    uint64_t seed = bytes_get_u64(&p);
    uint32_t rank = bytes_get_u32(&p), world = bytes_get_u32(&p), batch = bytes_get_u32(&p), shards = bytes_get_u32(&p);
    (void)rank;  // any rank and world size continue the same global stream
    if (seed != l->cfg.seed || (uint64_t)world * batch != (uint64_t)l->cfg.world_size * (uint64_t)l->cfg.batch_size)
        return err_set("saved loader position was made with seed %llu and a global batch of %llu (%u ranks x %u); this "
                       "loader has seed %llu and a global batch of %lld (%d x %d)",
                       (unsigned long long)seed, (unsigned long long)world * batch, world, batch,
                       (unsigned long long)l->cfg.seed, (long long)l->cfg.world_size * l->cfg.batch_size,
                       l->cfg.world_size, l->cfg.batch_size);
    if (shards != (uint32_t)l->n_shards || bytes_get_u64(&p) != order_fingerprint(l))
        return err_set("saved loader position was made with other shards or shuffle settings");
    return 0;
}

// The corrupt samples passed over this epoch, as saved after the header: the count an earlier
// rule kept (0 since corrupt samples are replaced in place).
static int64_t saved_skipped(const uint8_t *bytes) {
    const uint8_t *p = bytes + LOADER_STATE_HEADER - 8;
    return (int64_t)bytes_get_u64(&p);
}

int loader_state_restore(loader *l, const uint8_t *bytes, size_t n) {
    if (check_state_header(l, bytes, n)) return -1;
    if (saved_skipped(bytes) != 0)
        return err_set("saved loader position: made by an earlier clipc after %lld corrupt samples were passed over in "
                       "its epoch, which this one replaces instead: it cannot continue that epoch exactly; resume from "
                       "a checkpoint of the epoch's start", (long long)saved_skipped(bytes));
    reset_pipeline(l);
    const uint8_t *body = bytes + LOADER_STATE_HEADER;
    size_t body_n = n - LOADER_STATE_HEADER - 4;
    int64_t epoch = l->epoch;
    if (sampler_state_read(&l->shadow, body, body_n) < 0 || sampler_state_read(&l->producer, body, body_n) < 0) {
        err_prefix("restoring the loader position");
        loader_set_epoch(l, epoch);
        return -1;
    }
    int64_t g = (int64_t)l->cfg.batch_size * l->cfg.world_size;
    l->epoch = l->shadow.epoch;
    l->next_index = (l->shadow.emitted + g - 1) / g;
    start_threads(l);
    return 0;
}
