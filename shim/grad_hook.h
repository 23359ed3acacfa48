// grad_hook: a call from autograd each time it has accumulated a gradient into a leaf tensor's
// .grad: a post hook on the leaf's AccumulateGrad node, what c10d's DDP Reducer hooks, so that a
// gradient bucket can start its reduction while the backward goes on (distributed/reducer.h).
//
// The hook is on the tensor inside the handle when it is added (a parameter's leaf view of its
// list's flat buffer, param/param.h): add it after packing or moving the list, which swap that
// tensor. It fires once per backward that reaches the leaf, after the in-place accumulation into
// the .grad view was issued (on a GPU: queued on the current stream of the autograd thread, which
// is where the hook runs; on the CPU: done, on the thread that called the backward). fn must not
// fail: it returns nothing to autograd.
#ifndef CLIPC_SHIM_GRAD_HOOK_H
#define CLIPC_SHIM_GRAD_HOOK_H

#include "shim/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tensor_grad_hook tensor_grad_hook;

// Calls fn(ctx, index) after each accumulation into leaf's gradient. NULL with a message when leaf
// is NULL or not a leaf that requires grad.
tensor_grad_hook *tensor_grad_hook_add(const tensor *leaf, void (*fn)(void *ctx, int index), void *ctx, int index);
void tensor_grad_hook_remove(tensor_grad_hook *h);  // NULL is ignored

#ifdef __cplusplus
}
#endif

#endif
