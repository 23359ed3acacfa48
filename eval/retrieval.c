#include "eval/retrieval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "eval/metrics.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// The queries of the chunk starting at begin: chunk_rows of them, or (chunk_rows 0) as many as
// keep (their true candidates) x N within RETRIEVAL_CHUNK_ELEMENTS, at least one.
static int64_t chunk_end(const int64_t *offsets, int64_t begin, int64_t Q, int64_t N, int64_t chunk_rows) {
    if (chunk_rows > 0) return min64(begin + chunk_rows, Q);
    int64_t end = begin + 1;
    while (end < Q && (offsets[end + 1] - offsets[begin]) * N <= RETRIEVAL_CHUNK_ELEMENTS) end++;
    return end;
}

// The chunk's scores on the host, ranked by eval/metrics.h's loop (the CPU: one pass, no copy back).
static int rank_chunk_on_host(const tensor *scores, const int64_t *offsets, const int64_t *targets, int64_t begin,
                              int64_t end, int64_t *ranks) {
    int64_t rows = end - begin, N = tensor_size(scores, 1);
    float *s = xmalloc((size_t)(rows * N) * sizeof(float));
    int rc = tensor_to_host(tensor_to_dtype(scores, TENSOR_F32), s, (size_t)(rows * N) * sizeof(float));
    if (rc == 0) metrics_rank_rows(s, rows, N, offsets + begin, targets, ranks + begin);
    free(s);
    return rc;
}

// The same on a GPU: the ranks of the true candidates are computed there and only they come back;
// each query keeps the best of its own. pairs holds (local row, candidate) of every true candidate.
static int rank_chunk_on_device(const tensor *scores, const int64_t *offsets, const int64_t *targets, int64_t begin,
                                int64_t end, int64_t *pairs, int64_t *ranks) {
    int64_t first = offsets[begin], K = offsets[end] - first, n_pairs = 2 * K;
    for (int64_t q = begin; q < end; q++)
        for (int64_t k = offsets[q]; k < offsets[q + 1]; k++) pairs[k - first] = q - begin;
    memcpy(pairs + K, targets + first, (size_t)K * sizeof(int64_t));
    tensor *p = tensor_to_device(tensor_from_host(pairs, &n_pairs, 1, TENSOR_I64, true), tensor_get_device(scores),
                                 true);
    tensor *r = tensor_rank_in_rows(tensor_to_dtype(scores, TENSOR_F32), tensor_slice(p, 0, 0, K),
                                    tensor_slice(p, 0, K, 2 * K));
    int rc = tensor_to_host(r, pairs, (size_t)K * sizeof(int64_t));
    for (int64_t q = begin; q < end && rc == 0; q++) {
        ranks[q] = INT64_MAX;
        for (int64_t k = offsets[q]; k < offsets[q + 1]; k++)
            if (pairs[k - first] < ranks[q]) ranks[q] = pairs[k - first];
    }
    return rc;
}

// Scores queries [begin, end) against every candidate and ranks them where the scores are.
static int rank_chunk(const tensor *queries, const tensor *candidates_t, const int64_t *offsets, const int64_t *targets,
                      int64_t begin, int64_t end, int64_t *pairs, int64_t *ranks) {
    tensor_scope_begin();
    tensor *scores = tensor_matmul(tensor_slice(queries, 0, begin, end), candidates_t);  // (rows, N)
    int rc = tensor_get_device(queries).type == TENSOR_DEVICE_CPU
                 ? rank_chunk_on_host(scores, offsets, targets, begin, end, ranks)
                 : rank_chunk_on_device(scores, offsets, targets, begin, end, pairs, ranks);
    tensor_scope_end();
    return rc;
}

int retrieval_ranks(const tensor *queries, const tensor *candidates, const int64_t *offsets,
                    const int64_t *targets, int64_t chunk_rows, int64_t *ranks) {
    if (!queries || !candidates) return -1;
    int64_t Q = tensor_size(queries, 0), N = tensor_size(candidates, 0);
    if (Q == 0) return 0;
    if (N == 0) return err_set("retrieval: no candidates to rank");
    int64_t *pairs = xmalloc((size_t)(2 * offsets[Q]) * sizeof(int64_t));
    int rc = 0;
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *candidates_t = tensor_transpose(candidates, 0, 1);  // (E, N)
    for (int64_t begin = 0, end; begin < Q && rc == 0; begin = end) {
        end = chunk_end(offsets, begin, Q, N, chunk_rows);
        rc = rank_chunk(queries, candidates_t, offsets, targets, begin, end, pairs, ranks);
    }
    tensor_scope_end();
    tensor_no_grad_end();
    free(pairs);
    return rc;
}

