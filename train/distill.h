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
// Teacher ensembles (MobileCLIP): --distill-model A::B --distill-pretrained WA::WB (or
// --distill-cache DA::DB, one folder per teacher), each teacher at its own logit scale
// (--distill-logit-scale S1::S2, the multiplier exp(logit_scale); default each teacher's own), the
// teachers' probabilities averaged after the softmax (loss_distill_ensemble_rows). With stored
// views (`distill-cache --augmentations K`) the training loader shows each sample's stored view
// picked from (seed, epoch, position) (distill_view_source), so the stored target is the teacher's
// view of the student's crop; the caches of an ensemble must hold the same views.
//
// The objective is written over per-sample features (the student's on the graph, the teacher's
// constants; any range of a batch's samples) and the rows [r0, r1) that a rank or micro-batch owns
// of the gathered features (docs/training-math.md), as train/step.h's split objective needs:
//   w_c * contrastive (CLIP or SigLIP) + w * DistillClipLoss term + w_f * (MSE(P_i I, I_t) + MSE(P_t T, T_t))
// w_c = --contrastive-weight (0: pure distillation), w = --distill-weight, w_f = --distill-feature-weight
// (one teacher only); P_i, P_t are learned linear maps (E_t x E_s,
// "distill.image_proj.weight", "distill.text_proj.weight", a parameter list of their own that the
// optimizer updates and checkpoints keep) when the embedding sizes differ, the identity otherwise.
#ifndef CLIPC_TRAIN_DISTILL_H
#define CLIPC_TRAIN_DISTILL_H

#include <stdbool.h>

#include "loader/loader.h"
#include "loss/loss.h"
#include "session/session.h"
#include "train/distill_cache.h"

#define DISTILL_MAX_TEACHERS 4

typedef struct {
    const char *model;          // the teachers' configs (--distill-model, '::' list); NULL: their weights' metadata
    const char *pretrained;     // the teachers' weights (--distill-pretrained, '::' list): online teachers
    const char *cache;          // stored targets (--distill-cache DIR, '::' list: one folder per teacher)
    const char *logit_scale;    // --distill-logit-scale S1::S2 (exp'ed); NULL: each teacher's own
    double weight;              // --distill-weight (OpenCLIP: 1)
    double feature_weight;      // --distill-feature-weight (0: off)
    double contrastive_weight;  // --contrastive-weight (1; 0: pure distillation)
} distill_options;

typedef struct {
    distill_options o;
    const tokenizer *tok;       // the student's (borrowed): captions at the teacher's context length
    int n_teachers;
    session teachers[DISTILL_MAX_TEACHERS];       // the online teachers (.model NULL without)
    distill_cache *caches[DISTILL_MAX_TEACHERS];  // stored targets (NULL without)
    double scales[DISTILL_MAX_TEACHERS];          // --distill-logit-scale, or NAN: the teacher's own
    int teacher_dim;            // E_t of the first teacher
    param_list proj;            // the feature projections (empty when not needed)
    tensor *image_proj, *text_proj;  // (E_t, E_s) in proj, or NULL: identity
    double crop_cosine;         // online teacher and cache: the last batch's mean image cosine (NAN otherwise)
} distill;

// The per-sample features of the objective, in this order (what ranks gather): the student's image
// and text features (L2-normalized, on the graph), then each teacher's (L2-normalized, constants):
// teacher m's at DISTILL_TEACHER_IMAGE + 2 m and DISTILL_TEACHER_TEXT + 2 m.
enum { DISTILL_IMAGE, DISTILL_TEXT, DISTILL_TEACHER_IMAGE, DISTILL_TEACHER_TEXT, DISTILL_N_FEATURES };
#define DISTILL_MAX_FEATURES (2 + 2 * DISTILL_MAX_TEACHERS)

// 2 + 2 x the number of teachers.
int distill_n_features(const distill *d);

// The stored views of the caches (K > 0) as the training loader's view source: true and *out set,
// or false (no stored views).
bool distill_view_source(const distill *d, loader_view_source *out);

// Whether the options ask for distillation at all.
bool distill_enabled(const distill_options *o);

// The loader's teacher_image_size: the online teachers' image size when it differs from the
// student's, else 0. Returns 0, or -1 when a teacher's config cannot be read or the teachers of an
// ensemble differ in image size.
int distill_view_size(const distill_options *o, const char *model_configs, const clip_config *student, int *size);

// Sets up the teacher (opened like the student, from student_options with the teacher's model and
// weights) and/or the stored targets of the training loader's shards, and the projections (seeded
// from student_options->seed). Returns 0, or -1 with err_msg() naming the option, file or both
// sides of a mismatch (the tokenizer and the teacher's vocabulary, the cache and the teacher).
int distill_open(distill *d, const distill_options *o, const session_options *student_options, const session *student,
                 const loader *train_data);
void distill_close(distill *d);

// Each teacher's features of samples [begin, end) of b into out[2 m] (image) and out[2 m + 1]
// (text), (end - begin, E_t) on the student's device: stored rows (of the stored view each row
// shows), or the online teacher's forward. Returns 0 or -1.
int distill_teacher_features(distill *d, const clip_model *student, const loader_batch *b, int64_t begin, int64_t end,
                             tensor **out);

// The objective's share of rows [r0, r1) of all[DISTILL_N_FEATURES], the features of the N samples
// of the global batch (the whole loss for [0, N)); scale = exp(the student's logit scale), bias its
// logit bias (SigLIP).
tensor *distill_loss_rows(const distill *d, loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias,
                          int64_t r0, int64_t r1);

#endif
