#include "finetune/linprobe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "shim/tensor.h"

#define ARMIJO_C1 1e-4
#define MAX_HALVINGS 60

linprobe_options linprobe_options_default(void) {
    return (linprobe_options){.max_iter = 1000, .history = 10, .grad_tol = 1e-6};
}

void linprobe_default_grid(double grid[LINPROBE_GRID_SIZE]) {
    for (int i = 0; i < LINPROBE_GRID_SIZE; i++) grid[i] = pow(10.0, 2.0 - 0.5 * i);
}

// The problem: features and labels as CPU tensors, theta = [W (C*D) | b (C)] on the host.
typedef struct {
    tensor *x;  // (N, D) F64
    tensor *y;  // (N) I64
    int C, D;
    double lambda;
    int64_t n_theta;
} problem;

static int problem_init(problem *p, const float *x, const int32_t *y, int64_t n, int C, int D, double lambda) {
    int64_t *labels = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= C) {
            free(labels);
            return err_set("linear probe: sample %lld has label %d outside the %d classes", (long long)i, y[i], C);
        }
        labels[i] = y[i];
    }
    int64_t xs[2] = {n, D}, ys[1] = {n};
    tensor *xf = tensor_from_host(x, xs, 2, TENSOR_F32, false);
    p->x = tensor_to_dtype(xf, TENSOR_F64);
    p->y = tensor_from_host(labels, ys, 1, TENSOR_I64, false);
    tensor_free(xf);
    free(labels);
    p->C = C, p->D = D, p->lambda = lambda, p->n_theta = (int64_t)C * D + C;
    return p->x && p->y ? 0 : -1;
}

static void problem_free(problem *p) {
    tensor_free(p->x);
    tensor_free(p->y);
}

// f(theta) and its gradient into grad.
static int evaluate(const problem *p, const double *theta, double *f, double *grad) {
    int64_t ws[2] = {p->C, p->D}, bs[1] = {p->C};
    size_t wbytes = (size_t)p->C * (size_t)p->D * sizeof(double);
    tensor_scope_begin();
    tensor *w = tensor_from_host(theta, ws, 2, TENSOR_F64, false);
    tensor *b = tensor_from_host(theta + (int64_t)p->C * p->D, bs, 1, TENSOR_F64, false);
    int rc = tensor_set_requires_grad(w, true) | tensor_set_requires_grad(b, true);
    tensor *penalty = tensor_mul_scalar(tensor_sum(tensor_mul(w, w)), 0.5 * p->lambda);
    tensor *loss = tensor_add(tensor_cross_entropy(tensor_linear(p->x, w, b), p->y), penalty);
    if (rc == 0) rc = loss ? tensor_item(loss, f) : -1;
    if (rc == 0) rc = tensor_backward(loss, NULL);
    if (rc == 0) rc = tensor_to_host(tensor_grad(w), grad, wbytes);
    if (rc == 0) rc = tensor_to_host(tensor_grad(b), grad + (int64_t)p->C * p->D, (size_t)p->C * sizeof(double));
    tensor_scope_end();
    return rc ? -1 : 0;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

// L-BFGS memory: the last m pairs s = x' - x, y = g' - g, oldest first from `first`.
typedef struct {
    int m, count, first;
    double **s, **y, *rho, *alpha;
} history;

static void history_init(history *h, int m, int64_t n) {
    h->m = m, h->count = 0, h->first = 0;
    h->s = xmalloc((size_t)m * sizeof(double *));
    h->y = xmalloc((size_t)m * sizeof(double *));
    for (int i = 0; i < m; i++) {
        h->s[i] = xmalloc((size_t)n * sizeof(double));
        h->y[i] = xmalloc((size_t)n * sizeof(double));
    }
    h->rho = xmalloc((size_t)m * sizeof(double));
    h->alpha = xmalloc((size_t)m * sizeof(double));
}

static void history_free(history *h) {
    for (int i = 0; i < h->m; i++) {
        free(h->s[i]);
        free(h->y[i]);
    }
    free(h->s);
    free(h->y);
    free(h->rho);
    free(h->alpha);
}

// Stores the pair when its curvature s.y is positive (always so for a strictly convex f, but
// rounding can break it near the optimum); returns whether it was stored.
static bool history_push(history *h, const double *s, const double *y, int64_t n) {
    double sy = dot(s, y, n);
    if (!(sy > 1e-12 * sqrt(dot(s, s, n) * dot(y, y, n)))) return false;
    int slot;
    if (h->count < h->m) {
        slot = (h->first + h->count++) % h->m;
    } else {  // full: the oldest pair's slot takes the new one
        slot = h->first;
        h->first = (h->first + 1) % h->m;
    }
    memcpy(h->s[slot], s, (size_t)n * sizeof(double));
    memcpy(h->y[slot], y, (size_t)n * sizeof(double));
    h->rho[slot] = 1.0 / sy;
    return true;
}

// d = -H g by the two-loop recursion, H0 = (s.y / y.y) I of the newest pair (I without pairs).
static void history_direction(history *h, const double *g, double *d, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] = -g[i];
    for (int k = h->count - 1; k >= 0; k--) {
        int j = (h->first + k) % h->m;
        h->alpha[j] = h->rho[j] * dot(h->s[j], d, n);
        for (int64_t i = 0; i < n; i++) d[i] -= h->alpha[j] * h->y[j][i];
    }
    if (h->count > 0) {
        int j = (h->first + h->count - 1) % h->m;
        double gamma = 1.0 / (h->rho[j] * dot(h->y[j], h->y[j], n));
        for (int64_t i = 0; i < n; i++) d[i] *= gamma;
    }
    for (int k = 0; k < h->count; k++) {
        int j = (h->first + k) % h->m;
        double beta = h->rho[j] * dot(h->y[j], d, n);
        for (int64_t i = 0; i < n; i++) d[i] += (h->alpha[j] - beta) * h->s[j][i];
    }
}

