#include "train/finetune.h"

#include <stdlib.h>

#include "common/error.h"
#include "train/step.h"

// Cross-entropy of the classifier on a labelled batch.
static tensor *batch_loss(void *ctx, const void *batch) {
    const zs_classifier *c = ctx;
    const loader_batch *b = batch;
    int64_t *labels = xmalloc((size_t)b->n * sizeof(int64_t)), shape[1] = {b->n};
    for (int i = 0; i < b->n; i++) labels[i] = b->labels[i];
    tensor *y = tensor_to_device(tensor_from_host(labels, shape, 1, TENSOR_I64, false), c->model->device, false);
    free(labels);
    return tensor_cross_entropy(zs_classifier_logits(c, clip_images_to_device(c->model, b->images, b->n)), y);
}

int finetune_run(zs_classifier *c, loader *train, const finetune_options *o) {
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
                      .grad_clip_norm = o->grad_clip_norm, .autocast_bf16 = o->bf16};
    int rc = 0;
    int64_t step = 0;
    for (int e = 0; e < o->epochs && rc == 0; e++) {
        loader_set_epoch(train, e);
        loader_batch b;
        while (rc == 0 && (rc = loader_next(train, &b)) == 1) {
            step_result r;
            rc = step_run(&sc, step++, batch_loss, c, &b, &r);
            if (rc == 0 && !r.finite)
                rc = err_set("fine-tuning step %lld: the loss is %g and the gradient norm %g; try a lower --lr",
                             (long long)step, r.loss, r.grad_norm);
            if (rc == 0 && o->on_step) o->on_step(o->ctx, step, sched.total_steps, e, r.loss, r.lr);
        }
    }
    adamw_free(opt);
    return rc < 0 ? -1 : 0;
}
