#include "optim/grad.h"

#include <math.h>
#include <stdlib.h>

#include "common/error.h"

tensor *optim_grad_norm(param_list *const *lists, int n) {
    tensor_scope_begin();
    int64_t one = 1;
    tensor **norms = xcalloc((size_t)(n > 0 ? n : 1), sizeof *norms);  // float64 each
    tensor_dtype dtype = TENSOR_F32;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (lists[i]->grad) {
            if (tensor_get_dtype(lists[i]->grad) == TENSOR_F64) dtype = TENSOR_F64;
            norms[k++] = tensor_norm_f64(lists[i]->grad);
        }
    if (k > 1)  // rank 0 each: (1) to be concatenated
        for (int i = 0; i < k; i++) norms[i] = tensor_reshape(norms[i], &one, 1);
    tensor *total = k == 1 ? tensor_to_dtype(norms[0], dtype)
                   : k ? tensor_to_dtype(tensor_norm(tensor_cat((const tensor *const *)norms, k, 0)), dtype)
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
