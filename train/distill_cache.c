#include "train/distill_cache.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/error.h"
#include "shards/shard.h"
#include "model/safetensors.h"

#define PATH_CAP 4096

// ---- identities ------------------------------------------------------------------------------

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int distill_teacher_id_init(distill_teacher_id *id, const clip_config *cfg, const char *weights) {
    memset(id, 0, sizeof *id);
    FILE *f = fopen_checked(weights, "rb");
    if (!f) return -1;
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t cap = 1 << 20, got;
    unsigned char *buf = xmalloc(cap);
    while ((got = fread(buf, 1, cap, f)) > 0) {
        crc = crc32(crc, buf, (uInt)got);
        id->weights_bytes += (int64_t)got;
    }
    int failed = ferror(f);
    fclose(f);
    free(buf);
    if (failed) return err_set("%s: read error", weights);
    id->weights_crc32 = (uint32_t)crc;
    id->config = clip_config_to_json(cfg);
    snprintf(id->name, sizeof id->name, "%s", cfg->name);
    snprintf(id->weights, sizeof id->weights, "%s", base_name(weights));
    return 0;
}

void distill_teacher_id_free(distill_teacher_id *id) {
    free(id->config);
    memset(id, 0, sizeof *id);
}

static void describe_teacher(const distill_teacher_id *id, char *out, size_t cap) {
    snprintf(out, cap, "teacher '%s' (weights %s, CRC-32 %08" PRIx32 ", %" PRId64 " bytes)", id->name, id->weights,
             id->weights_crc32, id->weights_bytes);
}

static bool same_teacher(const distill_teacher_id *a, const distill_teacher_id *b) {
    return !strcmp(a->config, b->config) && a->weights_crc32 == b->weights_crc32 && a->weights_bytes == b->weights_bytes;
}

// What a shard is: its sample count and the FNV-1a hash of its keys (each with its NUL).
typedef struct {
    int64_t samples;
    uint64_t keys_hash;
} shard_identity;

static int shard_identity_read(const char *path, shard_identity *out) {
    shard_reader *r = shard_reader_open(path);
    if (!r) return -1;
    uint64_t h = 14695981039346656037ULL;
    out->samples = shard_reader_count(r);
    for (int64_t i = 0; i < out->samples; i++) {
        const char *k = shard_reader_key(r, i);
        do h = (h ^ (uint8_t)*k) * 1099511628211ULL;
        while (*k++);
    }
    out->keys_hash = h;
    shard_reader_close(r);
    return 0;
}

static void side_path(const char *dir, const char *shard_path, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s" DISTILL_CACHE_SUFFIX, dir, base_name(shard_path));
}

// Two shards of one set with the same file name would share a side file.
static int check_unique_names(const loader *l) {
    int n = loader_num_shards(l);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(base_name(loader_shard_path(l, i)), base_name(loader_shard_path(l, j))))
                return err_set("shards %s and %s have the same file name: their stored targets would share one file",
                               loader_shard_path(l, j), loader_shard_path(l, i));
    return 0;
}

// ---- the teacher's forward -------------------------------------------------------------------

int distill_teacher_encode(const clip_model *teacher, const float *images, const int64_t *tokens, int n,
                           tensor **image, tensor **text) {
    tensor_no_grad_begin();
    *image = clip_encode_image(teacher, clip_images_to_device(teacher, images, n), true);
    *text = clip_encode_text_host(teacher, tokens, n, true);
    tensor_no_grad_end();
    return *image && *text ? 0 : -1;
}

// ---- building --------------------------------------------------------------------------------

#define VIEW_FLOATS 12

static int set_metadata_number(st_writer *w, const char *key, int64_t value) {
    char text[32];
    snprintf(text, sizeof text, "%" PRId64, value);
    return st_writer_set_metadata(w, key, text);
}

// The rows of the shards whose samples are still coming, by position in the shard.
typedef struct {
    const session *teacher;
    const distill_teacher_id *id;
    const distill_cache_build_options *o;
    const loader *l;
    int dim, k;             // E, views per sample
    float **image, **text;  // (n_shards) (shard size, E) each once started, NULL otherwise
    float **view_image, **view_params;  // (n_shards) (shard size K, E) and (shard size K, VIEW_FLOATS) when k > 0
    int next;               // first shard not written yet
} cache_builder;

