// grad_scaler: the dynamic loss scaler of float16 mixed precision (--precision amp), PyTorch's
// torch.cuda.amp.GradScaler with its defaults, as OpenCLIP uses it. The loss is multiplied by the
// scale before the backward pass, so that small float16 gradients do not underflow; the gradients
// are divided by it again before clipping and the update. A step whose gradients overflowed (inf
// or NaN) is skipped and the scale halved; after `growth_interval` finite steps in a row it doubles.
// The state lives on the host (the step reads its finiteness anyway: train/step.h), and a
// checkpoint saves it (train/checkpoint.h) so that a resumed run scales as an uninterrupted one.
#ifndef CLIPC_OPTIM_GRAD_SCALER_H
#define CLIPC_OPTIM_GRAD_SCALER_H

#include <stdbool.h>
#include <stdint.h>

#include "param/param.h"

typedef struct {
    double scale;             // the loss multiplier
    int64_t growth_tracker;   // finite steps since the scale last changed
    double growth_factor;     // 2
    double backoff_factor;    // 0.5
    int64_t growth_interval;  // 2000
} grad_scaler;

// PyTorch's defaults: scale 2^16, growth 2 every 2000 finite steps, backoff 0.5.
grad_scaler grad_scaler_default(void);

// After a step: found_inf (a non-finite gradient: the step was skipped) multiplies the scale by
// the backoff factor and restarts the count; otherwise one more finite step, and at growth_interval
// of them the scale grows (unless that would overflow a float32) and the count restarts.
void grad_scaler_update(grad_scaler *s, bool found_inf);

// Divides the gradients of every list by the scale, in place (before clipping). Returns 0 or -1.
int grad_scaler_unscale(const grad_scaler *s, param_list *const *lists, int n);

#endif
