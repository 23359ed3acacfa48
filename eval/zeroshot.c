#include "eval/zeroshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "eval/embed.h"

#define TEXT_CHUNK 256

int zeroshot_read_lines(const char *path, char ***lines) {
    *lines = NULL;
    int n = fs_read_lines(path, lines);
    if (n == 0) {
        free(*lines);
        *lines = NULL;
        return err_set("%s: no lines", path);
    }
    return n;
}

void zeroshot_free_lines(char **lines, int n) { fs_free_lines(lines, n); }

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

tensor *zeroshot_encode_texts(const clip_model *m, const tokenizer *tok, const char *const *texts, int n) {
    int ctx = m->cfg.text.context_length;
    int64_t *ids = xmalloc((size_t)n * (size_t)ctx * sizeof(int64_t));
    if (tokenizer_encode_batch(tok, texts, n, ctx, ids) != 0) {
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
    tensor *emb = zeroshot_encode_texts(m, tok, (const char *const *)texts, n);  // (C*T, E)
    int64_t grouped[3] = {n_classes, n_templates, -1};
    tensor *classifier = tensor_keep(tensor_l2_normalize(tensor_mean_dim(tensor_reshape(emb, grouped, 3), 1, false), -1));
    tensor_scope_end();
    tensor_no_grad_end();
    zeroshot_free_lines(texts, n);
    return classifier;
}

int zeroshot_add_batch(const clip_model *m, const tensor *classifier, const loader_batch *b, metrics_classes *counts) {
    int H = m->cfg.vision.image_size;
    int64_t shape[4] = {b->n, 3, H, H};
    tensor *images = tensor_to_device(tensor_from_host(b->images, shape, 4, TENSOR_F32, false), m->device, false);
    tensor *logits = tensor_matmul(clip_encode_image(m, images, true), tensor_transpose(classifier, 0, 1));
    size_t n_scores = (size_t)b->n * (size_t)counts->n_classes;
    float *scores = xmalloc(n_scores * sizeof(float));
    int rc = tensor_to_host(tensor_to_dtype(logits, TENSOR_F32), scores, n_scores * sizeof(float));
    if (rc == 0) rc = metrics_classes_add(counts, scores, b->n, b->labels, b->keys);
    free(scores);
    return rc;
}

int zeroshot_evaluate_counts(const clip_model *m, const tensor *classifier, loader *l, metrics_classes *counts,
                             const metrics_progress *progress) {
    if (tensor_size(classifier, 0) != counts->n_classes)
        return err_set("zero-shot evaluation: the classifier has %lld classes, the counts %d",
                       (long long)tensor_size(classifier, 0), counts->n_classes);
    loader_batch b;
    int rc;
    tensor_no_grad_begin();
    while ((rc = loader_next(l, &b)) == 1) {
        tensor_scope_begin();
        rc = zeroshot_add_batch(m, classifier, &b, counts);
        tensor_scope_end();
        if (rc != 0) break;
        if (progress && progress->batch_done) progress->batch_done(progress->ctx, b.n);
    }
    tensor_no_grad_end();
    return rc < 0 ? -1 : 0;
}

int zeroshot_evaluate(const clip_model *m, const tensor *classifier, loader *l, zeroshot_result *out) {
    memset(out, 0, sizeof *out);
    metrics_classes counts;
    metrics_classes_init(&counts, (int)tensor_size(classifier, 0));
    int rc = zeroshot_evaluate_counts(m, classifier, l, &counts, NULL);
    if (rc == 0 && counts.n == 0) rc = err_set("zero-shot evaluation: the dataset gave no images");
    out->n = counts.n;
    out->n_classes = counts.n_classes;
    out->top1 = metrics_classes_topk(&counts, 1);
    out->top5 = metrics_classes_topk(&counts, 5);
    out->confusion = counts.confusion;
    counts.confusion = NULL;
    metrics_classes_free(&counts);
    return rc;
}

void zeroshot_result_free(zeroshot_result *r) {
    free(r->confusion);
    r->confusion = NULL;
}

tensor *zeroshot_classifier_from_file(const clip_model *m, const tokenizer *tok, const char *const *class_names,
                                      int n_classes, const char *templates_file) {
    char **templates = NULL;
    int n_templates = zeroshot_read_lines(templates_file, &templates);
    if (n_templates < 0) return NULL;
    tensor *classifier = zeroshot_classifier(m, tok, class_names, n_classes, (const char *const *)templates, n_templates);
    zeroshot_free_lines(templates, n_templates);
    return classifier;
}

int zeroshot_evaluate_set(const clip_model *m, const tokenizer *tok, loader *l, const char *data, const char *names_file,
                          const char *templates_file, char ***names, metrics_classes *counts,
                          const metrics_progress *progress) {
    memset(counts, 0, sizeof *counts);
    int n = zeroshot_class_names(names_file, l, data, names);
    if (n < 0) return -1;
    tensor *classifier = zeroshot_classifier_from_file(m, tok, (const char *const *)*names, n, templates_file);
    metrics_classes_init(counts, n);
    int rc = classifier ? zeroshot_evaluate_counts(m, classifier, l, counts, progress) : -1;
    tensor_free(classifier);
    if (rc == 0) return n;
    metrics_classes_free(counts);
    zeroshot_free_lines(*names, n);
    *names = NULL;
    return -1;
}

// probs (n, C) = softmax(exp(logit_scale) * features @ classifier^T), features (n, E) on the host.
static int label_probabilities(const clip_model *m, const tensor *classifier, const float *features, int n, int C,
                               float *probs) {
    int64_t shape[2] = {n, m->cfg.embed_dim};
    double log_scale = 0;
    tensor_no_grad_begin();
    tensor_scope_begin();
    int rc = tensor_item(m->logit_scale, &log_scale);
    tensor *f = tensor_to_device(tensor_from_host(features, shape, 2, TENSOR_F32, false), m->device, false);
    tensor *logits = tensor_mul_scalar(tensor_matmul(f, tensor_transpose(classifier, 0, 1)), exp(log_scale));
    if (rc == 0)
        rc = tensor_to_host(tensor_to_dtype(tensor_softmax(logits, 1), TENSOR_F32), probs,
                            (size_t)n * (size_t)C * sizeof(float));
    tensor_scope_end();
    tensor_no_grad_end();
    return rc;
}

int zeroshot_classify_files(const clip_model *m, const tokenizer *tok, const char *const *labels, int n_labels,
                            const char *templates_file, char *const *files, int n_files, int batch_size, float *probs) {
    if (n_labels < 1 || n_files < 1 || batch_size < 1)
        return err_set("zero-shot classification: %d labels, %d files, batch size %d (each must be at least 1)", n_labels,
                       n_files, batch_size);
    const char *one[] = {ZEROSHOT_DEFAULT_TEMPLATE};
    tensor *classifier = templates_file ? zeroshot_classifier_from_file(m, tok, labels, n_labels, templates_file)
                                        : zeroshot_classifier(m, tok, labels, n_labels, one, 1);
    if (!classifier) return -1;
    float *features = xmalloc((size_t)n_files * (size_t)m->cfg.embed_dim * sizeof(float));
    int rc = eval_embed_image_files(m, files, n_files, batch_size, features);
    if (rc == 0) rc = label_probabilities(m, classifier, features, n_files, n_labels, probs);
    free(features);
    tensor_free(classifier);
    return rc;
}

int zeroshot_class_names(const char *file, const loader *l, const char *data, char ***names) {
    *names = NULL;
    int in_data = loader_num_classes(l);
    if (in_data == 0) return err_set("%s: no labels (zero-shot needs labelled shards)", data);
    if (!file) {
        *names = xmalloc((size_t)in_data * sizeof(char *));
        for (int c = 0; c < in_data; c++) (*names)[c] = xstrdup(loader_class_name(l, c));
        return in_data;
    }
    int n = zeroshot_read_lines(file, names);
    if (n >= 0 && n != in_data) {
        zeroshot_free_lines(*names, n);
        *names = NULL;
        return err_set("%s: %d class names, the shards of %s have %d classes", file, n, data, in_data);
    }
    return n;
}

static cJSON *class_json(const metrics_classes *counts, const char *name, int c, double accuracy) {
    int64_t total = 0;
    for (int p = 0; p < counts->n_classes; p++) total += counts->confusion[(int64_t)c * counts->n_classes + p];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "class", name);
    cJSON_AddNumberToObject(e, "n", (double)total);
    cJSON_AddItemToObject(e, "accuracy", total ? cJSON_CreateNumber(accuracy) : cJSON_CreateNull());
    return e;
}

void zeroshot_counts_json(cJSON *obj, const metrics_classes *counts, const char *const *class_names) {
    int C = counts->n_classes;
    cJSON_AddNumberToObject(obj, "n", (double)counts->n);
    cJSON_AddNumberToObject(obj, "n_classes", C);
    cJSON_AddNumberToObject(obj, "top1", metrics_classes_topk(counts, 1));
    cJSON_AddNumberToObject(obj, "top5", metrics_classes_topk(counts, 5));
    cJSON_AddNumberToObject(obj, "mean_per_class_accuracy", metrics_classes_mean_per_class(counts));
    double *acc = xmalloc((size_t)C * sizeof(double));
    metrics_classes_per_class(counts, acc);
    cJSON *per_class = cJSON_AddArrayToObject(obj, "per_class"), *confusion = cJSON_AddArrayToObject(obj, "confusion");
    for (int c = 0; c < C; c++) {
        cJSON *row = cJSON_CreateArray();
        for (int p = 0; p < C; p++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)counts->confusion[(int64_t)c * C + p]));
        cJSON_AddItemToArray(confusion, row);
        cJSON_AddItemToArray(per_class, class_json(counts, class_names[c], c, acc[c]));
    }
    free(acc);
}
