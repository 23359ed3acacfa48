#include "eval/fewshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "optim/adamw.h"
#include "optim/schedule.h"

// ---- features --------------------------------------------------------------------------------

static tensor *batch_images(const clip_model *m, const loader_batch *b) {
    int64_t shape[4] = {b->n, 3, m->cfg.vision.image_size, m->cfg.vision.image_size};
    return tensor_to_device(tensor_from_host(b->images, shape, 4, TENSOR_F32, false), m->device, false);
}

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
    tensor *f = tensor_to_device(clip_encode_image(m, batch_images(m, b), true), TENSOR_CPU, false);
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

static void freeze(clip_param *p) {
    if (!p) return;
    p->frozen = true;
    tensor_set_requires_grad(p->value, false);
}

static int init_head(zs_classifier *c, const tensor *zeroshot) {
    clip_model *m = c->model;
    int64_t C = tensor_size(zeroshot, 0), bs[1] = {C};
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *w = tensor_keep(tensor_mul(tensor_detach(zeroshot), tensor_exp(m->logit_scale)));
    tensor *b = tensor_keep(tensor_zeros(bs, 1, TENSOR_F32, m->device));
    tensor_scope_end();
    tensor_no_grad_end();
    snprintf(c->head[0].name, sizeof c->head[0].name, "head.weight");
    snprintf(c->head[1].name, sizeof c->head[1].name, "head.bias");
    c->head[0].value = w, c->head[1].value = b;
    if (!w || !b) return -1;
    if (tensor_size(zeroshot, 1) != m->cfg.embed_dim)
        return err_set("the zero-shot classifier has width %lld, the model's embed_dim is %d",
                       (long long)tensor_size(zeroshot, 1), m->cfg.embed_dim);
    return tensor_set_requires_grad(w, true) | tensor_set_requires_grad(b, true) ? -1 : 0;
}

int zs_classifier_init(zs_classifier *c, clip_model *m, const tensor *zeroshot) {
    memset(c, 0, sizeof *c);
    c->model = m;
    clip_model_lock_text(m);
    freeze(clip_model_find_param(m, "logit_scale"));
    freeze(clip_model_find_param(m, "logit_bias"));
    if (init_head(c, zeroshot) != 0) {
        zs_classifier_free(c);
        return -1;
    }
    c->n_all = m->n_params + 2;
    c->all = xmalloc((size_t)c->n_all * sizeof(clip_param));
    memcpy(c->all, m->params, (size_t)m->n_params * sizeof(clip_param));
    memcpy(c->all + m->n_params, c->head, sizeof c->head);
    c->trained = xmalloc((size_t)c->n_all * sizeof(clip_param));
    for (int i = 0; i < c->n_all; i++)
        if (!c->all[i].frozen) c->trained[c->n_trained++] = c->all[i];
    return 0;
}

void zs_classifier_free(zs_classifier *c) {
    tensor_free(c->head[0].value);
    tensor_free(c->head[1].value);
    free(c->all);
    free(c->trained);
    memset(c, 0, sizeof *c);
}

int zs_classifier_get_head(const zs_classifier *c, linear_head *out) {
    int C = (int)tensor_size(c->head[0].value, 0), D = (int)tensor_size(c->head[0].value, 1);
    linear_head_init(out, C, D);
    int rc = tensor_to_host(c->head[0].value, out->weight, (size_t)C * (size_t)D * sizeof(float));
    if (rc == 0) rc = tensor_to_host(c->head[1].value, out->bias, (size_t)C * sizeof(float));
    if (rc != 0) linear_head_free(out);
    return rc;
}

// One optimizer step on a batch; *loss gets its value.
static int finetune_step(zs_classifier *c, adamw *opt, const loader_batch *b, double *loss) {
    int64_t *labels = xmalloc((size_t)b->n * sizeof(int64_t)), ls[1] = {b->n};
    for (int i = 0; i < b->n; i++) labels[i] = b->labels[i];
    tensor_scope_begin();
    tensor *y = tensor_to_device(tensor_from_host(labels, ls, 1, TENSOR_I64, false), c->model->device, false);
    tensor *feat = clip_encode_image(c->model, batch_images(c->model, b), true);
    tensor *l = tensor_cross_entropy(tensor_linear(feat, c->head[0].value, c->head[1].value), y);
    int rc = l ? tensor_item(l, loss) : -1;
    if (rc == 0 && !isfinite(*loss)) rc = err_set("the fine-tuning loss is %g; try a lower --lr", *loss);
    if (rc == 0) rc = tensor_backward(l, NULL);
    if (rc == 0) rc = adamw_step(opt);
    tensor_scope_end();
    for (int i = 0; i < c->n_trained; i++) tensor_zero_grad(c->trained[i].value);
    free(labels);
    return rc;
}

int zs_classifier_finetune(zs_classifier *c, loader *train, const finetune_options *o) {
    int64_t per_epoch = loader_num_batches(train);
    if (per_epoch <= 0) return err_set("the shot set holds fewer samples than one batch");
    schedule sched = {.kind = SCHEDULE_COSINE, .base_lr = o->lr, .warmup_steps = o->warmup,
                      .total_steps = per_epoch * o->epochs};
    if (schedule_check(&sched) != 0) return err_prefix("fine-tuning schedule (%d epochs of %lld steps)", o->epochs,
                                                       (long long)per_epoch);
    adamw_config ac = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->wd};
    adamw *opt = adamw_init(c->all, c->n_all, ac);
    if (!opt) return -1;
    int rc = 0;
    int64_t step = 0;
    for (int e = 0; e < o->epochs && rc == 0; e++) {
        loader_set_epoch(train, e);
        loader_batch b;
        while (rc == 0 && (rc = loader_next(train, &b)) == 1) {
            double loss = 0;
            adamw_set_lr(opt, schedule_lr(&sched, step));
            rc = finetune_step(c, opt, &b, &loss);
            step++;
            if (rc == 0 && o->on_step) o->on_step(o->ctx, step, sched.total_steps, e, loss, schedule_lr(&sched, step - 1));
        }
    }
    adamw_free(opt);
    return rc < 0 ? -1 : 0;
}

// ---- WiSE-FT ---------------------------------------------------------------------------------

tensor **weights_snapshot(const clip_param *params, int n) {
    tensor **w = xcalloc((size_t)(n ? n : 1), sizeof(tensor *));
    tensor_no_grad_begin();
    for (int i = 0; i < n; i++) {
        tensor *d = tensor_detach(params[i].value);
        w[i] = tensor_clone(d);
        tensor_free(d);
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

int wiseft_interpolate(clip_param *params, int n, tensor *const *from, tensor *const *to, double alpha) {
    if (!(alpha >= 0 && alpha <= 1)) return err_set("the WiSE-FT alpha must be in [0, 1], got %g", alpha);
    int rc = 0;
    tensor_no_grad_begin();
    for (int i = 0; i < n && rc == 0; i++) {
        if (tensor_numel(from[i]) != tensor_numel(params[i].value) || tensor_numel(to[i]) != tensor_numel(params[i].value)) {
            rc = err_set("WiSE-FT: '%s' has another shape in the weights to interpolate", params[i].name);
            break;
        }
        tensor_scope_begin();
        tensor *mix = tensor_add(tensor_mul_scalar(from[i], 1.0 - alpha), tensor_mul_scalar(to[i], alpha));
        rc = mix ? tensor_copy_(params[i].value, mix) : -1;
        tensor_scope_end();
        if (rc != 0) err_prefix("WiSE-FT: '%s'", params[i].name);
    }
    tensor_no_grad_end();
    return rc;
}
