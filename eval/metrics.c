#include "eval/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

bool metrics_ranks_above(float sa, int64_t a, float sb, int64_t b) {
    if (isnan(sa)) return isnan(sb) && a < b;
    if (isnan(sb)) return true;
    return sa > sb || (sa == sb && a < b);
}

int64_t metrics_rank(const float *scores, int64_t n, int64_t target) {
    float st = scores[target];
    int64_t above = 0;
    if (isnan(st)) {
        above = target;  // every earlier candidate: a number, or a NaN with a lower index
        for (int64_t j = target + 1; j < n; j++) above += !isnan(scores[j]);
        return 1 + above;
    }
    // NaN compares false, so NaN candidates never count as above a number.
    for (int64_t j = 0; j < target; j++) above += scores[j] >= st;
    for (int64_t j = target + 1; j < n; j++) above += scores[j] > st;
    return 1 + above;
}

int64_t metrics_best_rank(const float *scores, int64_t n, const int64_t *targets, int64_t n_targets) {
    int64_t best = targets[0];
    for (int64_t i = 1; i < n_targets; i++)
        if (metrics_ranks_above(scores[targets[i]], targets[i], scores[best], best)) best = targets[i];
    return metrics_rank(scores, n, best);
}

void metrics_rank_rows(const float *scores, int64_t rows, int64_t cols, const int64_t *offsets,
                       const int64_t *targets, int64_t *ranks) {
    for (int64_t i = 0; i < rows; i++)
        ranks[i] = metrics_best_rank(scores + i * cols, cols, targets + offsets[i], offsets[i + 1] - offsets[i]);
}

double metrics_recall_at(const int64_t *ranks, int64_t n, int64_t k) {
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) hits += ranks[i] <= k;
    return n ? (double)hits / (double)n : NAN;
}

double metrics_mean_rank(const int64_t *ranks, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)ranks[i];
    return n ? sum / (double)n : NAN;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

double metrics_median_rank(const int64_t *ranks, int64_t n) {
    if (n == 0) return NAN;
    int64_t *sorted = xmalloc((size_t)n * sizeof(int64_t));
    memcpy(sorted, ranks, (size_t)n * sizeof(int64_t));
    qsort(sorted, (size_t)n, sizeof(int64_t), by_value);
    double median = n % 2 ? (double)sorted[n / 2] : 0.5 * ((double)sorted[n / 2 - 1] + (double)sorted[n / 2]);
    free(sorted);
    return median;
}

void metrics_classes_init(metrics_classes *m, int n_classes) {
    m->n_classes = n_classes;
    m->n = 0;
    m->confusion = xcalloc((size_t)n_classes * (size_t)n_classes, sizeof(int64_t));
    m->rank_counts = xcalloc((size_t)n_classes + 1, sizeof(int64_t));
}

void metrics_classes_free(metrics_classes *m) {
    free(m->confusion);
    free(m->rank_counts);
    m->confusion = m->rank_counts = NULL;
}

// The top-1 prediction of a score row: the candidate of rank 1.
static int64_t top1(const float *row, int64_t n) {
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (metrics_ranks_above(row[j], j, row[best], best)) best = j;
    return best;
}

int metrics_classes_add(metrics_classes *m, const float *scores, int64_t rows, const int32_t *labels,
                        const char *const *keys) {
    int C = m->n_classes;
    for (int64_t i = 0; i < rows; i++)
        if (labels[i] < 0 || labels[i] >= C) {
            if (keys) return err_set("sample '%s' has label %d outside the %d classes", keys[i], labels[i], C);
            return err_set("sample %lld has label %d outside the %d classes", (long long)i, labels[i], C);
        }
    for (int64_t i = 0; i < rows; i++) {
        const float *row = scores + i * C;
        m->rank_counts[metrics_rank(row, C, labels[i])]++;
        m->confusion[(int64_t)labels[i] * C + top1(row, C)]++;
    }
    m->n += rows;
    return 0;
}

double metrics_classes_topk(const metrics_classes *m, int k) {
    int64_t hits = 0;
    for (int r = 1; r <= k && r <= m->n_classes; r++) hits += m->rank_counts[r];
    return m->n ? (double)hits / (double)m->n : NAN;
}

void metrics_classes_per_class(const metrics_classes *m, double *acc) {
    int C = m->n_classes;
    for (int c = 0; c < C; c++) {
        int64_t total = 0;
        for (int p = 0; p < C; p++) total += m->confusion[(int64_t)c * C + p];
        acc[c] = total ? (double)m->confusion[(int64_t)c * C + c] / (double)total : NAN;
    }
}

double metrics_classes_mean_per_class(const metrics_classes *m) {
    double *acc = xmalloc((size_t)m->n_classes * sizeof(double)), sum = 0;
    metrics_classes_per_class(m, acc);
    int counted = 0;
    for (int c = 0; c < m->n_classes; c++)
        if (!isnan(acc[c])) sum += acc[c], counted++;
    free(acc);
    return counted ? sum / counted : NAN;
}
