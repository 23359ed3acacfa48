// metrics: evaluation metrics on host arrays (pure C, no libtorch): ranks of true candidates with
// ties broken by index, top-k and per-class accuracy of classification scores with a confusion
// matrix, and recall@K, mean and median rank of retrieval.
//
// The ranking rule, used everywhere: among scores s[0..n), candidate t has the 1-based rank
//   1 + #{j : s[j] > s[t]} + #{j < t : s[j] == s[t]}
// so an equal score ranks above only when its index is lower (the first of equals wins, as argmax).
// A NaN score ranks below every number (and NaNs among themselves by index), so a model that
// produces NaN never looks good. With several true candidates a query's rank is the best of theirs.
#ifndef CLIPC_EVAL_METRICS_H
#define CLIPC_EVAL_METRICS_H

#include <stdbool.h>
#include <stdint.h>

// True when candidate a (score sa) ranks above candidate b (score sb) under the rule above.
bool metrics_ranks_above(float sa, int64_t a, float sb, int64_t b);

// The rank of candidate target among scores[0..n).
int64_t metrics_rank(const float *scores, int64_t n, int64_t target);

// The best rank of the true candidates targets[0..n_targets) (n_targets >= 1) among scores[0..n):
// the rank of the highest-ranked true candidate, whose rank no other true candidate can spoil.
int64_t metrics_best_rank(const float *scores, int64_t n, const int64_t *targets, int64_t n_targets);

// For each row i of a score matrix (rows, cols), row-major: ranks[i] = the best rank of its true
// columns targets[offsets[i] .. offsets[i + 1]) (offsets has rows + 1 entries, each row >= 1 target).
void metrics_rank_rows(const float *scores, int64_t rows, int64_t cols, const int64_t *offsets,
                       const int64_t *targets, int64_t *ranks);

// Retrieval summaries of n ranks (1-based).
double metrics_recall_at(const int64_t *ranks, int64_t n, int64_t k);  // fraction with rank <= k
double metrics_mean_rank(const int64_t *ranks, int64_t n);
double metrics_median_rank(const int64_t *ranks, int64_t n);  // mean of the two middle ranks when n is even

// Classification counts, accumulated batch by batch.
typedef struct {
    int n_classes;          // C
    int64_t n;              // samples added
    int64_t *confusion;     // (C, C): row = true class, column = top-1 prediction
    int64_t *rank_counts;   // (C + 1): rank_counts[r] = samples whose true class had rank r
} metrics_classes;

void metrics_classes_init(metrics_classes *m, int n_classes);
void metrics_classes_free(metrics_classes *m);

// Adds rows samples: scores (rows, C) row-major and their labels. A label outside [0, C) is an
// error naming the sample (keys[i], or its index when keys is NULL); nothing is added then.
int metrics_classes_add(metrics_classes *m, const float *scores, int64_t rows, const int32_t *labels,
                        const char *const *keys);

// A progress hook of the evaluation loops: batch_done(ctx, samples) after each batch (NULL: none).
typedef struct {
    void (*batch_done)(void *ctx, int64_t samples);
    void *ctx;
} metrics_progress;

// Fraction of samples whose true class is within the top k (k >= C: 1).
double metrics_classes_topk(const metrics_classes *m, int k);
// acc[c] = correct top-1 / samples of class c, NaN for a class without samples (C values).
void metrics_classes_per_class(const metrics_classes *m, double *acc);
// The mean of the per-class accuracies of the classes that have samples (balanced accuracy).
double metrics_classes_mean_per_class(const metrics_classes *m);

#endif
