// grad: what the training step does to gradients and parameters around the optimizer update:
// the global gradient norm, clipping by it (torch.nn.utils.clip_grad_norm_) and OpenCLIP's
// logit-scale clamp. Everything stays on the device: no value is copied to the host here.
#ifndef CLIPC_OPTIM_GRAD_H
#define CLIPC_OPTIM_GRAD_H

#include "param/param.h"
#include "shim/tensor.h"

// The L2 norm of the gradients of every list together, as a new rank-0 tensor on their device,
// float32 (float64 for float64 gradients), accumulated as tensor_norm_f64() does: as exact as
// OpenCLIP's per-tensor norms on any model size. NULL with a message on failure.
tensor *optim_grad_norm(param_list *const *lists, int n);

// Scales the gradients by min(1, max_norm / (norm + 1e-6)), computed on the device from the norm
// optim_grad_norm() returned, as PyTorch's clip_grad_norm_ does. Returns 0 or -1.
int optim_clip_grads(param_list *const *lists, int n, const tensor *norm, double max_norm);

// Clamps the log-space logit scale in place to [0, ln 100], as OpenCLIP does after each step.
int optim_clamp_logit_scale(tensor *logit_scale);

#endif
