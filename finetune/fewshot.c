#include "finetune/fewshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

// ---- features --------------------------------------------------------------------------------

// Appends the first `take` rows of one batch's features to out (capacity *cap rows).
static int append_batch(const clip_model *m, const loader_batch *b, int take, feature_set *out, int64_t *cap) {
    for (int i = 0; i < take; i++)
        if (b->labels[i] < 0) return err_set("sample '%s' has no label", b->keys[i]);
    if (out->n + take > *cap) {
        *cap = 2 * (out->n + take);
        out->x = xrealloc(out->x, (size_t)*cap * (size_t)out->dim * sizeof(float));
        out->y = xrealloc(out->y, (size_t)*cap * sizeof(int32_t));
    }
    tensor_scope_begin();
    tensor *f = tensor_to_device(clip_encode_image(m, clip_images_to_device(m, b->images, b->n), true), TENSOR_CPU, false);
    int rc = tensor_to_host(tensor_slice(tensor_contiguous(f), 0, 0, take), out->x + out->n * out->dim,
                            (size_t)take * (size_t)out->dim * sizeof(float));
    tensor_scope_end();
    if (rc != 0) return -1;
    memcpy(out->y + out->n, b->labels, (size_t)take * sizeof(int32_t));
    out->n += take;
    return 0;
}

int fewshot_features(const clip_model *m, loader *l, int64_t max_n, feature_set *out) {
    memset(out, 0, sizeof *out);
    out->dim = m->cfg.embed_dim;
    int64_t cap = 0;
    loader_batch b;
    int rc = 0;
    tensor_no_grad_begin();
    while ((max_n <= 0 || out->n < max_n) && (rc = loader_next(l, &b)) == 1) {
        int take = max_n > 0 && max_n - out->n < b.n ? (int)(max_n - out->n) : b.n;
        if ((rc = append_batch(m, &b, take, out, &cap)) != 0) break;
    }
    tensor_no_grad_end();
    if (rc >= 0 && out->n == 0) rc = err_set("the dataset gave no images");
    if (rc < 0) feature_set_free(out);
    return rc < 0 ? -1 : 0;
}

void feature_set_free(feature_set *f) {
    free(f->x);
    free(f->y);
    f->x = NULL;
    f->y = NULL;
    f->n = 0;
}

// ---- linear probe ----------------------------------------------------------------------------

int fewshot_holdout_shots(int shots) { return shots <= 1 ? 0 : shots / 4 > 1 ? shots / 4 : 1; }

// Splits the shots: a sample is held out when its rank within its class is >= K - h.
static int split_shots(const feature_set *s, int n_classes, int K, int h, feature_set *train, feature_set *val) {
    int *rank = xcalloc((size_t)n_classes, sizeof(int));
    feature_set *parts[2] = {train, val};
    for (int k = 0; k < 2; k++) {
        parts[k]->dim = s->dim;
        parts[k]->n = 0;
        parts[k]->x = xmalloc((size_t)(s->n ? s->n : 1) * (size_t)s->dim * sizeof(float));
        parts[k]->y = xmalloc((size_t)(s->n ? s->n : 1) * sizeof(int32_t));
    }
    int rc = 0;
    for (int64_t i = 0; i < s->n && rc == 0; i++) {
        int c = s->y[i];
        if (c < 0 || c >= n_classes || rank[c] >= K) {
            rc = err_set("the shot set does not hold %d samples of each of %d classes (sample %lld, label %d)", K,
                         n_classes, (long long)i, c);
            break;
        }
        feature_set *to = parts[rank[c]++ >= K - h];
        memcpy(to->x + to->n * s->dim, s->x + i * s->dim, (size_t)s->dim * sizeof(float));
        to->y[to->n++] = c;
    }
    free(rank);
    return rc;
}

int fewshot_train_probe(const feature_set *shots, int n_classes, int K, double lambda, const linprobe_options *opt,
                        linear_head *head, probe_report *report) {
    memset(report, 0, sizeof *report);
    if (shots->n != (int64_t)n_classes * K)
        return err_set("the shot set has %lld samples, not %d classes x %d shots", (long long)shots->n, n_classes, K);
    int h = fewshot_holdout_shots(K);
    report->lambda = lambda >= 0 ? lambda : FEWSHOT_DEFAULT_LAMBDA;
    if (lambda < 0 && h > 0) {
        feature_set train = {0}, val = {0};
        double grid[LINPROBE_GRID_SIZE];
        linprobe_default_grid(grid);
        int rc = split_shots(shots, n_classes, K, h, &train, &val);
        if (rc == 0)
            rc = linprobe_sweep_lambda(train.x, train.y, train.n, val.x, val.y, val.n, shots->dim, n_classes, grid,
                                       LINPROBE_GRID_SIZE, opt, &report->sweep);
        report->n_train = train.n, report->n_val = val.n;
        feature_set_free(&train);
        feature_set_free(&val);
        if (rc != 0) return -1;
        report->swept = true;
        report->lambda = report->sweep.lambdas[report->sweep.best];
    }
    linear_head_init(head, n_classes, shots->dim);
    if (linprobe_fit(shots->x, shots->y, shots->n, report->lambda, opt, head, &report->fit) != 0) {
        linear_head_free(head);
        probe_report_free(report);
        return -1;
    }
    return 0;
}

