#include "finetune/head.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "model/safetensors.h"
#include "shim/tensor.h"

void linear_head_init(linear_head *h, int n_classes, int dim) {
    h->n_classes = n_classes;
    h->dim = dim;
    h->weight = xcalloc((size_t)n_classes * (size_t)dim, sizeof(float));
    h->bias = xcalloc((size_t)n_classes, sizeof(float));
}

void linear_head_free(linear_head *h) {
    free(h->weight);
    free(h->bias);
    h->weight = h->bias = NULL;
}

int linear_head_score(const linear_head *h, const float *x, const int32_t *y, int64_t n, double *accuracy,
                      double *log_loss) {
    if (n <= 0) return err_set("no samples to score the head on");
    int64_t *labels = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= h->n_classes) {
            free(labels);
            return err_set("sample %lld has label %d outside the head's %d classes", (long long)i, y[i], h->n_classes);
        }
        labels[i] = y[i];
    }
    int64_t xs[2] = {n, h->dim}, ws[2] = {h->n_classes, h->dim}, bs[1] = {h->n_classes}, ys[1] = {n};
    double correct = 0, loss = 0;
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *xt = tensor_to_dtype(tensor_from_host(x, xs, 2, TENSOR_F32, false), TENSOR_F64);
    tensor *w = tensor_to_dtype(tensor_from_host(h->weight, ws, 2, TENSOR_F32, false), TENSOR_F64);
    tensor *b = tensor_to_dtype(tensor_from_host(h->bias, bs, 1, TENSOR_F32, false), TENSOR_F64);
    tensor *yt = tensor_from_host(labels, ys, 1, TENSOR_I64, false);
    tensor *logits = tensor_linear(xt, w, b);
    int rc = tensor_item(tensor_sum(tensor_to_dtype(tensor_eq(tensor_argmax(logits, 1, false), yt), TENSOR_F64)), &correct);
    if (rc == 0) rc = tensor_item(tensor_cross_entropy(logits, yt), &loss);
    tensor_scope_end();
    tensor_no_grad_end();
    free(labels);
    if (rc != 0) return -1;
    if (accuracy) *accuracy = correct / (double)n;
    if (log_loss) *log_loss = loss;
    return 0;
}

static const char *weight_prefix(const char *kind) { return strcmp(kind, HEAD_KIND_PROBE) ? "head" : "probe"; }

int linear_head_save(const linear_head *h, const char *path, const char *kind, const char *const *class_names,
                     const char *config_json, const char *const *extra_metadata) {
    char wname[32], bname[32];
    snprintf(wname, sizeof wname, "%s.weight", weight_prefix(kind));
    snprintf(bname, sizeof bname, "%s.bias", weight_prefix(kind));
    int64_t ws[2] = {h->n_classes, h->dim}, bs[1] = {h->n_classes};
    cJSON *names = cJSON_CreateStringArray(class_names, h->n_classes);
    char *names_json = cJSON_PrintUnformatted(names);
    cJSON_Delete(names);
    st_writer *w = st_writer_init();
    int rc = st_writer_add(w, wname, ST_DTYPE_F32, ws, 2, h->weight);
    if (rc == 0) rc = st_writer_add(w, bname, ST_DTYPE_F32, bs, 1, h->bias);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.head", kind);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.classnames", names_json);
    if (rc == 0 && config_json) rc = st_writer_set_metadata(w, "clipc.config", config_json);
    for (int i = 0; rc == 0 && extra_metadata && extra_metadata[i]; i += 2)
        rc = st_writer_set_metadata(w, extra_metadata[i], extra_metadata[i + 1]);
    if (rc == 0) rc = st_writer_write(w, path);
    st_writer_free(w);
    free(names_json);
    return rc;
}

// The F32 tensor `name` of f with the given shape (ndim 1 or 2), copied into dst.
static int read_f32(const st_file *f, const char *name, int ndim, const int64_t *shape, float *dst) {
    const st_tensor *t = st_find(f, name);
    if (!t) return err_set("%s: no tensor '%s'", st_path(f), name);
    bool same = t->dtype == ST_DTYPE_F32 && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) return err_set("%s: '%s' is not F32 of the expected shape", st_path(f), name);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

static int parse_class_names(const st_file *f, int n, char ***out) {
    const char *text = st_metadata(f, "clipc.classnames");
    cJSON *list = text ? cJSON_Parse(text) : NULL;
    int rc = 0;
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != n)
        rc = err_set("%s: metadata 'clipc.classnames' is missing or not a JSON array of %d names", st_path(f), n);
    for (int c = 0; rc == 0 && c < n; c++)
        if (!cJSON_IsString(cJSON_GetArrayItem(list, c)))
            rc = err_set("%s: metadata 'clipc.classnames'[%d] is not a string", st_path(f), c);
    if (rc == 0 && out) {
        *out = xmalloc((size_t)n * sizeof(char *));
        for (int c = 0; c < n; c++) (*out)[c] = xstrdup(cJSON_GetArrayItem(list, c)->valuestring);
    }
    cJSON_Delete(list);
    return rc;
}

int linear_head_load(const char *path, linear_head *h, char *kind, char ***class_names) {
    memset(h, 0, sizeof *h);
    st_file *f = st_open(path);
    if (!f) return -1;
    const char *k = st_metadata(f, "clipc.head");
    char wname[32], bname[32];
    const st_tensor *wt = NULL;
    int rc = 0;
    if (!k || (strcmp(k, HEAD_KIND_PROBE) && strcmp(k, HEAD_KIND_FINETUNED)))
        rc = err_set("%s: metadata 'clipc.head' is missing or not '%s' or '%s'", path, HEAD_KIND_PROBE, HEAD_KIND_FINETUNED);
    if (rc == 0) {
        snprintf(wname, sizeof wname, "%s.weight", weight_prefix(k));
        snprintf(bname, sizeof bname, "%s.bias", weight_prefix(k));
        wt = st_find(f, wname);
        if (!wt || wt->ndim != 2 || wt->shape[0] < 1 || wt->shape[1] < 1)
            rc = err_set("%s: no 2-D tensor '%s'", path, wname);
    }
    if (rc == 0) {
        linear_head_init(h, (int)wt->shape[0], (int)wt->shape[1]);
        int64_t bs[1] = {h->n_classes};
        rc = read_f32(f, wname, 2, wt->shape, h->weight);
        if (rc == 0) rc = read_f32(f, bname, 1, bs, h->bias);
        if (rc == 0) rc = parse_class_names(f, h->n_classes, class_names);
        if (rc != 0) linear_head_free(h);
    }
    if (rc == 0 && kind) snprintf(kind, 32, "%s", k);
    st_close(f);
    return rc;
}
