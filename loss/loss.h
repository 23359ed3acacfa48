// loss: the contrastive objectives of CLIP training, as OpenCLIP v2.20 computes them.
//
// - CLIP (InfoNCE): 1/2 [CE(s I T^T, arange N) + CE(s T I^T, arange N)].
// - SigLIP: -sum(logsigmoid(Y * (s I T^T + b))) / N with Y = 2 eye(N) - 1.
// - Distillation (DistillClipLoss): the CLIP loss plus, separately, 1/2 [H(P_t(image), P_s(image))
//   + H(P_t(text), P_s(text))], where H(p, q) = -(p * log q).sum(1).mean() is the cross-entropy
//   between the teacher's and the student's softmaxed logits.
// - Feature distillation (CLIP-KD's FD): the mean squared error between the student's features
//   (projected to the teacher's width by the caller when the widths differ) and the teacher's,
//   mean over all N x D elements.
//
// Inputs are L2-normalized features (N, D) of matched pairs (row i of I goes with row i of T) and
// the EXP'ed scale s = exp(logit_scale) as a one-element tensor, so gradients flow back to the
// log-space parameter. Every result is a new rank-0 tensor on the autograd graph.
//
// The *_rows forms compute the share of the loss owned by rows [row_begin, row_end) of the
// global features (own rows against ALL columns, in both directions), scaled so that the shares of
// disjoint ranges covering 0..N sum to the full loss. Summing their gradients over the ranges gives
// exactly the gradient of the full loss; see docs/training-math.md for how ranks and gradient
// accumulation use this.
//
// Any NULL tensor argument is taken as an earlier failure (NULL / -1 returned, message kept). Bad
// shapes or ranges return NULL / -1 with a message naming the function.
#ifndef CLIPC_LOSS_LOSS_H
#define CLIPC_LOSS_LOSS_H

#include <stdint.h>

#include "shim/tensor.h"

// The objectives `clipc train` can optimize (--siglip picks SIGLIP).
typedef enum {
    LOSS_KIND_CLIP,
    LOSS_KIND_SIGLIP,
} loss_kind;

// The share of the loss of `kind` owned by rows [row_begin, row_end) (the whole loss for 0..N);
// bias is used by SigLIP only (required there).
tensor *loss_contrastive_rows(loss_kind kind, const tensor *image_features, const tensor *text_features,
                              const tensor *scale, const tensor *bias, int64_t row_begin, int64_t row_end);

// (s * a) @ b^T, the logits of a's rows against b's rows: (Na, Nb). OpenCLIP's operand order.
tensor *loss_logits(const tensor *a, const tensor *b, const tensor *scale);

tensor *loss_clip(const tensor *image_features, const tensor *text_features, const tensor *scale);
tensor *loss_clip_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                       int64_t row_begin, int64_t row_end);

// bias: the learnable logit bias (one element); required.
tensor *loss_siglip(const tensor *image_features, const tensor *text_features, const tensor *scale,
                    const tensor *bias);
tensor *loss_siglip_rows(const tensor *image_features, const tensor *text_features,
                         const tensor *scale, const tensor *bias, int64_t row_begin, int64_t row_end);

// DistillClipLoss's two outputs; the caller owns both (the training loss is their sum).
typedef struct {
    tensor *contrastive;  // the CLIP loss of the student
    tensor *distill;      // the distillation term
} loss_distill_terms;

// The teacher features and scale are used detached (the teacher is frozen).
int loss_distill(const tensor *image_features, const tensor *text_features, const tensor *scale,
                 const tensor *teacher_image_features, const tensor *teacher_text_features,
                 const tensor *teacher_scale, loss_distill_terms *out);
int loss_distill_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                      const tensor *teacher_image_features, const tensor *teacher_text_features,
                      const tensor *teacher_scale, int64_t row_begin, int64_t row_end,
                      loss_distill_terms *out);

// MobileCLIP's ensemble distillation: the distillation term with the probabilities of n_teachers
// teachers (each its own features and scale, used detached) averaged after the softmax,
// 1/2 [H(mean_m P_m(image), P_s(image)) + H(mean_m P_m(text), P_s(text))]; the share of rows
// [row_begin, row_end). One teacher gives loss_distill_rows' distill term. NULL on bad input.
tensor *loss_distill_ensemble_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                                   const tensor *const *teacher_image, const tensor *const *teacher_text,
                                   const tensor *const *teacher_scale, int n_teachers, int64_t row_begin,
                                   int64_t row_end);

// Mean over all elements of (student - teacher)^2, student and teacher both (N, D); the teacher is
// used detached.
tensor *loss_feature_mse(const tensor *student, const tensor *teacher);
// The share of rows [row_begin, row_end): their squared errors summed, over N * D.
tensor *loss_feature_mse_rows(const tensor *student, const tensor *teacher, int64_t row_begin, int64_t row_end);

#endif
