// adamw: PyTorch's AdamW (torch.optim.AdamW, no amsgrad) over a clip_param list, with OpenCLIP's
// defaults and weight-decay rules, and optimizer state that checkpoints can save and restore.
//
// Per parameter with a gradient, at step t (counted per parameter, as PyTorch does):
//   p *= 1 - lr * wd                                      (decoupled decay; wd = 0 if excluded)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Parameters without a gradient are skipped (their step count does not advance); frozen
// parameters are not optimized at all and hold no state.
//
// The optimizer borrows the parameter tensors; its state tensors live outside any tensor scope, so
// create it outside one (like the model's parameters).
#ifndef CLIPC_OPTIM_ADAMW_H
#define CLIPC_OPTIM_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "model/params.h"
#include "shim/tensor.h"

typedef struct {
    double lr;            // the learning rate of the next step (schedules set it: adamw_set_lr)
    double beta1, beta2;
    double eps;
    double weight_decay;  // applied to the parameters adamw_param_decays() selects
} adamw_config;

// OpenCLIP's defaults: lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.2.
adamw_config adamw_config_default(void);

// Whether a parameter gets weight decay. OpenCLIP excludes ndim < 2 and names containing "bn",
// "ln", "bias" or "logit_scale"; clipc also excludes "logit_bias", "positional_embedding" and
// "class_embedding" (OpenCLIP decays the 2-D positional embeddings).
bool adamw_param_decays(const char *name, int ndim);

typedef struct adamw adamw;

// An optimizer over the non-frozen parameters of params[0..n). NULL with a message on failure.
adamw *adamw_init(const clip_param *params, int n, adamw_config config);
void adamw_free(adamw *opt);  // NULL is ignored

void adamw_set_lr(adamw *opt, double lr);
adamw_config adamw_get_config(const adamw *opt);

// One update of every optimized parameter that has a gradient. Gradients are left in place.
int adamw_step(adamw *opt);

// ---- state for checkpoints ---------------------------------------------------------------------
// Three entries per optimized parameter, in parameter order:
//   "optimizer.<param>.step"        rank-0 I64, the parameter's step count
//   "optimizer.<param>.exp_avg"     like the parameter
//   "optimizer.<param>.exp_avg_sq"  like the parameter
int adamw_state_count(const adamw *opt);
// Entry i: its name (owned by opt) and a NEW handle to its value (the step as a fresh CPU tensor,
// the moments as views sharing the optimizer's storage); the caller frees the handle.
int adamw_state_get(const adamw *opt, int i, const char **name, tensor **value);
// Copies value into the entry named name. Errors name the entry: an unknown name, a shape that
// differs from the parameter's, a step that is not a non-negative integer.
int adamw_state_set(adamw *opt, const char *name, const tensor *value);

#endif
