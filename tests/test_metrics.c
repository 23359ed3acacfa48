// Tests of eval/metrics (pure C): ranks with ties broken by index and NaN ranked last, best rank of
// several true candidates, recall@K and mean/median rank, classification counts (top-k, per-class
// accuracy, confusion, bad labels), and ranks against an independent sort-based ranking on random
// scores full of ties.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "eval/metrics.h"

static void test_rank_plain_and_ties(void **state) {
    (void)state;
    const float s[] = {0.1f, 0.5f, 0.3f};
    assert_int_equal(metrics_rank(s, 3, 1), 1);
    assert_int_equal(metrics_rank(s, 3, 2), 2);
    assert_int_equal(metrics_rank(s, 3, 0), 3);
    const float equal[] = {0.5f, 0.5f, 0.5f};
    for (int t = 0; t < 3; t++) assert_int_equal(metrics_rank(equal, 3, t), t + 1);
    const float some[] = {0.2f, 0.5f, 0.5f, 0.1f, 0.5f};
    assert_int_equal(metrics_rank(some, 5, 1), 1);
    assert_int_equal(metrics_rank(some, 5, 2), 2);  // the equal score at index 1 ranks above
    assert_int_equal(metrics_rank(some, 5, 4), 3);
    assert_int_equal(metrics_rank(some, 5, 0), 4);
}

static void test_rank_nan_last(void **state) {
    (void)state;
    const float s[] = {NAN, 0.1f, NAN, -5.0f};
    assert_int_equal(metrics_rank(s, 4, 1), 1);
    assert_int_equal(metrics_rank(s, 4, 3), 2);
    assert_int_equal(metrics_rank(s, 4, 0), 3);
    assert_int_equal(metrics_rank(s, 4, 2), 4);
    assert_true(metrics_ranks_above(-1e30f, 5, NAN, 0));
    assert_false(metrics_ranks_above(NAN, 0, -1e30f, 5));
}

static void test_best_rank_of_several(void **state) {
    (void)state;
    const float s[] = {0.9f, 0.8f, 0.7f, 0.95f};
    const int64_t a[] = {1, 2}, b[] = {2, 1}, c[] = {2, 3};
    assert_int_equal(metrics_best_rank(s, 4, a, 2), 3);
    assert_int_equal(metrics_best_rank(s, 4, b, 2), 3);  // order of the targets does not matter
    assert_int_equal(metrics_best_rank(s, 4, c, 2), 1);
    const float equal[] = {0.5f, 0.5f, 0.5f};
    const int64_t late[] = {2, 1};
    assert_int_equal(metrics_best_rank(equal, 3, late, 2), 2);  // index 0 ties and ranks above both
}

