// linprobe: the linear probe of few-shot evaluation: multinomial logistic regression on frozen
// image features, fitted by full-batch L-BFGS, with the L2 strength chosen on held-out samples as
// CLIP's linear probes chose it (a sweep over a log grid, then a refit on all training samples).
//
// For features x_i (N, D), labels y_i in [0, C), weights W (C, D) and bias b (C) it minimises
//   f(W, b) = 1/N sum_i CE(W x_i + b, y_i) + lambda/2 ||W||_F^2      (the bias is not penalised)
// which is convex, and strictly convex in W for lambda > 0; scikit-learn's
// LogisticRegression(C=c) solves the same problem for c = 1 / (lambda N). The objective and its
// gradient run through libtorch in double precision on the CPU; the L-BFGS iteration (two-loop
// recursion, backtracking Armijo line search) is plain C, so a fit is deterministic.
#ifndef CLIPC_FINETUNE_LINPROBE_H
#define CLIPC_FINETUNE_LINPROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "finetune/head.h"

typedef struct {
    int max_iter;     // L-BFGS iterations (default 1000)
    int history;      // correction pairs kept (default 10)
    double grad_tol;  // converged when the largest gradient entry is below this (default 1e-6)
} linprobe_options;

linprobe_options linprobe_options_default(void);

typedef struct {
    double objective;  // f at the solution
    int iterations;
    bool converged;    // gradient below grad_tol, or no further decrease possible in double precision
} linprobe_fit_info;

// Fits a head on (x, y). head must be initialised (linear_head_init) with C classes and D = dim;
// its values are the starting point (zeros, or a warm start) and are replaced by the solution.
// info may be NULL. Returns 0 or -1 (a label outside [0, C), lambda < 0, a libtorch failure).
int linprobe_fit(const float *x, const int32_t *y, int64_t n, double lambda, const linprobe_options *opt,
                 linear_head *head, linprobe_fit_info *info);

// The default grid of the sweep: 10^-6 .. 10^2 in half decades (17 values), largest first.
#define LINPROBE_GRID_SIZE 17
void linprobe_default_grid(double grid[LINPROBE_GRID_SIZE]);

typedef struct {
    int n;                  // lambdas tried
    double *lambdas;        // (n) as given
    double *val_accuracy;   // (n)
    double *val_log_loss;   // (n) mean cross-entropy on the held-out samples
    int best;               // index of the lowest held-out cross-entropy (the larger lambda on ties)
} linprobe_sweep;

// Fits one head per lambda of grid[0..n_grid) on the training samples (in grid order, each fit
// warm-started from the previous one) and scores each on the held-out samples. The selection uses
// cross-entropy, not accuracy: a few held-out shots make accuracy too coarse to rank lambdas
// (10 held-out images give steps of 10%). Returns 0 or -1.
int linprobe_sweep_lambda(const float *x_train, const int32_t *y_train, int64_t n_train, const float *x_val,
                          const int32_t *y_val, int64_t n_val, int dim, int n_classes, const double *grid,
                          int n_grid, const linprobe_options *opt, linprobe_sweep *out);
void linprobe_sweep_free(linprobe_sweep *s);

#endif