static void builder_start(cache_builder *b, int shard) {
    if (b->image[shard]) return;
    size_t n = (size_t)loader_shard_size(b->l, shard) * (size_t)b->dim;
    b->image[shard] = xcalloc(n ? n : 1, sizeof(float));
    b->text[shard] = xcalloc(n ? n : 1, sizeof(float));
    if (b->k == 0) return;
    size_t rows = (size_t)loader_shard_size(b->l, shard) * (size_t)b->k;
    b->view_image[shard] = xcalloc(rows ? rows * (size_t)b->dim : 1, sizeof(float));
    b->view_params[shard] = xcalloc(rows ? rows * VIEW_FLOATS : 1, sizeof(float));
}

static void builder_release(cache_builder *b, int shard) {
    free(b->image[shard]), free(b->text[shard]), free(b->view_image[shard]), free(b->view_params[shard]);
    b->image[shard] = b->text[shard] = b->view_image[shard] = b->view_params[shard] = NULL;
}

// A view as a row of VIEW_FLOATS: crop left, top, width, height; order (4); factors (4).
static void view_to_row(const loader_view *v, float *row) {
    row[0] = (float)v->crop.left, row[1] = (float)v->crop.top, row[2] = (float)v->crop.width, row[3] = (float)v->crop.height;
    for (int i = 0; i < 4; i++) row[4 + i] = v->order[i], row[8 + i] = v->jitter[i];
}

static void view_of_row(const float *row, loader_view *v) {
    v->crop = (image_rect){(int)row[0], (int)row[1], (int)row[2], (int)row[3]};
    for (int i = 0; i < 4; i++) v->order[i] = (uint8_t)row[4 + i], v->jitter[i] = row[8 + i];
}

static int set_metadata_views(st_writer *w, const cache_builder *b) {
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, b->o->seed);
    return set_metadata_number(w, "views.count", b->k) || st_writer_set_metadata(w, "views.aug_cfg", b->o->aug_cfg ? b->o->aug_cfg : "") ||
                   st_writer_set_metadata(w, "views.seed", seed)
               ? -1
               : 0;
}


static int set_metadata_ids(st_writer *w, const distill_teacher_id *id, const char *shard_path, const shard_identity *si) {
    char text[32], version[16];
    snprintf(version, sizeof version, "%d", DISTILL_CACHE_VERSION);
    int rc = st_writer_set_metadata(w, "clipc.format", DISTILL_CACHE_FORMAT) ||
             st_writer_set_metadata(w, "clipc.version", version) || st_writer_set_metadata(w, "teacher.config", id->config) ||
             st_writer_set_metadata(w, "teacher.name", id->name) || st_writer_set_metadata(w, "teacher.weights", id->weights);
    snprintf(text, sizeof text, "%08" PRIx32, id->weights_crc32);
    rc = rc || st_writer_set_metadata(w, "teacher.weights_crc32", text) ||
         set_metadata_number(w, "teacher.weights_bytes", id->weights_bytes);
    snprintf(text, sizeof text, "%016" PRIx64, si->keys_hash);
    rc = rc || st_writer_set_metadata(w, "shard.file", base_name(shard_path)) ||
         st_writer_set_metadata(w, "shard.path", shard_path) || set_metadata_number(w, "shard.num_samples", si->samples) ||
         st_writer_set_metadata(w, "shard.keys_fnv1a", text);
    return rc ? -1 : 0;
}

static int write_side_file(cache_builder *b, int shard) {
    const char *shard_path = loader_shard_path(b->l, shard);
    shard_identity si;
    if (shard_identity_read(shard_path, &si) != 0) return -1;
    builder_start(b, shard);  // an empty shard never started
    const clip_config *cfg = &b->teacher->model->cfg;
    float scale = 0;
    int rc = tensor_to_host(b->teacher->model->logit_scale, &scale, sizeof scale);
    st_writer *w = st_writer_init();
    int64_t shape[2] = {si.samples, b->dim};
    if (rc == 0) rc = set_metadata_ids(w, b->id, shard_path, &si);
    if (rc == 0) rc = set_metadata_number(w, "eval.image_size", cfg->vision.image_size) ||
                      set_metadata_number(w, "eval.context_length", cfg->text.context_length);
    if (rc == 0) rc = st_writer_add(w, "image_features", ST_DTYPE_F32, shape, 2, b->image[shard]) ||
                      st_writer_add(w, "text_features", ST_DTYPE_F32, shape, 2, b->text[shard]) ||
                      st_writer_add(w, "teacher.logit_scale", ST_DTYPE_F32, shape, 0, &scale);
    int64_t view_shape[2] = {si.samples * b->k, b->dim}, params_shape[2] = {si.samples * b->k, VIEW_FLOATS};
    if (rc == 0) rc = set_metadata_views(w, b);
    if (rc == 0 && b->k > 0)
        rc = st_writer_add(w, "view_image_features", ST_DTYPE_F32, view_shape, 2, b->view_image[shard]) ||
             st_writer_add(w, "views", ST_DTYPE_F32, params_shape, 2, b->view_params[shard]);
    char path[PATH_CAP];
    side_path(b->o->dir, shard_path, path, sizeof path);
    if (rc == 0) rc = st_writer_write(w, path);
    st_writer_free(w);
    builder_release(b, shard);
    if (rc == 0 && b->o->on_shard) b->o->on_shard(b->o->ctx, path, si.samples);
    return rc ? -1 : 0;
}

