#include "eval/zeroshot.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#define TEXT_CHUNK 256

int zeroshot_read_lines(const char *path, char ***lines) {
    FILE *f = fopen_checked(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    int n = 0, alloc = 0;
    char **out = NULL;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (n == alloc) out = xrealloc(out, (size_t)(alloc = alloc ? 2 * alloc : 16) * sizeof(char *));
        out[n++] = xstrdup(line);
    }
    free(line);
    fclose(f);
    if (n == 0) {
        free(out);
        return err_set("%s: no lines", path);
    }
    *lines = out;
    return n;
}

void zeroshot_free_lines(char **lines, int n) {
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

char *zeroshot_fill_template(const char *templ, const char *class_name) {
    const char *hole = strstr(templ, "{}");
    size_t hole_len = 2;
    if (!hole) hole = strstr(templ, "{c}"), hole_len = 3;
    if (!hole) return xstrdup(templ);
    size_t pre = (size_t)(hole - templ), name = strlen(class_name), post = strlen(hole + hole_len);
    char *out = xmalloc(pre + name + post + 1);
    memcpy(out, templ, pre);
    memcpy(out + pre, class_name, name);
    memcpy(out + pre + name, hole + hole_len, post + 1);
    return out;
}

// Normalized text embeddings (n, E) of n texts, encoded in chunks.
static tensor *encode_texts(const clip_model *m, const tokenizer *tok, char **texts, int n) {
    int ctx = m->cfg.text.context_length;
    int64_t *ids = xmalloc((size_t)n * (size_t)ctx * sizeof(int64_t));
    if (tokenizer_encode_batch(tok, (const char *const *)texts, n, ctx, ids) != 0) {
        free(ids);
        return NULL;
    }
    int n_chunks = (n + TEXT_CHUNK - 1) / TEXT_CHUNK;
    tensor **parts = xcalloc((size_t)n_chunks, sizeof(tensor *));
    for (int c = 0; c < n_chunks; c++) {
        int64_t begin = (int64_t)c * TEXT_CHUNK, rows = n - begin < TEXT_CHUNK ? n - begin : TEXT_CHUNK;
        int64_t shape[2] = {rows, ctx};
        tensor *host = tensor_from_host(ids + begin * ctx, shape, 2, TENSOR_I64, false);
        parts[c] = clip_encode_text(m, tensor_to_device(host, m->device, false), true);
    }
    tensor *all = tensor_cat((const tensor *const *)parts, n_chunks, 0);
    free(parts);
    free(ids);
    return all;
}

tensor *zeroshot_classifier(const clip_model *m, const tokenizer *tok, const char *const *class_names,
                            int n_classes, const char *const *templates, int n_templates) {
    int n = n_classes * n_templates;
    char **texts = xmalloc((size_t)n * sizeof(char *));
    for (int c = 0; c < n_classes; c++)
        for (int t = 0; t < n_templates; t++) texts[c * n_templates + t] = zeroshot_fill_template(templates[t], class_names[c]);
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *emb = encode_texts(m, tok, texts, n);  // (C*T, E)
    int64_t grouped[3] = {n_classes, n_templates, -1};
    tensor *classifier = tensor_keep(tensor_l2_normalize(tensor_mean_dim(tensor_reshape(emb, grouped, 3), 1, false), -1));
    tensor_scope_end();
    tensor_no_grad_end();
    zeroshot_free_lines(texts, n);
    return classifier;
}

// Adds one batch's predictions to the counts.
static int score_batch(const clip_model *m, const tensor *classifier, const loader_batch *b, int64_t *top1,
                       int64_t *top5, zeroshot_result *out) {
    int H = m->cfg.vision.image_size, C = out->n_classes, k = C < 5 ? C : 5;
    int64_t shape[4] = {b->n, 3, H, H};
    tensor *images = tensor_to_device(tensor_from_host(b->images, shape, 4, TENSOR_F32, false), m->device, false);
    tensor *logits = tensor_matmul(clip_encode_image(m, images, true), tensor_transpose(classifier, 0, 1));
    int64_t *pred = xmalloc((size_t)b->n * (size_t)k * sizeof(int64_t));
    int rc = tensor_to_host(tensor_topk_indices(logits, k, 1), pred, (size_t)b->n * (size_t)k * sizeof(int64_t));
    for (int i = 0; i < b->n && rc == 0; i++) {
        int label = b->labels[i];
        if (label < 0 || label >= C) {
            rc = err_set("sample '%s' has label %d outside the %d classes", b->keys[i], label, C);
            break;
        }
        *top1 += pred[i * k] == label;
        for (int j = 0; j < k; j++) *top5 += pred[i * k + j] == label;
        out->confusion[(int64_t)label * C + pred[i * k]]++;
    }
    free(pred);
    return rc;
}

int zeroshot_evaluate(const clip_model *m, const tensor *classifier, loader *l, zeroshot_result *out) {
    memset(out, 0, sizeof *out);
    out->n_classes = (int)tensor_size(classifier, 0);
    out->confusion = xcalloc((size_t)out->n_classes * (size_t)out->n_classes, sizeof(int64_t));
    int64_t top1 = 0, top5 = 0;
    loader_batch b;
    int rc;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        tensor_scope_begin();
        rc = score_batch(m, classifier, &b, &top1, &top5, out);
        tensor_scope_end();
        if (rc != 0) break;
        out->n += b.n;
    }
    tensor_no_grad_end();
    if (rc < 0) return -1;
    if (out->n == 0) return err_set("zero-shot evaluation: the dataset gave no images");
    out->top1 = (double)top1 / (double)out->n;
    out->top5 = (double)top5 / (double)out->n;
    return 0;
}

void zeroshot_result_free(zeroshot_result *r) {
    free(r->confusion);
    r->confusion = NULL;
}
