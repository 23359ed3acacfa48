// grad: what the training step does to gradients and parameters around the optimizer update:
// clipping by global L2 norm (torch.nn.utils.clip_grad_norm_) and OpenCLIP's logit-scale clamp.
#ifndef CLIPC_OPTIM_GRAD_H
#define CLIPC_OPTIM_GRAD_H

#include "model/params.h"
#include "shim/tensor.h"

// Scales the gradients of the non-frozen parameters of params[0..n) that have one by
// min(1, max_norm / (norm + 1e-6)), where norm is the L2 norm of all of them together, and
// returns that pre-clip norm (0 when no parameter has a gradient); -1 with a message on failure.
// Unlike PyTorch, a non-finite norm leaves the gradients untouched (the caller skips the step).
double optim_clip_grad_norm(const clip_param *params, int n, double max_norm);

// Clamps the log-space logit scale in place to [0, ln 100], as OpenCLIP does after each step.
int optim_clamp_logit_scale(tensor *logit_scale);

#endif