// Writes every shard before `until`.
static int builder_flush(cache_builder *b, int until) {
    for (; b->next < until; b->next++)
        if (write_side_file(b, b->next) != 0) return -1;
    return 0;
}

// The teacher's features of the batch's K views of each sample (n K images, at most one batch of
// them at a time) into their shards' rows, with the views' parameters.
static int builder_add_views(cache_builder *b, const loader_batch *batch) {
    int64_t total = (int64_t)batch->n * b->k, chunk = b->o->batch_size > 0 ? b->o->batch_size : 64;
    size_t pixels = 3 * (size_t)b->teacher->model->cfg.vision.image_size * (size_t)b->teacher->model->cfg.vision.image_size;
    float *features = xmalloc((size_t)chunk * (size_t)b->dim * sizeof(float));
    int rc = 0;
    for (int64_t first = 0; rc == 0 && first < total; first += chunk) {
        int n = (int)(total - first < chunk ? total - first : chunk);
        if (b->o->bf16 && tensor_autocast_begin(TENSOR_BF16) != 0) rc = -1;
        tensor_scope_begin();
        tensor *ti = NULL;
        if (rc == 0) {
            tensor_no_grad_begin();
            ti = clip_encode_image(b->teacher->model, clip_images_to_device(b->teacher->model, batch->view_images + (size_t)first * pixels, n), true);
            tensor_no_grad_end();
        }
        if (b->o->bf16 && rc == 0) tensor_autocast_end();
        if (rc == 0) rc = !ti || tensor_to_host(tensor_to_dtype(ti, TENSOR_F32), features, (size_t)n * (size_t)b->dim * sizeof(float));
        tensor_scope_end();
        for (int j = 0; rc == 0 && j < n; j++) {
            int64_t r = first + j, i = r / b->k, k = r % b->k;
            size_t row = (size_t)batch->indices[i] * (size_t)b->k + (size_t)k;
            memcpy(b->view_image[batch->shards[i]] + row * (size_t)b->dim, features + (size_t)j * (size_t)b->dim,
                   (size_t)b->dim * sizeof(float));
            view_to_row(&batch->views[r], b->view_params[batch->shards[i]] + row * VIEW_FLOATS);
        }
    }
    free(features);
    return rc ? -1 : 0;
}

// The teacher's features of one batch into its shards' rows. In evaluation order the shards come
// one after the other: every shard before the last one the batch touches is complete (a row that
// replaced a corrupt image repeats a sample of the same batch).
static int builder_add(cache_builder *b, const loader_batch *batch) {
    if (b->o->bf16 && tensor_autocast_begin(TENSOR_BF16) != 0) return -1;
    size_t bytes = (size_t)batch->n * (size_t)b->dim * sizeof(float);
    float *image = xmalloc(bytes), *text = xmalloc(bytes);
    tensor_scope_begin();
    tensor *ti, *tt;
    int rc = distill_teacher_encode(b->teacher->model, batch->images, batch->tokens, batch->n, &ti, &tt);
    if (b->o->bf16) tensor_autocast_end();
    if (rc == 0) rc = tensor_to_host(tensor_to_dtype(ti, TENSOR_F32), image, bytes) ||
                      tensor_to_host(tensor_to_dtype(tt, TENSOR_F32), text, bytes);
    tensor_scope_end();
    int last = 0;
    for (int i = 0; rc == 0 && i < batch->n; i++) {
        int s = batch->shards[i];
        CLIPC_ASSERT(s >= b->next);
        builder_start(b, s);
        size_t row = (size_t)batch->indices[i] * (size_t)b->dim, from = (size_t)i * (size_t)b->dim;
        memcpy(b->image[s] + row, image + from, (size_t)b->dim * sizeof(float));
        memcpy(b->text[s] + row, text + from, (size_t)b->dim * sizeof(float));
        if (s > last) last = s;
    }
    free(image), free(text);
    if (rc == 0 && b->k > 0) rc = builder_add_views(b, batch);
    return rc ? -1 : builder_flush(b, last);
}

