#include "finetune/tune.h"

#include <stdlib.h>

#include "common/error.h"
#include "train/step.h"

// The objective: each sample's cross-entropy as its one "feature" (B, 1), and the loss of a row
// range their sum over the global batch size, so the shares add up to the mean cross-entropy.
static int sample_losses(void *ctx, const void *batch, int64_t begin, int64_t end, tensor **out) {
    const zs_classifier *c = ctx;
    const loader_batch *b = batch;
    int64_t n = end - begin, *labels = xmalloc((size_t)n * sizeof(int64_t)), shape[2] = {n, 1};
    for (int64_t i = 0; i < n; i++) labels[i] = b->labels[begin + i];
    tensor *y = tensor_to_device(tensor_from_host(labels, shape, 2, TENSOR_I64, false), c->model->device, false);
    free(labels);
    const float *images = b->images + (size_t)begin * 3 * (size_t)c->model->cfg.vision.image_size *
                                          (size_t)c->model->cfg.vision.image_size;
    tensor *logp = tensor_log_softmax(zs_classifier_logits(c, clip_images_to_device(c->model, images, n)), 1);
    out[0] = tensor_neg(tensor_gather(logp, 1, y));
    return out[0] ? 0 : -1;
}

static tensor *mean_rows(void *ctx, tensor *const *all, int64_t row_begin, int64_t row_end) {
    (void)ctx;
    return tensor_mul_scalar(tensor_sum(tensor_slice(all[0], 0, row_begin, row_end)), 1.0 / (double)tensor_size(all[0], 0));
}

int tune_run(zs_classifier *c, loader *train, const tune_options *o) {
    int64_t per_epoch = loader_num_batches(train);
    if (per_epoch <= 0) return err_set("the shot set holds fewer samples than one batch");
    schedule sched = {.kind = SCHEDULE_COSINE, .base_lr = o->lr, .warmup_steps = o->warmup,
                      .total_steps = per_epoch * o->epochs};
    if (schedule_check(&sched) != 0)
        return err_prefix("fine-tuning schedule (%d epochs of %lld steps)", o->epochs, (long long)per_epoch);
    adamw_config ac = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps, .weight_decay = o->wd};
    adamw *opt = adamw_init(c->lists, 2, ac);
    if (!opt) return -1;
    step_config sc = {.lists = c->lists, .n_lists = 2, .opt = opt, .sched = &sched,
                      .grad_clip_norm = o->grad_clip_norm, .autocast_bf16 = o->bf16, .accum_freq = 1};
    step_objective obj = {.n_features = 1, .n_trained = 1, .features = sample_losses, .loss_rows = mean_rows, .ctx = c};
    int rc = 0;
    int64_t step = 0;
    for (int e = 0; e < o->epochs && rc == 0; e++) {
        loader_set_epoch(train, e);
        loader_batch b;
        while (rc == 0 && (rc = loader_next(train, &b)) == 1) {
            step_result r;
            rc = step_run(&sc, step++, &obj, &b, b.n, &r);
            if (rc == 0 && !r.finite)
                rc = err_set("fine-tuning step %lld: the loss is %g and the gradient norm %g; try a lower --lr",
                             (long long)step, r.loss, r.grad_norm);
            if (rc == 0 && o->on_step) o->on_step(o->ctx, step, sched.total_steps, e, r.loss, r.lr);
        }
    }
    adamw_free(opt);
    return rc < 0 ? -1 : 0;
}
