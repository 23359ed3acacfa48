// Tests of eval/retrieval: the chunked ranks equal a brute-force ranking of the full score matrix
// for every chunk size, on small-integer features whose dot products are exact (so scores tie
// often and exactly); several captions per image (best caption for image->text, the caption's image
// for text->image); a hand-made case with known recall and ranks; NaN scores; and bad mappings.
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
#include "eval/retrieval.h"

static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

// Features (n, E) with entries in {-1, 0, 1}: products are exact integers, ties are common.
static float *random_features(int64_t n, int E, uint64_t *seed) {
    float *f = malloc((size_t)n * (size_t)E * sizeof(float));
    for (int64_t i = 0; i < n * E; i++) f[i] = (float)((int)(next_random(seed) % 3) - 1);
    return f;
}

// On the GPU when there is one (the ranks are then computed there), else on the CPU.
static tensor *to_tensor(const float *f, int64_t n, int E) {
    int64_t shape[2] = {n, E};
    tensor_device dev = {tensor_cuda_device_count() > 0 ? TENSOR_DEVICE_CUDA : TENSOR_DEVICE_CPU, 0};
    tensor *host = tensor_from_host(f, shape, 2, TENSOR_F32, false), *t = tensor_to_device(host, dev, false);
    tensor_free(host);
    return t;
}

// The brute-force rank of the best of query q's targets: 1 + candidates strictly above it.
static int64_t brute_rank(const float *queries, const float *cands, int64_t N, int E, int64_t q, const int64_t *targets,
                          int64_t n_targets) {
    double *s = malloc((size_t)N * sizeof(double));
    for (int64_t j = 0; j < N; j++) {
        s[j] = 0;
        for (int e = 0; e < E; e++) s[j] += (double)queries[q * E + e] * cands[j * E + e];
    }
    int64_t best = N + 1;
    for (int64_t k = 0; k < n_targets; k++) {
        int64_t t = targets[k], rank = 1;
        for (int64_t j = 0; j < N; j++) rank += s[j] > s[t] || (s[j] == s[t] && j < t);
        if (rank < best) best = rank;
    }
    free(s);
    return best;
}

static void test_chunked_equals_brute_force(void **state) {
    (void)state;
    enum { Q = 37, N = 53, E = 4 };
    uint64_t seed = 99;
    float *q = random_features(Q, E, &seed), *c = random_features(N, E, &seed);
    int64_t offsets[Q + 1], targets[2 * Q], expect[Q], ranks[Q];
    offsets[0] = 0;
    for (int64_t i = 0; i < Q; i++) {  // one or two true candidates per query
        int64_t n = 1 + (int64_t)(next_random(&seed) % 2);
        for (int64_t k = 0; k < n; k++) targets[offsets[i] + k] = (int64_t)(next_random(&seed) % N);
        offsets[i + 1] = offsets[i] + n;
        expect[i] = brute_rank(q, c, N, E, i, targets + offsets[i], n);
    }
    tensor *tq = to_tensor(q, Q, E), *tc = to_tensor(c, N, E);
    const int64_t chunks[] = {1, 2, 7, Q, 1000, 0};
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        memset(ranks, 0, sizeof ranks);
        assert_int_equal(retrieval_ranks(tq, tc, offsets, targets, chunks[k], ranks), 0);
        assert_memory_equal(ranks, expect, sizeof ranks);
    }
    tensor_free(tq);
    tensor_free(tc);
    free(q);
    free(c);
}

static void test_multi_caption_against_brute_force(void **state) {
    (void)state;
    enum { I = 20, T = 57, E = 3 };
    uint64_t seed = 7;
    float *img = random_features(I, E, &seed), *txt = random_features(T, E, &seed);
    int64_t text_image[T];
    for (int64_t t = 0; t < T; t++) text_image[t] = t < I ? t : (int64_t)(next_random(&seed) % I);  // every image has >= 1
    tensor *ti = to_tensor(img, I, E), *tt = to_tensor(txt, T, E);
    retrieval_result r;
    assert_int_equal(retrieval_evaluate(ti, tt, text_image, 3, &r), 0);
    assert_int_equal(r.n_images, I);
    assert_int_equal(r.n_texts, T);
    int64_t i2t[I], t2i[T];
    for (int64_t i = 0; i < I; i++) {
        int64_t mine[T], n = 0;
        for (int64_t t = 0; t < T; t++)
            if (text_image[t] == i) mine[n++] = t;
        i2t[i] = brute_rank(img, txt, T, E, i, mine, n);
    }
    for (int64_t t = 0; t < T; t++) t2i[t] = brute_rank(txt, img, I, E, t, &text_image[t], 1);
    for (int k = 0; k < RETRIEVAL_N_K; k++) {
        int64_t hits_i = 0, hits_t = 0;
        for (int64_t i = 0; i < I; i++) hits_i += i2t[i] <= RETRIEVAL_K[k];
        for (int64_t t = 0; t < T; t++) hits_t += t2i[t] <= RETRIEVAL_K[k];
        assert_float_equal(r.image_to_text.recall[k], (double)hits_i / I, 1e-12);
        assert_float_equal(r.text_to_image.recall[k], (double)hits_t / T, 1e-12);
    }
    double sum = 0;
    for (int64_t t = 0; t < T; t++) sum += (double)t2i[t];
    assert_float_equal(r.text_to_image.mean_rank, sum / T, 1e-9);
    tensor_free(ti);
    tensor_free(tt);
    free(img);
    free(txt);
}

