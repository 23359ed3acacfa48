// adamw: PyTorch's AdamW (torch.optim.AdamW, no amsgrad) with OpenCLIP's defaults and
// weight-decay rule, over the flat buffers of one or more parameter lists (param/param.h), and
// optimizer state that checkpoints can save and restore.
//
// At step t (one count for the whole optimizer: every trainable parameter has a gradient, zero
// when it took no part in the loss, as in PyTorch after a full backward):
//   p *= 1 - lr * wd                                      (decoupled decay; wd = 0 if excluded)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The update runs once over a list's whole trainable buffer, the decay through a per-element mask,
// so a step costs the same whatever the number of parameter tensors. Which code runs:
//   - float32 parameters on the CPU: one OpenMP loop in adamw.c over the host buffers (llm.c's
//     adamw_update), each line rounded to float32 where PyTorch's in-place ops round;
//   - anything else (a GPU; bf16 weights with --precision pure_bf16; float64): shim/tensor.h's
//     tensor_adamw_, a dozen whole-buffer ops on the parameters' device.
// Frozen parameters are not optimized and hold no state. The moments take the parameters' dtype
// (bf16 with --precision pure_bf16, as PyTorch's AdamW on bf16 parameters).
//
// The optimizer borrows the lists, which must stay packed on one device while it lives; its state
// tensors live outside any tensor scope, so create it outside one (like the model's parameters).
#ifndef CLIPC_OPTIM_ADAMW_H
#define CLIPC_OPTIM_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "param/param.h"
#include "shim/tensor.h"

typedef struct {
    double lr;            // the learning rate of the next step (schedules set it: adamw_set_lr)
    double beta1, beta2;
    double eps;
    double weight_decay;  // applied to the parameters adamw_param_decays() selects
} adamw_config;

// OpenCLIP's defaults: lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.2.
adamw_config adamw_config_default(void);

// Whether a parameter gets weight decay: OpenCLIP's rule exactly. Excluded are tensors with
// ndim < 2 and names containing "bn", "ln", "bias" or "logit_scale"; so the 2-D positional
// embeddings are decayed and the 1-D class embedding is not.
bool adamw_param_decays(const char *name, int ndim);

typedef struct adamw adamw;

// An optimizer over the trainable parameters of lists[0..n_lists) (each packed). NULL with a
// message on failure.
adamw *adamw_init(param_list *const *lists, int n_lists, adamw_config config);
void adamw_free(adamw *opt);  // NULL is ignored

void adamw_set_lr(adamw *opt, double lr);
adamw_config adamw_get_config(const adamw *opt);

// One update of every trainable element from the lists' gradient buffers, left in place.
int adamw_step(adamw *opt);

// ---- state for checkpoints ---------------------------------------------------------------------
// Three entries per trainable parameter, in list order:
//   "optimizer.<param>.step"        rank-0 I64, the step count (the same for all)
//   "optimizer.<param>.exp_avg"     like the parameter
//   "optimizer.<param>.exp_avg_sq"  like the parameter
int adamw_state_count(const adamw *opt);
// Entry i: its name (owned by opt) and a NEW handle to its value (the step as a fresh CPU tensor,
// the moments in float32: views sharing the optimizer's storage, or converted copies when the
// parameters are bf16, so checkpoints always hold float32); the caller frees the handle.
int adamw_state_get(const adamw *opt, int i, const char **name, tensor **value);
// Copies value into the entry named name (converted to the moments' dtype). Errors name the
// entry: an unknown name, a shape that differs from the parameter's, a step that is not a
// non-negative integer.
int adamw_state_set(adamw *opt, const char *name, const tensor *value);

#endif
