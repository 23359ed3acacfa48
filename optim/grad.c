#include "optim/grad.h"

#include <math.h>

#include "common/error.h"

// The L2 norm of every gradient together, as a rank-0 tensor (the norm of the per-tensor norms);
// NULL with *count = 0 when none has a gradient.
static tensor *total_grad_norm(const clip_param *params, int n, int *count) {
    tensor **norms = xcalloc((size_t)(n > 0 ? n : 1), sizeof *norms);
    int64_t one = 1;
    *count = 0;
    for (int i = 0; i < n; i++)
        if (!params[i].frozen && tensor_has_grad(params[i].value))
            norms[(*count)++] = tensor_reshape(tensor_norm(tensor_grad(params[i].value)), &one, 1);
    tensor *total = *count ? tensor_norm(tensor_cat((const tensor *const *)norms, *count, 0)) : NULL;
    free(norms);
    return total;
}

double optim_clip_grad_norm(const clip_param *params, int n, double max_norm) {
    tensor_scope_begin();
    int count;
    double norm = 0;
    tensor *total = total_grad_norm(params, n, &count);
    int rc = count ? tensor_item(total, &norm) : 0;
    double coef = max_norm / (norm + 1e-6);
    for (int i = 0; rc == 0 && coef < 1.0 && isfinite(norm) && i < n; i++)
        if (!params[i].frozen && tensor_has_grad(params[i].value))
            rc = tensor_mul_scalar_(tensor_grad(params[i].value), coef);
    tensor_scope_end();
    return rc < 0 ? err_prefix("clip_grad_norm") : norm;
}

int optim_clamp_logit_scale(tensor *logit_scale) {
    return tensor_clamp_(logit_scale, 0.0, log(100.0)) < 0 ? err_prefix("logit_scale") : 0;
}
