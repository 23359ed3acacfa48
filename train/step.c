#include "train/step.h"

#include <math.h>

#include "common/error.h"
#include "optim/grad.h"

static int zero_grads(const step_config *c) {
    for (int i = 0; i < c->n_lists; i++)
        if (param_list_zero_grad(c->lists[i]) != 0) return -1;
    return 0;
}

// Reads loss and norm to the host in one copy.
static int read_values(const tensor *loss, const tensor *norm, step_result *out) {
    int64_t one = 1;
    const tensor *both[2] = {tensor_reshape(tensor_to_dtype(loss, TENSOR_F32), &one, 1),
                             tensor_reshape(tensor_to_dtype(norm, TENSOR_F32), &one, 1)};
    float v[2];
    if (tensor_to_host(tensor_cat(both, 2, 0), v, sizeof v) != 0) return -1;
    out->loss = v[0], out->grad_norm = v[1];
    out->finite = isfinite(v[0]) && isfinite(v[1]);
    return 0;
}

static int update(const step_config *c, const tensor *norm) {
    if (c->grad_clip_norm > 0 && optim_clip_grads(c->lists, c->n_lists, norm, c->grad_clip_norm) != 0) return -1;
    if (adamw_step(c->opt) != 0) return -1;
    return c->logit_scale ? optim_clamp_logit_scale(c->logit_scale) : 0;
}

int step_run(const step_config *c, int64_t step, step_loss_fn loss_fn, void *ctx, const void *batch, step_result *out) {
    tensor_counters start = tensor_counters_get();
    out->lr = schedule_lr(c->sched, step);
    adamw_set_lr(c->opt, out->lr);
    if (zero_grads(c) != 0) return -1;
    if (c->autocast_bf16 && tensor_autocast_begin(TENSOR_BF16) != 0) return -1;
    tensor_scope_begin();
    tensor *loss = loss_fn(ctx, batch);
    if (c->autocast_bf16) tensor_autocast_end();
    int rc = loss ? tensor_backward(loss, NULL) : -1;
    tensor *norm = rc == 0 ? optim_grad_norm(c->lists, c->n_lists) : NULL;
    if (rc == 0) rc = read_values(loss, norm, out);
    tensor_counters read = tensor_counters_get();
    if (rc == 0 && out->finite) rc = update(c, norm);
    tensor_scope_end();
    out->forward_backward = tensor_counters_sub(read, start);
    out->update = tensor_counters_sub(tensor_counters_get(), read);
    return rc;
}
