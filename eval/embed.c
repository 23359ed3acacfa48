#include "eval/embed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "image/image.h"
#include "eval/zeroshot.h"

loader *eval_loader_open(const session *s, const char *data, int batch_size, int workers, bool with_tokens) {
    loader_config lc;
    loader_config_init(&lc, data, batch_size, s->model->cfg.vision.image_size, false);
    lc.preprocess = s->model->cfg.preprocess;
    lc.workers = workers;
    lc.tok = with_tokens ? s->tok : NULL;
    lc.context_length = s->model->cfg.text.context_length;
    return loader_init(&lc);
}

int eval_image_load(const char *path, const clip_config *cfg, float *out) {
    size_t size = 0;
    uint8_t *bytes = fs_read_all(path, &size);
    if (!bytes) return -1;
    const image_preprocess *pp = &cfg->preprocess;
    size_t plane = (size_t)cfg->vision.image_size * (size_t)cfg->vision.image_size;
    uint8_t *rgb = xmalloc(3 * plane);
    int rc = image_decode_eval(bytes, size, pp, cfg->vision.image_size, rgb);
    if (rc == 0) {
        for (size_t p = 0; p < plane; p++)  // as the loader normalizes
            for (int c = 0; c < 3; c++) out[c * plane + p] = ((float)rgb[3 * p + c] / 255.0f - pp->mean[c]) / pp->std[c];
    } else {
        err_prefix("%s", path);
    }
    free(rgb);
    free(bytes);
    return rc;
}

int eval_embed_images(const clip_model *m, const float *images, int n, float *features) {
    size_t nbytes = (size_t)n * (size_t)m->cfg.embed_dim * sizeof(float);
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *x = clip_images_to_device(m, images, n);
    int rc = tensor_to_host(tensor_to_dtype(clip_encode_image(m, x, true), TENSOR_F32), features, nbytes);
    tensor_scope_end();
    tensor_no_grad_end();
    return rc;
}

int eval_embed_image_files(const clip_model *m, char *const *paths, int n, int batch_size, float *features) {
    int S = m->cfg.vision.image_size, E = m->cfg.embed_dim;
    size_t image_floats = 3 * (size_t)S * (size_t)S;
    float *batch = xmalloc((size_t)batch_size * image_floats * sizeof(float));
    int rc = 0;
    for (int begin = 0; begin < n && rc == 0; begin += batch_size) {
        int rows = n - begin < batch_size ? n - begin : batch_size;
        for (int i = 0; i < rows && rc == 0; i++) rc = eval_image_load(paths[begin + i], &m->cfg, batch + i * image_floats);
        if (rc == 0) rc = eval_embed_images(m, batch, rows, features + (size_t)begin * (size_t)E);
    }
    free(batch);
    return rc;
}

int eval_embed_texts(const clip_model *m, const tokenizer *tok, const char *const *texts, int n, float *features) {
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *emb = tensor_to_dtype(zeroshot_encode_texts(m, tok, texts, n), TENSOR_F32);  // (n, E)
    int rc = tensor_to_host(emb, features, (size_t)n * (size_t)m->cfg.embed_dim * sizeof(float));
    tensor_scope_end();
    tensor_no_grad_end();
    return rc;
}

void eval_embeddings_init(eval_embeddings *e, int dim) { *e = (eval_embeddings){.dim = dim}; }

void eval_embeddings_free(eval_embeddings *e) {
    for (int64_t i = 0; i < e->n; i++) free(e->keys[i]);
    free(e->keys);
    free(e->rows);
    *e = (eval_embeddings){.dim = e->dim};
}

static void embeddings_reserve(eval_embeddings *e, int64_t more) {
    if (e->n + more <= e->cap) return;
    e->cap = 2 * (e->n + more);
    e->rows = xrealloc(e->rows, (size_t)e->cap * (size_t)e->dim * sizeof(float));
    e->keys = xrealloc(e->keys, (size_t)e->cap * sizeof(char *));
}

static float *embeddings_end(const eval_embeddings *e) { return e->rows + e->n * e->dim; }

int eval_embed_shards(const session *s, const char *data, int batch_size, int workers, eval_embeddings *out) {
    loader *l = eval_loader_open(s, data, batch_size, workers, false);
    if (!l) return -1;
    loader_batch b;
    int rc;
    while ((rc = loader_next(l, &b)) == 1) {
        embeddings_reserve(out, b.n);
        if ((rc = eval_embed_images(s->model, b.images, b.n, embeddings_end(out))) != 0) break;
        for (int i = 0; i < b.n; i++) out->keys[out->n++] = xstrdup(b.keys[i]);
    }
    loader_free(l);
    return rc < 0 ? err_prefix("%s", data) : 0;
}

int eval_embed_files(const clip_model *m, char *const *paths, int n, int batch_size, eval_embeddings *out) {
    embeddings_reserve(out, n);
    if (eval_embed_image_files(m, paths, n, batch_size, embeddings_end(out))) return -1;
    for (int i = 0; i < n; i++) out->keys[out->n++] = xstrdup(paths[i]);
    return 0;
}

int eval_embed_text_file(const session *s, const char *file, eval_embeddings *out) {
    char **lines = NULL;
    int n = zeroshot_read_lines(strcmp(file, "-") ? file : "/dev/stdin", &lines);
    if (n < 0) return -1;
    embeddings_reserve(out, n);
    int rc = eval_embed_texts(s->model, s->tok, (const char *const *)lines, n, embeddings_end(out));
    if (rc != 0) {
        zeroshot_free_lines(lines, n);
        return -1;
    }
    for (int i = 0; i < n; i++) out->keys[out->n++] = lines[i];
    free(lines);
    return 0;
}