static int make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return err_errno(path);
    return 0;
}

int distill_cache_build(const session *teacher, const distill_teacher_id *id, const distill_cache_build_options *o) {
    if (!teacher->tok) return err_set("distill-cache: the teacher needs a tokenizer (--vocab)");
    if (make_dir(o->dir) != 0) return -1;
    loader_config lc;
    loader_config_init(&lc, o->data, o->batch_size, teacher->model->cfg.vision.image_size, false);
    lc.workers = o->workers;
    lc.tok = teacher->tok;
    lc.context_length = teacher->model->cfg.text.context_length;
    lc.views = o->views, lc.seed = o->seed;
    if (o->views < 0) return err_set("--augmentations must be 0 or more, got %d", o->views);
    if (o->aug_cfg && loader_aug_cfg_parse(&lc, o->aug_cfg) != 0) return -1;
    loader *l = loader_init(&lc);
    if (!l || check_unique_names(l) != 0) {
        loader_free(l);
        return -1;
    }
    int n = loader_num_shards(l);
    cache_builder b = {.teacher = teacher, .id = id, .o = o, .l = l, .dim = teacher->model->cfg.embed_dim, .k = o->views,
                       .image = xcalloc((size_t)n, sizeof(float *)), .text = xcalloc((size_t)n, sizeof(float *)),
                       .view_image = xcalloc((size_t)n, sizeof(float *)), .view_params = xcalloc((size_t)n, sizeof(float *))};
    loader_batch batch;
    int rc;
    while ((rc = loader_next(l, &batch)) == 1)
        if ((rc = builder_add(&b, &batch)) != 0) break;
    if (rc == 0) rc = builder_flush(&b, n);
    for (int i = 0; i < n; i++) builder_release(&b, i);
    free(b.image), free(b.text), free(b.view_image), free(b.view_params);
    loader_free(l);
    return rc ? -1 : 0;
}

// ---- opening ---------------------------------------------------------------------------------

struct distill_cache {
    int n_shards, dim, k;            // k: stored views per sample (the first file's)
    const float **view_image, **views;  // (n_shards) (n K, E) and (n K, VIEW_FLOATS) when k > 0
    st_file **files;                 // (n_shards)
    const float **image, **text;     // (n_shards) rows inside the mapped files
    double logit_scale;
    distill_teacher_id id;           // of the first file
};

static const char *meta(const st_file *f, const char *key) {
    const char *v = st_metadata(f, key);
    return v ? v : "";
}

static int read_teacher_id(const st_file *f, distill_teacher_id *id) {
    memset(id, 0, sizeof *id);
    const char *config = st_metadata(f, "teacher.config");
    if (!config) return err_set("%s: no teacher identity (\"teacher.config\")", st_path(f));
    id->config = xstrdup(config);
    snprintf(id->name, sizeof id->name, "%s", meta(f, "teacher.name"));
    snprintf(id->weights, sizeof id->weights, "%s", meta(f, "teacher.weights"));
    id->weights_crc32 = (uint32_t)strtoul(meta(f, "teacher.weights_crc32"), NULL, 16);
    id->weights_bytes = strtoll(meta(f, "teacher.weights_bytes"), NULL, 10);
    return 0;
}

// The file's teacher against the expected one (or the first file's).
static int check_teacher(distill_cache *c, const st_file *f, const distill_teacher_id *expect, const char *first_path) {
    distill_teacher_id id;
    if (read_teacher_id(f, &id) != 0) return -1;
    int rc = 0;
    const distill_teacher_id *want = expect ? expect : c->id.config ? &c->id : NULL;
    if (want && !same_teacher(&id, want)) {
        char got[640], other[640];  // two names of up to 255 bytes and the numbers
        describe_teacher(&id, got, sizeof got);
        describe_teacher(want, other, sizeof other);
        rc = expect ? err_set("%s: stored targets of %s, but the distillation teacher is %s", st_path(f), got, other)
                    : err_set("%s: stored targets of %s, but %s holds those of %s", st_path(f), got, first_path, other);
    }
    if (rc == 0 && !c->id.config) c->id = id;
    else distill_teacher_id_free(&id);
    return rc;
}