static void summarize(const int64_t *ranks, int64_t n, retrieval_direction *d) {
    d->n_queries = n;
    for (int k = 0; k < RETRIEVAL_N_K; k++) d->recall[k] = metrics_recall_at(ranks, n, RETRIEVAL_K[k]);
    d->mean_rank = metrics_mean_rank(ranks, n);
    d->median_rank = metrics_median_rank(ranks, n);
}

// The texts of each image as CSR: image i's texts are targets[offsets[i] .. offsets[i + 1]), in order.
static int texts_by_image(const int64_t *text_image, int64_t T, int64_t I, int64_t *offsets, int64_t *targets) {
    memset(offsets, 0, (size_t)(I + 1) * sizeof(int64_t));
    for (int64_t t = 0; t < T; t++) {
        if (text_image[t] < 0 || text_image[t] >= I)
            return err_set("retrieval: text %lld refers to image %lld of %lld", (long long)t, (long long)text_image[t],
                           (long long)I);
        offsets[text_image[t] + 1]++;
    }
    for (int64_t i = 0; i < I; i++) {
        if (offsets[i + 1] == 0) return err_set("retrieval: image %lld has no text", (long long)i);
        offsets[i + 1] += offsets[i];
    }
    int64_t *fill = xmalloc((size_t)I * sizeof(int64_t));
    memcpy(fill, offsets, (size_t)I * sizeof(int64_t));
    for (int64_t t = 0; t < T; t++) targets[fill[text_image[t]]++] = t;
    free(fill);
    return 0;
}

int retrieval_evaluate(const tensor *image_features, const tensor *text_features, const int64_t *text_image,
                       int64_t chunk_rows, retrieval_result *out) {
    memset(out, 0, sizeof *out);
    if (!image_features || !text_features) return -1;
    int64_t I = tensor_size(image_features, 0), T = tensor_size(text_features, 0);
    if (I == 0 || T == 0) return err_set("retrieval: no images or no texts");
    int64_t *offsets = xmalloc((size_t)(I > T ? I + 1 : T + 1) * sizeof(int64_t));
    int64_t *targets = xmalloc((size_t)T * sizeof(int64_t));
    int64_t *ranks = xmalloc((size_t)(I > T ? I : T) * sizeof(int64_t));
    int rc = texts_by_image(text_image, T, I, offsets, targets);
    if (rc == 0) rc = retrieval_ranks(image_features, text_features, offsets, targets, chunk_rows, ranks);
    if (rc == 0) summarize(ranks, I, &out->image_to_text);
    for (int64_t t = 0; t <= T; t++) offsets[t] = t;
    if (rc == 0) rc = retrieval_ranks(text_features, image_features, offsets, text_image, chunk_rows, ranks);
    if (rc == 0) summarize(ranks, T, &out->text_to_image);
    out->n_images = I, out->n_texts = T;
    free(offsets);
    free(targets);
    free(ranks);
    return rc;
}

// ---- grouping samples by key -----------------------------------------------------------------

// Open-addressing map from key to image index.
typedef struct {
    char **keys;
    int64_t *values;
    size_t cap, n;  // cap is a power of two
} key_map;