// Two images, three captions: caption 0 and 1 describe image 0, caption 2 image 1.
static void test_known_answer(void **state) {
    (void)state;
    const float img[] = {1, 0,   //
                         0, 1};
    const float txt[] = {0.6f, 0.8f,   // closer to image 1 than to image 0
                         1.0f, 0.0f,   // exactly image 0
                         0.8f, 0.6f};  // closer to image 0
    const int64_t text_image[] = {0, 0, 1};
    tensor *ti = to_tensor(img, 2, 2), *tt = to_tensor(txt, 3, 2);
    retrieval_result r;
    assert_int_equal(retrieval_evaluate(ti, tt, text_image, 0, &r), 0);
    // image 0: scores 0.6, 1.0, 0.8 -> caption 1 first: rank 1. image 1: 0.8, 0, 0.6 -> caption 2: rank 2.
    assert_float_equal(r.image_to_text.recall[0], 0.5, 1e-12);
    assert_float_equal(r.image_to_text.recall[1], 1.0, 1e-12);
    assert_float_equal(r.image_to_text.mean_rank, 1.5, 1e-12);
    assert_float_equal(r.image_to_text.median_rank, 1.5, 1e-12);
    // caption 0 -> image 0 ranks 2; caption 1 -> image 0 rank 1; caption 2 -> image 1 (0.6 < 0.8) rank 2.
    assert_float_equal(r.text_to_image.recall[0], 1.0 / 3, 1e-12);
    assert_float_equal(r.text_to_image.mean_rank, 5.0 / 3, 1e-6);
    assert_float_equal(r.text_to_image.median_rank, 2.0, 0);
    tensor_free(ti);
    tensor_free(tt);
}

// NaN scores (a candidate with a NaN feature) rank after every number and among themselves by
// index, as eval/metrics.h's host rule does: the device ranks equal metrics_rank_rows's.
static void test_nan_scores_rank_last(void **state) {
    (void)state;
    enum { Q = 6, N = 9, E = 3 };
    uint64_t seed = 5;
    float *q = random_features(Q, E, &seed), *c = random_features(N, E, &seed);
    c[2 * E] = NAN, c[7 * E + 1] = NAN;
    float scores[Q * N];
    for (int i = 0; i < Q; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int e = 0; e < E; e++) s += q[i * E + e] * c[j * E + e];
            scores[i * N + j] = s;
        }
    int64_t offsets[Q + 1] = {0, 1, 2, 4, 5, 6, 7}, targets[7] = {2, 7, 0, 2, 3, 7, 5}, want[Q], got[Q];
    metrics_rank_rows(scores, Q, N, offsets, targets, want);
    tensor *tq = to_tensor(q, Q, E), *tc = to_tensor(c, N, E);
    assert_int_equal(retrieval_ranks(tq, tc, offsets, targets, 0, got), 0);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(got[0], N - 1);  // the first NaN: after the 7 numbers
    // The GPU's path, tensor_rank_in_rows, on the same scores: the best rank of each query's targets.
    int64_t rows[7], shape[2] = {Q, N}, K = 7, per_target[7];
    for (int i = 0; i < Q; i++)
        for (int64_t k = offsets[i]; k < offsets[i + 1]; k++) rows[k] = i;
    tensor_scope_begin();
    tensor *r = tensor_rank_in_rows(tensor_from_host(scores, shape, 2, TENSOR_F32, false),
                                    tensor_from_host(rows, &K, 1, TENSOR_I64, false),
                                    tensor_from_host(targets, &K, 1, TENSOR_I64, false));
    assert_int_equal(tensor_to_host(r, per_target, sizeof per_target), 0);
    tensor_scope_end();
    for (int i = 0; i < Q; i++) {
        int64_t best = INT64_MAX;
        for (int64_t k = offsets[i]; k < offsets[i + 1]; k++) best = per_target[k] < best ? per_target[k] : best;
        assert_int_equal(best, want[i]);
    }
    tensor_free(tq);
    tensor_free(tc);
    free(q);
    free(c);
}

static void test_bad_mapping(void **state) {
    (void)state;
    const float f[] = {1, 0, 0, 1};
    tensor *ti = to_tensor(f, 2, 2), *tt = to_tensor(f, 2, 2);
    retrieval_result r;
    const int64_t lonely[] = {0, 0};  // image 1 has no caption
    assert_int_equal(retrieval_evaluate(ti, tt, lonely, 0, &r), -1);
    assert_non_null(strstr(err_msg(), "image 1 has no text"));
    const int64_t outside[] = {0, 2};
    assert_int_equal(retrieval_evaluate(ti, tt, outside, 0, &r), -1);
    assert_non_null(strstr(err_msg(), "text 1"));
    tensor_free(ti);
    tensor_free(tt);
    assert_int_equal(tensor_live_count(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_equals_brute_force),
        cmocka_unit_test(test_multi_caption_against_brute_force),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_nan_scores_rank_last),
        cmocka_unit_test(test_bad_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
