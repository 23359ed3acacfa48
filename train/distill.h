// distill: knowledge distillation in `clipc train` (docs/distillation.md): the teacher's targets
// and the objective.
//
// The targets come from a frozen teacher run on the same batch (online: --distill-model,
// --distill-pretrained; every parameter frozen, no gradient, bf16 under the step's autocast, shown
// the loader's teacher view when its image size differs and the captions tokenized at its context
// length when that differs) or from stored targets (--distill-cache DIR, train/distill_cache.h)
// with no teacher forward at all. With both, the online teacher is used, the cache must be its own,
// and the mean cosine between the teacher's image features of each batch's crops and the stored
// ones (evaluation crops) is measured: what stored targets lose.
//
// The objective is written over per-sample features (the student's on the graph, the teacher's
// detached) and the rows [r0, r1) that a rank or micro-batch owns of them (docs/training-math.md):
//   contrastive (CLIP or SigLIP) + w * DistillClipLoss term + w_f * (MSE(P_i I, I_t) + MSE(P_t T, T_t))
// w = --distill-weight, w_f = --distill-feature-weight; P_i, P_t are learned linear maps (E_t x E_s,
// "distill.image_proj.weight", "distill.text_proj.weight", a parameter list of their own that the
// optimizer updates and checkpoints keep) when the embedding sizes differ, the identity otherwise.
#ifndef CLIPC_TRAIN_DISTILL_H
#define CLIPC_TRAIN_DISTILL_H

#include <stdbool.h>

#include "data/loader.h"
#include "loss/loss.h"
#include "session/session.h"
#include "train/distill_cache.h"

typedef struct {
    const char *model;          // the teacher's config (--distill-model); NULL: its weights' metadata
    const char *pretrained;     // the teacher's weights (--distill-pretrained): online teacher
    const char *cache;          // stored targets (--distill-cache DIR)
    double weight;              // --distill-weight (OpenCLIP: 1)
    double feature_weight;      // --distill-feature-weight (0: off)
} distill_options;

typedef struct {
    distill_options o;
    const tokenizer *tok;       // the student's (borrowed): captions at the teacher's context length
    session teacher;            // the online teacher (teacher.model NULL without one)
    distill_cache *cache;       // stored targets (NULL without)
    int teacher_dim;            // E_t
    param_list proj;            // the feature projections (empty when not needed)
    tensor *image_proj, *text_proj;  // (E_t, E_s) in proj, or NULL: identity
    double crop_cosine;         // online teacher and cache: the last batch's mean image cosine (NAN otherwise)
} distill;

// What the objective needs of each sample; what ranks gather.
typedef struct {
    tensor *image, *text;                  // (N, E_s) the student's, L2-normalized
    tensor *teacher_image, *teacher_text;  // (N, E_t) the teacher's, L2-normalized, detached
    tensor *teacher_scale;                 // (1) exp of the teacher's logit scale
} distill_features;

// Whether the options ask for distillation at all.
bool distill_enabled(const distill_options *o);

// The loader's teacher_image_size: the online teacher's image size when it differs from the
// student's, else 0. Returns 0, or -1 when the teacher's config cannot be read.
int distill_view_size(const distill_options *o, const char *model_configs, const clip_config *student, int *size);

// Sets up the teacher (opened like the student, from student_options with the teacher's model and
// weights) and/or the stored targets of the training loader's shards, and the projections (seeded
// from student_options->seed). Returns 0, or -1 with err_msg() naming the option, file or both
// sides of a mismatch (the tokenizer and the teacher's vocabulary, the cache and the teacher).
int distill_open(distill *d, const distill_options *o, const session_options *student_options, const session *student,
                 const loader *train_data);
void distill_close(distill *d);

// The teacher's features of a batch (new handles on the student's device). Returns 0 or -1.
int distill_teacher_features(distill *d, const clip_model *student, const loader_batch *b, distill_features *f);

// The objective's share of rows [r0, r1) of N gathered samples (the whole loss for [0, N)).
tensor *distill_loss_rows(const distill *d, loss_kind kind, const distill_features *f, const tensor *scale,
                          const tensor *bias, int64_t r0, int64_t r1);

// The training objective over one loader batch, a step_loss_fn (train/step.h) with this context.
typedef struct {
    const clip_model *student;
    distill *d;
    loss_kind kind;
} distill_objective;

tensor *distill_objective_loss(void *objective, const void *batch);

#endif