static uint64_t hash_key(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t key_map_slot(const key_map *km, const char *key) {
    size_t i = (size_t)hash_key(key) & (km->cap - 1);
    while (km->keys[i] && strcmp(km->keys[i], key)) i = (i + 1) & (km->cap - 1);
    return i;
}

static void key_map_grow(key_map *km) {
    key_map bigger = {xcalloc(km->cap * 2, sizeof(char *)), xmalloc(km->cap * 2 * sizeof(int64_t)), km->cap * 2, km->n};
    for (size_t i = 0; i < km->cap; i++)
        if (km->keys[i]) {
            size_t j = key_map_slot(&bigger, km->keys[i]);
            bigger.keys[j] = km->keys[i], bigger.values[j] = km->values[i];
        }
    free(km->keys);
    free(km->values);
    *km = bigger;
}

// The index of key, adding it with value next when absent (*added tells which).
static int64_t key_map_get_or_add(key_map *km, const char *key, int64_t next, bool *added) {
    if (2 * (km->n + 1) > km->cap) key_map_grow(km);
    size_t i = key_map_slot(km, key);
    *added = km->keys[i] == NULL;
    if (*added) km->keys[i] = xstrdup(key), km->values[i] = next, km->n++;
    return km->values[i];
}

static void key_map_free(key_map *km) {
    for (size_t i = 0; i < km->cap; i++) free(km->keys[i]);
    free(km->keys);
    free(km->values);
}

// ---- encoding from the loader ----------------------------------------------------------------

typedef struct {
    tensor **parts;
    int n, cap;
} tensor_list;

static void tensor_list_push(tensor_list *l, tensor *t) {
    if (l->n == l->cap) l->parts = xrealloc(l->parts, (size_t)(l->cap = l->cap ? 2 * l->cap : 16) * sizeof(tensor *));
    l->parts[l->n++] = t;
}

static void tensor_list_free(tensor_list *l) {
    for (int i = 0; i < l->n; i++) tensor_free(l->parts[i]);
    free(l->parts);
}

typedef struct {
    key_map images;
    int64_t *text_image;  // (texts)
    int64_t n_texts, text_cap;
    tensor_list image_features, text_features;
} retrieval_state;

// Encodes the batch's texts and the images of keys not seen before.
static int encode_batch(const clip_model *m, const loader_batch *b, retrieval_state *s, float *new_images) {
    int H = m->cfg.vision.image_size;
    size_t image_floats = 3 * (size_t)H * (size_t)H;
    int64_t n_new = 0;
    if (s->n_texts + b->n > s->text_cap)
        s->text_image = xrealloc(s->text_image, (size_t)(s->text_cap = 2 * (s->n_texts + b->n)) * sizeof(int64_t));
    for (int i = 0; i < b->n; i++) {
        bool added;
        int64_t image = key_map_get_or_add(&s->images, b->keys[i], (int64_t)s->images.n, &added);
        if (added) memcpy(new_images + n_new++ * image_floats, b->images + i * image_floats, image_floats * sizeof(float));
        s->text_image[s->n_texts++] = image;
    }
    tensor_scope_begin();
    tensor *texts = clip_encode_text_host(m, b->tokens, b->n, true);
    tensor *images = NULL;
    if (n_new) images = clip_encode_image(m, clip_images_to_device(m, new_images, n_new), true);
    int rc = texts && (images || !n_new) ? 0 : -1;
    if (rc == 0) tensor_list_push(&s->text_features, tensor_keep(texts));
    if (rc == 0 && images) tensor_list_push(&s->image_features, tensor_keep(images));
    tensor_scope_end();
    return rc;
}

int retrieval_evaluate_loader(const clip_model *m, loader *l, int64_t chunk_rows, retrieval_result *out,
                              const metrics_progress *progress) {
    memset(out, 0, sizeof *out);
    retrieval_state s = {.images = {xcalloc(1024, sizeof(char *)), xmalloc(1024 * sizeof(int64_t)), 1024, 0}};
    float *new_images = NULL;
    loader_batch b;
    int rc;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        int H = m->cfg.vision.image_size;
        if (!new_images) new_images = xmalloc((size_t)b.n * 3 * (size_t)H * (size_t)H * sizeof(float));
        if ((rc = encode_batch(m, &b, &s, new_images)) != 0) break;
        if (progress && progress->batch_done) progress->batch_done(progress->ctx, b.n);
    }
    if (rc == 0 && s.n_texts == 0) rc = err_set("retrieval: the dataset gave no samples");
    if (rc == 0) {
        tensor_scope_begin();
        tensor *images = tensor_cat((const tensor *const *)s.image_features.parts, s.image_features.n, 0);
        tensor *texts = tensor_cat((const tensor *const *)s.text_features.parts, s.text_features.n, 0);
        rc = retrieval_evaluate(images, texts, s.text_image, chunk_rows, out);
        tensor_scope_end();
    }
    tensor_no_grad_end();
    free(new_images);
    free(s.text_image);
    tensor_list_free(&s.image_features);
    tensor_list_free(&s.text_features);
    key_map_free(&s.images);
    return rc < 0 ? -1 : 0;
}

static cJSON *direction_json(const retrieval_direction *d) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "n_queries", (double)d->n_queries);
    for (int k = 0; k < RETRIEVAL_N_K; k++) {
        char key[16];
        snprintf(key, sizeof key, "R@%lld", (long long)RETRIEVAL_K[k]);
        cJSON_AddNumberToObject(j, key, d->recall[k]);
    }
    cJSON_AddNumberToObject(j, "mean_rank", d->mean_rank);
    cJSON_AddNumberToObject(j, "median_rank", d->median_rank);
    return j;
}

void retrieval_result_json(cJSON *obj, const retrieval_result *r) {
    cJSON_AddNumberToObject(obj, "n_images", (double)r->n_images);
    cJSON_AddNumberToObject(obj, "n_texts", (double)r->n_texts);
    cJSON_AddItemToObject(obj, "image_to_text", direction_json(&r->image_to_text));
    cJSON_AddItemToObject(obj, "text_to_image", direction_json(&r->text_to_image));
}