void probe_report_free(probe_report *r) { linprobe_sweep_free(&r->sweep); }

// ---- fine-tuning -----------------------------------------------------------------------------

static int init_head(zs_classifier *c, const tensor *zeroshot) {
    clip_model *m = c->model;
    if (tensor_size(zeroshot, 1) != m->cfg.embed_dim)
        return err_set("the zero-shot classifier has width %lld, the model's embed_dim is %d",
                       (long long)tensor_size(zeroshot, 1), m->cfg.embed_dim);
    int64_t C = tensor_size(zeroshot, 0), bs[1] = {C};
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *w = tensor_keep(tensor_mul(tensor_detach(zeroshot), tensor_exp(m->logit_scale)));
    tensor *b = tensor_keep(tensor_zeros(bs, 1, TENSOR_F32, m->device));
    tensor_scope_end();
    tensor_no_grad_end();
    param_list_add(&c->head, "head.weight", w);
    param_list_add(&c->head, "head.bias", b);
    return param_list_pack(&c->head, m->device);
}

int zs_classifier_init(zs_classifier *c, clip_model *m, const tensor *zeroshot) {
    memset(c, 0, sizeof *c);
    c->model = m;
    param_list_init(&c->head);
    c->lists[0] = &m->params, c->lists[1] = &c->head;
    const char *shared[2] = {"logit_scale", "logit_bias"};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        if (clip_model_find_param(m, shared[i])) rc = param_set_frozen(clip_model_find_param(m, shared[i]), true);
    if (rc != 0 || clip_model_lock_text(m) != 0 || init_head(c, zeroshot) != 0) {
        zs_classifier_free(c);
        return -1;
    }
    return 0;
}

void zs_classifier_free(zs_classifier *c) {
    param_list_free(&c->head);
    memset(c, 0, sizeof *c);
}

int zs_classifier_get_head(const zs_classifier *c, linear_head *out) {
    const tensor *w = c->head.items[0].value, *b = c->head.items[1].value;
    int C = (int)tensor_size(w, 0), D = (int)tensor_size(w, 1);
    linear_head_init(out, C, D);
    int rc = tensor_to_host(w, out->weight, (size_t)C * (size_t)D * sizeof(float));
    if (rc == 0) rc = tensor_to_host(b, out->bias, (size_t)C * sizeof(float));
    if (rc != 0) linear_head_free(out);
    return rc;
}

tensor *zs_classifier_logits(const zs_classifier *c, const tensor *images) {
    return tensor_linear(clip_encode_image(c->model, images, true), c->head.items[0].value, c->head.items[1].value);
}

// ---- WiSE-FT ---------------------------------------------------------------------------------

tensor **weights_snapshot(param_list *const *lists, int n) {
    tensor **w = xcalloc((size_t)(n ? n : 1), sizeof(tensor *));
    tensor_no_grad_begin();
    for (int i = 0; i < n; i++) {
        tensor_scope_begin();
        w[i] = tensor_keep(tensor_clone(param_list_trainable(lists[i])));
        tensor_scope_end();
        if (!w[i]) {
            weights_snapshot_free(w, n);
            w = NULL;
            break;
        }
    }
    tensor_no_grad_end();
    return w;
}

void weights_snapshot_free(tensor **w, int n) {
    for (int i = 0; w && i < n; i++) tensor_free(w[i]);
    free(w);
}

int wiseft_interpolate(param_list *const *lists, int n, tensor *const *from, tensor *const *to, double alpha) {
    if (!(alpha >= 0 && alpha <= 1)) return err_set("the WiSE-FT alpha must be in [0, 1], got %g", alpha);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (tensor_numel(from[i]) != lists[i]->n_trainable || tensor_numel(to[i]) != lists[i]->n_trainable)
            return err_set("WiSE-FT: the weights to interpolate have %lld and %lld values, the model %lld",
                           (long long)tensor_numel(from[i]), (long long)tensor_numel(to[i]),
                           (long long)lists[i]->n_trainable);
        tensor_scope_begin();
        tensor *mix = tensor_add(tensor_mul_scalar(from[i], 1.0 - alpha), tensor_mul_scalar(to[i], alpha));
        rc = mix ? tensor_copy_(param_list_trainable(lists[i]), mix) : -1;
        tensor_scope_end();
    }
    return rc != 0 ? err_prefix("WiSE-FT") : 0;
}
