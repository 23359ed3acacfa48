#include "optim/grad.h"

#include <math.h>
#include <stdlib.h>

#include "common/error.h"

tensor *optim_grad_norm(param_list *const *lists, int n) {
    tensor_scope_begin();
    int64_t one = 1;
    tensor **norms = xcalloc((size_t)(n > 0 ? n : 1), sizeof *norms);  // (1) each
    int k = 0;
    for (int i = 0; i < n; i++)
        if (lists[i]->grad) norms[k++] = tensor_reshape(tensor_norm(lists[i]->grad), &one, 1);
    tensor *total = k == 1 ? tensor_reshape(norms[0], NULL, 0)
                   : k ? tensor_norm(tensor_cat((const tensor *const *)norms, k, 0))
                       : tensor_zeros(NULL, 0, TENSOR_F32, TENSOR_CPU);
    tensor_keep(total);
    tensor_scope_end();
    free(norms);
    if (!total) err_prefix("gradient norm");
    return total;
}

int optim_clip_grads(param_list *const *lists, int n, const tensor *norm, double max_norm) {
    tensor_scope_begin();
    tensor *coef = tensor_clamp(tensor_mul_scalar(tensor_pow_scalar(tensor_add_scalar(norm, 1e-6), -1), max_norm),
                                -INFINITY, 1.0);
    int rc = coef ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++)
        if (lists[i]->grad) rc = tensor_mul_(lists[i]->grad, coef);
    tensor_scope_end();
    return rc < 0 ? err_prefix("clip_grad_norm") : 0;
}

int optim_clamp_logit_scale(tensor *logit_scale) {
    return tensor_clamp_(logit_scale, 0.0, log(100.0)) < 0 ? err_prefix("logit_scale") : 0;
}
