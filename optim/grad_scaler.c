#include "optim/grad_scaler.h"

#include <float.h>

grad_scaler grad_scaler_default(void) {
    return (grad_scaler){.scale = 65536.0, .growth_factor = 2.0, .backoff_factor = 0.5, .growth_interval = 2000};
}

void grad_scaler_update(grad_scaler *s, bool found_inf) {
    if (found_inf) {
        s->scale *= s->backoff_factor;
        s->growth_tracker = 0;
    } else if (++s->growth_tracker == s->growth_interval) {
        if (s->scale * s->growth_factor <= FLT_MAX) s->scale *= s->growth_factor;  // PyTorch keeps a finite float32 scale
        s->growth_tracker = 0;
    }
}

int grad_scaler_unscale(const grad_scaler *s, param_list *const *lists, int n) {
    for (int i = 0; i < n; i++)
        if (lists[i]->grad && tensor_mul_scalar_(lists[i]->grad, 1.0 / s->scale) != 0) return -1;
    return 0;
}