static int check_shard(const st_file *f, const char *shard_path) {
    shard_identity si;
    if (shard_identity_read(shard_path, &si) != 0) return -1;
    char hash[32];
    snprintf(hash, sizeof hash, "%016" PRIx64, si.keys_hash);
    const char *stored_count = meta(f, "shard.num_samples"), *stored_hash = meta(f, "shard.keys_fnv1a");
    if (strtoll(stored_count, NULL, 10) == si.samples && !strcmp(stored_hash, hash)) return 0;
    return err_set("%s: stored targets of shard %s (%s samples, keys hash %s), but the training shard is %s (%" PRId64
                   " samples, keys hash %s)",
                   st_path(f), meta(f, "shard.path"), stored_count, stored_hash, shard_path, si.samples, hash);
}

static const float *rows_of(const st_file *f, const char *name, int64_t n, int *dim) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_DTYPE_F32 || t->ndim != 2 || t->shape[0] != n || (*dim && t->shape[1] != *dim)) {
        err_set("%s: '%s' is missing or not an F32 matrix of %" PRId64 " rows (one per sample of the shard)%s", st_path(f),
                name, n, *dim ? " as wide as the other files'" : "");
        return NULL;
    }
    *dim = (int)t->shape[1];
    const float *v = t->data;
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(v[i])) {
            err_set("%s: '%s' row %" PRId64 " is not finite", st_path(f), name, i / t->shape[1]);
            return NULL;
        }
    return v;
}

static int check_format(const st_file *f) {
    if (strcmp(meta(f, "clipc.format"), DISTILL_CACHE_FORMAT) != 0)
        return err_set("%s: not a clipc distillation cache file (no \"clipc.format\": \"" DISTILL_CACHE_FORMAT "\")",
                       st_path(f));
    int version = atoi(meta(f, "clipc.version"));
    if (version < 1 || version > DISTILL_CACHE_VERSION)
        return err_set("%s: version %s, this build reads versions 1 to %d", st_path(f), meta(f, "clipc.version"),
                       DISTILL_CACHE_VERSION);
    return 0;
}

static int read_scale(distill_cache *c, const st_file *f) {
    const st_tensor *t = st_find(f, "teacher.logit_scale");
    if (!t || t->dtype != ST_DTYPE_F32 || t->numel != 1 || !isfinite(*(const float *)t->data))
        return err_set("%s: 'teacher.logit_scale' is missing, not one F32 or not finite", st_path(f));
    c->logit_scale = *(const float *)t->data;
    return 0;
}

// The stored views of a file (version 2; version 1 has none): K as the first file's, the crops
// inside the image's bounds (non-negative integers), the orders permutations.
static int read_views(distill_cache *c, const st_file *f, int s, int64_t n) {
    const char *count = st_metadata(f, "views.count");
    int k = count ? atoi(count) : 0;
    if (k < 0) return err_set("%s: views.count %s is negative", st_path(f), count);
    if (s == 0) c->k = k;
    if (k != c->k)
        return err_set("%s: %d stored views per sample, but %s has %d", st_path(f), k, st_path(c->files[0]), c->k);
    if (k == 0) return 0;
    int dim = c->dim;
    if (!(c->view_image[s] = rows_of(f, "view_image_features", n * k, &dim))) return -1;
    const st_tensor *t = st_find(f, "views");
    if (!t || t->dtype != ST_DTYPE_F32 || t->ndim != 2 || t->shape[0] != n * k || t->shape[1] != VIEW_FLOATS)
        return err_set("%s: 'views' is missing or not an F32 (%" PRId64 ", %d) matrix", st_path(f), n * k, VIEW_FLOATS);
    const float *v = t->data;
    for (int64_t r = 0; r < n * k; r++) {
        const float *row = v + r * VIEW_FLOATS;
        int seen = 0;
        for (int i = 0; i < 4; i++) seen |= row[4 + i] >= 0 && row[4 + i] < 4 ? 1 << (int)row[4 + i] : 0;
        for (int i = 0; i < 4; i++)
            if (!(row[i] >= 0 && row[i] < 1e7f && row[i] == floorf(row[i])) || (i >= 2 && row[i] == 0)) seen = 0;
        if (seen != 15) return err_set("%s: 'views' row %" PRId64 " is not a view (crop box, order)", st_path(f), r);
    }
    c->views[s] = v;
    return 0;
}

