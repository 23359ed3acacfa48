// param: a named list of trainable tensors whose values (and gradients) are views of ONE flat
// buffer each, as llm.c keeps them: the optimizer, gradient clipping, the finiteness check and a
// data-parallel all-reduce then touch a few large tensors instead of one small tensor per
// parameter. The names are the state-dict keys of whatever owns the list (OpenCLIP's for a model,
// "head.weight" for a few-shot head); nothing here knows about models.
//
// Layout after param_list_pack(): data = [trainable values | frozen values] (list order inside
// each part), grad = [gradients of the trainable values], so data[0, n_trainable) and grad line up
// element for element. Each entry's handle is never replaced: packing (or moving to a device)
// swaps the tensor inside the handle (tensor_swap_), so pointers to p->value taken earlier stay
// valid. Gradients accumulate in place into the grad buffer (each trainable value's .grad is a
// view of it), so param_list_zero_grad() is one fill.
#ifndef CLIPC_PARAM_PARAM_H
#define CLIPC_PARAM_PARAM_H

#include <stdbool.h>
#include <stdint.h>

#include "shim/tensor.h"

typedef struct {
    char *name;      // owned, any length; e.g. "visual.transformer.resblocks.0.attn.in_proj_weight"
    tensor *value;   // owned; a view of the list's data buffer once packed
    bool frozen;     // excluded from optimization (no gradient)
    int64_t offset;  // first element in data (and, when trainable, in grad) once packed
} param;

typedef struct {
    param *items;
    int n, cap;
    tensor *data;         // (numel) every value, trainable first; NULL until packed
    tensor *grad;         // (n_trainable) the trainable values' gradients; NULL when none
    int64_t numel, n_trainable;
    tensor_device device;
} param_list;

void param_list_init(param_list *l);
void param_list_free(param_list *l);  // frees every value and the buffers

// Appends a parameter (taking ownership of value, a CPU or device tensor that requires grad) under
// a copy of name and returns it; the list must be packed again before it is optimized. value may
// be NULL (an earlier failure) or unable to take a gradient (an integer tensor):
// param_list_pack() then fails naming the entry.
param *param_list_add(param_list *l, const char *name, tensor *value);
param *param_list_find(param_list *l, const char *name);

// Marks p frozen (no gradient) or trainable; pack again afterwards. Returns 0, or -1 naming the
// parameter (and leaving it as it was) when its tensor is missing or cannot take a gradient (an
// integer tensor made trainable).
int param_set_frozen(param *p, bool frozen);

// Lays the values out in one flat buffer on dev (trainable first) with a zeroed flat gradient
// buffer, keeping every handle. All values must share one dtype. Returns 0 or -1 naming the entry.
int param_list_pack(param_list *l, tensor_device dev);
// The same in another dtype (e.g. BF16 weights): every value is converted.
int param_list_pack_as(param_list *l, tensor_device dev, tensor_dtype dtype);

// The trainable part of data (n_trainable) as a new handle (a view); NULL when none.
tensor *param_list_trainable(const param_list *l);

// Zeroes the gradient buffer (one fill). Returns 0 or -1.
int param_list_zero_grad(param_list *l);

#endif
