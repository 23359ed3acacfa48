// params: a named list of trainable tensors, in OpenCLIP state-dict order and with its key names.
// The model owns the tensors; optimizers, checkpoints and gradient reductions walk this list.
#ifndef CLIPC_MODEL_PARAMS_H
#define CLIPC_MODEL_PARAMS_H

#include <stdbool.h>

#include "shim/tensor.h"

typedef struct {
    char name[96];  // OpenCLIP state-dict key, e.g. "visual.transformer.resblocks.0.attn.in_proj_weight"
    tensor *value;  // the parameter (requires grad unless frozen)
    bool frozen;    // excluded from optimization (--lock-image / --lock-text)
} clip_param;

#endif