static void test_rank_rows(void **state) {
    (void)state;
    // 3 queries x 4 candidates; query 1 has two true candidates.
    const float s[] = {0.1f, 0.4f, 0.3f, 0.2f,   //
                       0.9f, 0.1f, 0.2f, 0.3f,   //
                       0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t offsets[] = {0, 1, 3, 4}, targets[] = {3, 1, 2, 2};
    int64_t ranks[3];
    metrics_rank_rows(s, 3, 4, offsets, targets, ranks);
    assert_int_equal(ranks[0], 3);
    assert_int_equal(ranks[1], 3);  // candidate 2 (0.2) is the better of 1 and 2; 0.9 and 0.3 above
    assert_int_equal(ranks[2], 3);  // all tied: indices 0 and 1 rank above 2
}

static void test_recall_mean_median(void **state) {
    (void)state;
    const int64_t ranks[] = {1, 11, 3, 10, 2};
    assert_float_equal(metrics_recall_at(ranks, 5, 1), 0.2, 1e-12);
    assert_float_equal(metrics_recall_at(ranks, 5, 5), 0.6, 1e-12);
    assert_float_equal(metrics_recall_at(ranks, 5, 10), 0.8, 1e-12);
    assert_float_equal(metrics_mean_rank(ranks, 5), 5.4, 1e-12);
    assert_float_equal(metrics_median_rank(ranks, 5), 3.0, 0);
    assert_float_equal(metrics_median_rank(ranks, 4), 6.5, 0);  // {1, 3, 10, 11}
    assert_int_equal(ranks[1], 11);  // the median sorts a copy
    assert_true(isnan(metrics_mean_rank(ranks, 0)));
}

static void test_classes(void **state) {
    (void)state;
    metrics_classes m;
    metrics_classes_init(&m, 4);
    // Class 3 has no samples. Row 2 ties classes 1 and 2: the lower index is the prediction.
    const float s[] = {0.9f, 0.1f, 0.0f, 0.0f,   // true 0, rank 1
                       0.5f, 0.2f, 0.6f, 0.1f,   // true 1, rank 3, predicted 2
                       0.1f, 0.7f, 0.7f, 0.0f,   // true 2, rank 2, predicted 1
                       0.1f, 0.2f, 0.3f, 0.4f};  // true 0, rank 4, predicted 3
    const int32_t labels[] = {0, 1, 2, 0};
    assert_int_equal(metrics_classes_add(&m, s, 4, labels, NULL), 0);
    assert_int_equal(m.n, 4);
    assert_float_equal(metrics_classes_topk(&m, 1), 0.25, 1e-12);
    assert_float_equal(metrics_classes_topk(&m, 2), 0.5, 1e-12);
    assert_float_equal(metrics_classes_topk(&m, 3), 0.75, 1e-12);
    assert_float_equal(metrics_classes_topk(&m, 5), 1.0, 1e-12);
    assert_int_equal(m.confusion[0 * 4 + 0], 1);
    assert_int_equal(m.confusion[0 * 4 + 3], 1);
    assert_int_equal(m.confusion[1 * 4 + 2], 1);
    assert_int_equal(m.confusion[2 * 4 + 1], 1);
    double acc[4];
    metrics_classes_per_class(&m, acc);
    assert_float_equal(acc[0], 0.5, 1e-12);
    assert_float_equal(acc[1], 0.0, 0);
    assert_float_equal(acc[2], 0.0, 0);
    assert_true(isnan(acc[3]));
    assert_float_equal(metrics_classes_mean_per_class(&m), 0.5 / 3, 1e-12);

    const int32_t bad[] = {1, 4};
    const char *const keys[] = {"img-a", "img-b"};
    assert_int_equal(metrics_classes_add(&m, s, 2, bad, keys), -1);
    assert_non_null(strstr(err_msg(), "img-b"));
    assert_int_equal(m.n, 4);  // nothing added
    assert_int_equal(m.rank_counts[1], 1);
    metrics_classes_free(&m);
}

// An independent ranking: sort indices by (score descending, NaN last, index ascending).
static const float *sort_scores;
static int by_rule(const void *a, const void *b) {
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = sort_scores[i], y = sort_scores[j];
    bool xn = isnan(x), yn = isnan(y);
    if (xn != yn) return xn ? 1 : -1;
    if (!xn && x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void test_ranks_match_sorting(void **state) {
    (void)state;
    enum { N = 300, QUERIES = 40 };
    uint64_t seed = 12345;
    float s[N];
    int64_t order[N], position[N];
    for (int q = 0; q < QUERIES; q++) {
        for (int j = 0; j < N; j++) {  // five distinct values (and NaN now and then): ties everywhere
            uint64_t r = next_random(&seed);
            s[j] = r % 37 == 0 ? NAN : (float)(r % 5) * 0.25f;
            order[j] = j;
        }
        sort_scores = s;
        qsort(order, N, sizeof order[0], by_rule);
        for (int p = 0; p < N; p++) position[order[p]] = p + 1;
        for (int t = 0; t < N; t++) assert_int_equal(metrics_rank(s, N, t), position[t]);
        int64_t targets[4], best = N + 1;
        for (int k = 0; k < 4; k++) {
            targets[k] = (int64_t)(next_random(&seed) % N);
            if (position[targets[k]] < best) best = position[targets[k]];
        }
        assert_int_equal(metrics_best_rank(s, N, targets, 4), best);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_plain_and_ties),  cmocka_unit_test(test_rank_nan_last),
        cmocka_unit_test(test_best_rank_of_several), cmocka_unit_test(test_rank_rows),
        cmocka_unit_test(test_recall_mean_median),   cmocka_unit_test(test_classes),
        cmocka_unit_test(test_ranks_match_sorting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