typedef struct {
    double *theta, *grad, *dir, *trial, *trial_grad, *s, *y;
} workspace;

// Backtracking Armijo search along dir from theta: on success the trial point and its f, gradient
// are in w->trial, *f_trial, w->trial_grad; returns 1, 0 when no step decreases f, -1 on error.
static int line_search(const problem *p, workspace *w, double f, double slope, double step, double *f_trial) {
    int64_t n = p->n_theta;
    for (int k = 0; k < MAX_HALVINGS; k++, step *= 0.5) {
        for (int64_t i = 0; i < n; i++) w->trial[i] = w->theta[i] + step * w->dir[i];
        if (evaluate(p, w->trial, f_trial, w->trial_grad) != 0) return -1;
        if (*f_trial <= f + ARMIJO_C1 * step * slope) return 1;
    }
    return 0;
}

static int lbfgs(const problem *p, const linprobe_options *opt, workspace *w, linprobe_fit_info *info) {
    int64_t n = p->n_theta;
    history h;
    history_init(&h, opt->history > 0 ? opt->history : 1, n);
    double f;
    int rc = evaluate(p, w->theta, &f, w->grad);
    info->converged = false;
    for (info->iterations = 0; rc == 0 && info->iterations < opt->max_iter; info->iterations++) {
        if (max_abs(w->grad, n) < opt->grad_tol) {
            info->converged = true;
            break;
        }
        history_direction(&h, w->grad, w->dir, n);
        double slope = dot(w->grad, w->dir, n);
        if (!(slope < 0)) {  // not a descent direction: forget the curvature pairs
            h.count = 0;
            for (int64_t i = 0; i < n; i++) w->dir[i] = -w->grad[i];
            slope = dot(w->grad, w->dir, n);
        }
        double step = h.count ? 1.0 : fmin(1.0, 1.0 / max_abs(w->grad, n)), f_new;
        int found = line_search(p, w, f, slope, step, &f_new);
        if (found <= 0) {
            rc = found;
            info->converged = found == 0;  // no representable decrease left along a descent direction
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            w->s[i] = w->trial[i] - w->theta[i];
            w->y[i] = w->trial_grad[i] - w->grad[i];
        }
        history_push(&h, w->s, w->y, n);
        double *t = w->theta;
        w->theta = w->trial, w->trial = t;
        t = w->grad;
        w->grad = w->trial_grad, w->trial_grad = t;
        f = f_new;
    }
    info->objective = f;
    history_free(&h);
    return rc;
}

int linprobe_fit(const float *x, const int32_t *y, int64_t n, double lambda, const linprobe_options *opt,
                 linear_head *head, linprobe_fit_info *info) {
    if (!(lambda >= 0)) return err_set("linear probe: the L2 strength must be >= 0, got %g", lambda);
    if (n <= 0) return err_set("linear probe: no training samples");
    problem p = {0};
    if (problem_init(&p, x, y, n, head->n_classes, head->dim, lambda) != 0) {
        problem_free(&p);
        return -1;
    }
    int64_t nt = p.n_theta, nw = (int64_t)head->n_classes * head->dim;
    double *buf = xmalloc(7 * (size_t)nt * sizeof(double));
    workspace w = {buf, buf + nt, buf + 2 * nt, buf + 3 * nt, buf + 4 * nt, buf + 5 * nt, buf + 6 * nt};
    for (int64_t i = 0; i < nw; i++) w.theta[i] = head->weight[i];
    for (int c = 0; c < head->n_classes; c++) w.theta[nw + c] = head->bias[c];
    linprobe_fit_info local;
    int rc = lbfgs(&p, opt, &w, info ? info : &local);
    for (int64_t i = 0; rc == 0 && i < nw; i++) head->weight[i] = (float)w.theta[i];
    for (int c = 0; rc == 0 && c < head->n_classes; c++) head->bias[c] = (float)w.theta[nw + c];
    free(buf);
    problem_free(&p);
    return rc;
}

int linprobe_sweep_lambda(const float *x_train, const int32_t *y_train, int64_t n_train, const float *x_val,
                          const int32_t *y_val, int64_t n_val, int dim, int n_classes, const double *grid,
                          int n_grid, const linprobe_options *opt, linprobe_sweep *out) {
    memset(out, 0, sizeof *out);
    if (n_grid <= 0) return err_set("linear probe: no L2 strengths to try");
    out->n = n_grid;
    out->lambdas = xmalloc((size_t)n_grid * sizeof(double));
    out->val_accuracy = xmalloc((size_t)n_grid * sizeof(double));
    out->val_log_loss = xmalloc((size_t)n_grid * sizeof(double));
    memcpy(out->lambdas, grid, (size_t)n_grid * sizeof(double));
    linear_head head;
    linear_head_init(&head, n_classes, dim);
    int rc = 0;
    for (int i = 0; i < n_grid && rc == 0; i++) {
        rc = linprobe_fit(x_train, y_train, n_train, grid[i], opt, &head, NULL);
        if (rc == 0) rc = linear_head_score(&head, x_val, y_val, n_val, &out->val_accuracy[i], &out->val_log_loss[i]);
        if (rc == 0 && out->val_log_loss[i] < out->val_log_loss[out->best]) out->best = i;
    }
    linear_head_free(&head);
    if (rc != 0) linprobe_sweep_free(out);
    return rc;
}

void linprobe_sweep_free(linprobe_sweep *s) {
    free(s->lambdas);
    free(s->val_accuracy);
    free(s->val_log_loss);
    memset(s, 0, sizeof *s);
}