static int open_side_file(distill_cache *c, const char *dir, const loader *l, int s, const distill_teacher_id *expect) {
    char path[PATH_CAP];
    side_path(dir, loader_shard_path(l, s), path, sizeof path);
    st_file *f = c->files[s] = st_open(path);
    if (!f) return err_prefix("stored teacher targets of shard %s ('clipc distill-cache' makes them)", loader_shard_path(l, s));
    char first[PATH_CAP] = "";
    if (s > 0) snprintf(first, sizeof first, "%s", st_path(c->files[0]));
    if (check_format(f) || check_teacher(c, f, expect, first) || check_shard(f, loader_shard_path(l, s))) return -1;
    int64_t n = loader_shard_size(l, s);
    if (!(c->image[s] = rows_of(f, "image_features", n, &c->dim)) || !(c->text[s] = rows_of(f, "text_features", n, &c->dim)))
        return -1;
    return read_scale(c, f) || read_views(c, f, s, n) ? -1 : 0;
}

distill_cache *distill_cache_open(const char *dir, const loader *l, const distill_teacher_id *expect) {
    if (check_unique_names(l) != 0) return NULL;
    distill_cache *c = xcalloc(1, sizeof *c);
    c->n_shards = loader_num_shards(l);
    c->files = xcalloc((size_t)c->n_shards, sizeof(st_file *));
    c->image = xcalloc((size_t)c->n_shards, sizeof(float *));
    c->text = xcalloc((size_t)c->n_shards, sizeof(float *));
    c->view_image = xcalloc((size_t)c->n_shards, sizeof(float *));
    c->views = xcalloc((size_t)c->n_shards, sizeof(float *));
    for (int s = 0; s < c->n_shards; s++)
        if (open_side_file(c, dir, l, s, expect) != 0) {
            distill_cache_close(c);
            return NULL;
        }
    return c;
}

void distill_cache_close(distill_cache *c) {
    if (!c) return;
    for (int s = 0; s < c->n_shards; s++) st_close(c->files[s]);
    free(c->files), free(c->image), free(c->text), free(c->view_image), free(c->views);
    distill_teacher_id_free(&c->id);
    free(c);
}

int distill_cache_dim(const distill_cache *c) { return c->dim; }
double distill_cache_logit_scale(const distill_cache *c) { return c->logit_scale; }
const distill_teacher_id *distill_cache_teacher(const distill_cache *c) { return &c->id; }

void distill_cache_rows(const distill_cache *c, const int32_t *shards, const int64_t *indices, const int32_t *views,
                        int64_t n, float *image, float *text) {
    size_t row = (size_t)c->dim;
    for (int64_t i = 0; i < n; i++) {
        size_t at = (size_t)indices[i] * row;
        const float *from = c->image[shards[i]] + at;
        if (views && views[i] >= 0 && c->k > 0) {
            CLIPC_ASSERT(views[i] < c->k);
            from = c->view_image[shards[i]] + ((size_t)indices[i] * (size_t)c->k + (size_t)views[i]) * row;
        }
        memcpy(image + (size_t)i * row, from, row * sizeof(float));
        memcpy(text + (size_t)i * row, c->text[shards[i]] + at, row * sizeof(float));
    }
}

int distill_cache_views(const distill_cache *c) { return c->k; }

void distill_cache_view(const distill_cache *c, int32_t shard, int64_t index, int k, loader_view *out) {
    view_of_row(c->views[shard] + ((size_t)index * (size_t)c->k + (size_t)k) * VIEW_FLOATS, out);
}

int distill_cache_pick(void *ctx, int32_t shard, int64_t index, uint64_t draw, loader_view *out) {
    const distill_cache *c = ctx;
    int k = (int)(((unsigned __int128)draw * (unsigned)c->k) >> 64);
    distill_cache_view(c, shard, index, k, out);
    return k;
}

int distill_cache_same_views(const distill_cache *a, const distill_cache *b) {
    bool same = a->k == b->k && a->n_shards == b->n_shards;
    for (int s = 0; same && s < a->n_shards && a->k > 0; s++) {
        const st_tensor *t = st_find(a->files[s], "views");
        same = memcmp(a->views[s], b->views[s], (size_t)t->numel * sizeof(float)) == 0;
    }
    if (same) return 0;
    return err_set("%s and %s hold different stored views (%d and %d per sample, or other crops): build the caches of "
                   "an ensemble with the same --augmentations, --aug-cfg and --seed", st_path(a->files[0]),
                   st_path(b->files[0]), a->k, b->k);
}
