// fewshot: few-shot adaptation of a CLIP model to a labelled set (`clipc finetune`, docs/fewshot.md):
// image features for linear probes, the K-shot probe with its held-out choice of L2 strength,
// the classifier initialised from the zero-shot head that end-to-end fine-tuning trains
// (finetune/tune.h), and WiSE-FT's weight-space interpolation between the zero-shot and
// fine-tuned weights.
#ifndef CLIPC_FINETUNE_FEWSHOT_H
#define CLIPC_FINETUNE_FEWSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "loader/loader.h"
#include "finetune/head.h"
#include "finetune/linprobe.h"
#include "model/clip.h"

// ---- features --------------------------------------------------------------------------------

typedef struct {
    int64_t n;
    int dim;
    float *x;    // (n, dim) L2-normalized image features
    int32_t *y;  // (n) labels
} feature_set;

// Features of the samples the loader gives in its current epoch, at most max_n of them (0: all);
// the loader must give labels. Returns 0 or -1.
int fewshot_features(const clip_model *m, loader *l, int64_t max_n, feature_set *out);
void feature_set_free(feature_set *f);

// ---- linear probe ----------------------------------------------------------------------------

// Shots per class held out to choose the L2 strength: max(1, K / 4), and 0 for K = 1 (one shot
// cannot be both trained on and held out: the probe then uses a fixed strength).
int fewshot_holdout_shots(int shots);

// The L2 strength of the probe when no sweep is possible (K = 1). Chosen from the strengths the
// sweep picks at K = 4 and 16 on Fashion-MNIST (docs/fewshot.md).
#define FEWSHOT_DEFAULT_LAMBDA 1e-2

typedef struct {
    double lambda;          // the strength of the final fit
    bool swept;             // chosen by a held-out sweep (else fixed)
    int64_t n_train, n_val; // samples of the sweep's split
    linprobe_sweep sweep;   // when swept
    linprobe_fit_info fit;  // the final fit on all shots
} probe_report;

// Trains a probe on the K-shot features of n_classes classes, each class's shots in draw order
// (the order of shards/shots.h). With lambda < 0 the last fewshot_holdout_shots(K) shots of every
// class are held out to sweep the default grid; the head is then refitted on all shots with the
// chosen strength (with a fixed strength for K = 1 or lambda >= 0). head is initialised here.
int fewshot_train_probe(const feature_set *shots, int n_classes, int K, double lambda, const linprobe_options *opt,
                        linear_head *head, probe_report *report);
void probe_report_free(probe_report *r);

// ---- fine-tuning and WiSE-FT -----------------------------------------------------------------

typedef struct {
    clip_model *model;    // borrowed: its image tower is trained, its text tower and logit scale frozen
    param_list head;      // "head.weight" (C, E) and "head.bias" (C), on the model's device
    param_list *lists[2]; // what fine-tuning changes: the model's trainable part, then the head
} zs_classifier;

// A classifier logits = normalize(image features) @ W^T + b with W = exp(logit_scale) * zeroshot
// (C, E) and b = 0, which classifies as the zero-shot classifier does. Locks the text tower and
// the logit scale (and bias) of m. Returns 0 or -1.
int zs_classifier_init(zs_classifier *c, clip_model *m, const tensor *zeroshot);
void zs_classifier_free(zs_classifier *c);
// The head's values on the host.
int zs_classifier_get_head(const zs_classifier *c, linear_head *out);
// The classifier's logits (B, C) for images (B, 3, S, S) on the model's device.
tensor *zs_classifier_logits(const zs_classifier *c, const tensor *images);

// Copies of the trainable values of lists[0..n), one flat tensor per list (detached, on their
// device, outside any scope).
tensor **weights_snapshot(param_list *const *lists, int n);
void weights_snapshot_free(tensor **w, int n);

// WiSE-FT: the trainable values of lists[i] = (1 - alpha) from[i] + alpha to[i] in place,
// computed as that weighted sum so that alpha = 0 and alpha = 1 give from and to exactly.
// Returns 0 or -1 (sizes differ, alpha outside [0, 1]).
int wiseft_interpolate(param_list *const *lists, int n, tensor *const *from, tensor *const *to, double alpha);

#endif
