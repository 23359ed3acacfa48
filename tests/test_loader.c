// Tests of the data loader: coverage (each sample once per epoch for 1-3 ranks and 0-4 workers),
// determinism, resume, global batches independent of the world size (and a position carried
// from 2 ranks to 1), resampled mixing, transforms, the teacher view and sample positions, and
// each bad input.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "common/error.h"
#include "loader/loader.h"
#include "loader/reader.h"
#include "shards/manifest.h"
#include "data_testutil.h"

#define MAX_KEYS 100000

#define tmp testutil_dir
static char *dataset, *dataset_b;
static const char *vocab_path;  // CLIP's merges file (argument 1)
static const int sizes[] = {5, 9, 0, 13, 7, 11, 6};
#define N_SHARDS 7
#define N_SAMPLES 51

static char *make_in(const char *sub, const int *s, int n, int w, int h, bool labelled, int corrupt, int first_key) {
    char *dir = testutil_path(tmp, sub);
    if (mkdir(dir, 0777)) abort();
    char *m = testutil_make_dataset(dir, s, n, w, h, labelled, corrupt, first_key);
    free(dir);
    return m;
}

static int setup(void **state) {
    testutil_setup(state);
    dataset = make_in("a", sizes, N_SHARDS, 12, 10, true, -1, 0);
    const int sizes_b[] = {10, 10, 10, 10};
    dataset_b = make_in("b", sizes_b, 4, 12, 10, false, -1, 1000);
    return 0;
}

static int teardown(void **state) {
    free(dataset), free(dataset_b);
    return testutil_teardown(state);
}

static loader_config small_config(const char *data, bool train) {
    loader_config c;
    loader_config_default(&c);
    c.data = data;
    c.batch_size = 4;
    c.image_size = 8;
    c.train = train;
    c.drop_last = train;
    c.shuffle_buffer = 8;
    c.seed = 42;
    c.context_length = 8;
    c.prefetch = 2;
    return c;
}

// What an epoch (or the rest of one) delivered: keys in order and a digest of every batch.
typedef struct {
    int n_keys, n_batches;
    int keys[MAX_KEYS / 10];
    uint32_t digest[MAX_KEYS / 10];
    int batch_sizes[MAX_KEYS / 10];
    int first_corrupt;  // the first batch made by passing over a corrupt sample (-1: none)
} run_log;

static uint32_t batch_digest(const loader_config *c, const loader_batch *b) {
    size_t pixels = (size_t)b->n * 3 * (size_t)c->image_size * (size_t)c->image_size;
    uLong h = c->output == LOADER_OUTPUT_FLOAT ? crc32(0L, (const Bytef *)b->images, (uInt)(pixels * sizeof(float)))
                                               : crc32(0L, b->images_u8, (uInt)pixels);
    h = crc32(h, (const Bytef *)b->labels, (uInt)((size_t)b->n * sizeof(int32_t)));
    h = crc32(h, (const Bytef *)b->tokens, (uInt)((size_t)b->n * (size_t)c->context_length * sizeof(int64_t)));
    for (int i = 0; i < b->n; i++) h = crc32(h, (const Bytef *)b->captions[i], (uInt)strlen(b->captions[i]));
    return (uint32_t)h;
}

// Runs up to max_batches batches (-1: to the end of the epoch) into log.
static void run(loader *l, const loader_config *c, int max_batches, run_log *log) {
    memset(log, 0, sizeof *log);
    log->first_corrupt = -1;
    loader_batch b;
    int rc;
    while ((max_batches < 0 || log->n_batches < max_batches) && (rc = loader_next(l, &b)) == 1) {
        for (int i = 0; i < b.n; i++) log->keys[log->n_keys++] = atoi(b.keys[i] + 1);
        if (b.n_corrupt && log->first_corrupt < 0) log->first_corrupt = log->n_batches;
        log->batch_sizes[log->n_batches] = b.n;
        log->digest[log->n_batches++] = batch_digest(c, &b);
    }
    if (max_batches < 0) assert_int_equal(rc, 0);
}

static void run_epoch(const loader_config *c, int64_t epoch, run_log *log) {
    loader *l = loader_init(c);
    if (!l) fail_msg("%s", err_msg());
    if (epoch) loader_set_epoch(l, epoch);
    run(l, c, -1, log);
    if (c->train) assert_int_equal(log->n_batches, loader_num_batches(l));  // the global batches: on every rank
    else assert_true(log->n_batches <= loader_num_batches(l));  // a rank's share of the last may be empty
    loader_free(l);
}

static void check_coverage(int world, int workers, bool train) {
    int seen[N_SAMPLES] = {0}, total = 0, batches = -1;
    for (int rank = 0; rank < world; rank++) {
        loader_config c = small_config(dataset, train);
        c.world_size = world, c.rank = rank, c.workers = workers;
        run_log log;
        run_epoch(&c, 3, &log);
        if (train && batches >= 0) assert_int_equal(log.n_batches, batches);  // equal on every rank
        batches = log.n_batches;
        for (int i = 0; i < log.n_keys; i++) seen[log.keys[i]]++;
        total += log.n_keys;
    }
    for (int k = 0; k < N_SAMPLES; k++) assert_true(seen[k] <= 1);
    int expected = train ? world * (N_SAMPLES / world / 4 * 4) : N_SAMPLES;
    assert_int_equal(total, expected);
}

static void test_coverage(void **state) {
    (void)state;
    for (int world = 1; world <= 3; world++)
        for (int workers = 0; workers <= 4; workers++) {
            check_coverage(world, workers, false);
            check_coverage(world, workers, true);
        }
}

static void assert_same_run(const run_log *a, const run_log *b) {
    assert_int_equal(a->n_keys, b->n_keys);
    assert_int_equal(a->n_batches, b->n_batches);
    assert_memory_equal(a->keys, b->keys, (size_t)a->n_keys * sizeof(int));
    assert_memory_equal(a->digest, b->digest, (size_t)a->n_batches * sizeof(uint32_t));
}

static bool same_order(const run_log *a, const run_log *b) {
    return a->n_keys == b->n_keys && !memcmp(a->keys, b->keys, (size_t)a->n_keys * sizeof(int));
}

static void test_determinism(void **state) {
    (void)state;
    static run_log ref, other;
    loader_config c = small_config(dataset, true);
    c.world_size = 2, c.rank = 1, c.workers = 1;
    run_epoch(&c, 0, &ref);
    for (int workers = 0; workers <= 4; workers++) {  // same batches, pixels included, for any thread count
        c.workers = workers;
        run_epoch(&c, 0, &other);
        assert_same_run(&ref, &other);
    }
    run_epoch(&c, 1, &other);
    assert_false(same_order(&ref, &other));
    c.seed = 43;
    run_epoch(&c, 0, &other);
    assert_false(same_order(&ref, &other));
}

// Saves the position after k batches, restores it into a fresh loader with other workers, and
// expects the same remaining batches.
static void check_resume(loader_config c, int k) {
    static run_log first, rest, resumed;
    loader *l = loader_init(&c);
    assert_non_null(l);
    run(l, &c, k, &first);
    uint8_t *state = NULL;
    size_t n = 0;
    assert_int_equal(loader_state_save(l, &state, &n), 0);
    run(l, &c, -1, &rest);
    loader_free(l);

    c.workers = c.workers == 3 ? 1 : 3;
    l = loader_init(&c);
    assert_non_null(l);
    if (loader_state_restore(l, state, n)) fail_msg("%s", err_msg());
    run(l, &c, -1, &resumed);
    assert_same_run(&rest, &resumed);
    loader_free(l);
    free(state);
}

static void test_resume(void **state) {
    (void)state;
    loader_config c = small_config(dataset, true);
    for (int k = 0; k <= 12; k += 3) check_resume(c, k);  // 12: the end of the epoch
    c.train = false, c.drop_last = false;
    check_resume(c, 5);
    loader_config r = small_config(dataset, true);
    r.data = "a::b";  // placeholder, replaced below
    char *both = malloc(strlen(dataset) + strlen(dataset_b) + 3);
    sprintf(both, "%s::%s", dataset, dataset_b);
    r.data = both;
    r.resampled = true, r.upsampling_factors = "1::3", r.samples_per_epoch = 200, r.workers = 2;
    check_resume(r, 7);
    free(both);
}

static void test_resume_after_set_epoch(void **state) {
    (void)state;
    static run_log ref, resumed;
    loader_config c = small_config(dataset, true);
    run_log *scratch = malloc(sizeof(run_log));
    loader *l = loader_init(&c);
    loader_set_epoch(l, 4);
    run(l, &c, 2, scratch);
    uint8_t *s = NULL;
    size_t n = 0;
    loader_state_save(l, &s, &n);
    run(l, &c, -1, &ref);
    loader_free(l);
    l = loader_init(&c);
    assert_int_equal(loader_state_restore(l, s, n), 0);
    loader_batch b;
    assert_int_equal(loader_next(l, &b), 1);
    assert_int_equal(b.epoch, 4);
    assert_int_equal(b.index, 2);
    loader_free(l);
    l = loader_init(&c);
    loader_state_restore(l, s, n);
    run(l, &c, -1, &resumed);
    assert_same_run(&ref, &resumed);
    loader_free(l);
    free(s);
    free(scratch);
}

static void expect_restore_error(const loader_config *c, const uint8_t *s, size_t n, const char *message) {
    loader *l = loader_init(c);
    assert_int_equal(loader_state_restore(l, s, n), -1);
    if (!strstr(err_msg(), message)) fail_msg("got '%s', want '%s'", err_msg(), message);
    loader_free(l);
}

static void test_restore_errors(void **state) {
    (void)state;
    loader_config c = small_config(dataset, true);
    loader *l = loader_init(&c);
    loader_batch b;
    loader_next(l, &b);
    uint8_t *s = NULL;
    size_t n = 0;
    loader_state_save(l, &s, &n);
    loader_free(l);

    c.seed = 7;
    expect_restore_error(&c, s, n, "seed 42");
    c.seed = 42;
    c.shuffle_buffer = 9;
    expect_restore_error(&c, s, n, "shuffle settings");
    c.shuffle_buffer = 8;
    l = loader_init(&c);
    s[30] ^= 1;
    assert_int_equal(loader_state_restore(l, s, n), -1);
    assert_non_null(strstr(err_msg(), "checksum"));
    assert_int_equal(loader_state_restore(l, s, 10), -1);
    assert_non_null(strstr(err_msg(), "not a clipc loader position"));
    assert_int_equal(loader_next(l, &b), 1);  // still usable
    loader_free(l);
    free(s);
}

// Keys and pixels of a run's batches, sample by sample.
typedef struct {
    int n;
    int keys[N_SAMPLES * 8];
    float *pixels;  // (n, 3, S, S)
} sample_log;

static void log_samples(loader *l, const loader_config *c, int max_batches, sample_log *out) {
    size_t per = 3 * (size_t)c->image_size * (size_t)c->image_size;
    loader_batch b;
    for (int k = 0; (max_batches < 0 || k < max_batches) && loader_next(l, &b) == 1; k++) {
        out->pixels = realloc(out->pixels, (size_t)(out->n + b.n) * per * sizeof(float));
        memcpy(out->pixels + (size_t)out->n * per, b.images, (size_t)b.n * per * sizeof(float));
        for (int i = 0; i < b.n; i++) out->keys[out->n++] = atoi(b.keys[i] + 1);
    }
}

// Global batch k on 2 ranks of batch B (rank 0's B samples, then rank 1's) is global batch k on
// one rank of batch 2B, crops and pixels included; a position saved on 2 ranks continues on 1.
static void test_global_batches_independent_of_world_size(void **state) {
    (void)state;
    size_t per = 3 * 8 * 8;
    loader_config one = small_config(dataset, true);
    one.batch_size = 8;
    sample_log whole = {0}, parts[2] = {{0}, {0}};
    loader *l = loader_init(&one);
    log_samples(l, &one, -1, &whole);
    loader_free(l);
    for (int r = 0; r < 2; r++) {
        loader_config c = small_config(dataset, true);
        c.world_size = 2, c.rank = r, c.workers = r + 1;
        l = loader_init(&c);
        assert_int_equal(loader_num_batches(l), whole.n / 8);
        log_samples(l, &c, -1, &parts[r]);
        loader_free(l);
    }
    for (int i = 0; i < whole.n; i++) {
        int batch = i / 8, pos = i % 8, r = pos / 4, j = batch * 4 + pos % 4;
        assert_int_equal(whole.keys[i], parts[r].keys[j]);
        assert_memory_equal(whole.pixels + (size_t)i * per, parts[r].pixels + (size_t)j * per, per * sizeof(float));
    }
    // Saved on rank 1 of 2 after 2 batches, restored on one rank of batch 8: batch 2 onwards.
    loader_config c = small_config(dataset, true);
    c.world_size = 2, c.rank = 1;
    l = loader_init(&c);
    sample_log skip = {0}, rest = {0};
    log_samples(l, &c, 2, &skip);
    uint8_t *saved;
    size_t n;
    assert_int_equal(loader_state_save(l, &saved, &n), 0);
    loader_free(l);
    l = loader_init(&one);
    assert_int_equal(loader_state_restore(l, saved, n), 0);
    log_samples(l, &one, -1, &rest);
    loader_free(l);
    assert_int_equal(rest.n, whole.n - 16);
    assert_memory_equal(rest.keys, whole.keys + 16, (size_t)rest.n * sizeof(int));
    assert_memory_equal(rest.pixels, whole.pixels + 16 * per, (size_t)rest.n * per * sizeof(float));
    one.batch_size = 4;  // another global batch is refused
    expect_restore_error(&one, saved, n, "global batch of 8");
    free(saved);
    free(whole.pixels), free(parts[0].pixels), free(parts[1].pixels), free(skip.pixels), free(rest.pixels);
}

static void test_resampled_mixing(void **state) {
    (void)state;
    static run_log log;
    char *both = malloc(strlen(dataset) + strlen(dataset_b) + 3);
    sprintf(both, "%s::%s", dataset, dataset_b);
    loader_config c = small_config(both, true);
    c.resampled = true, c.upsampling_factors = "1::3", c.samples_per_epoch = 4000, c.batch_size = 8;
    c.world_size = 2, c.rank = 0;
    run_epoch(&c, 0, &log);
    assert_int_equal(log.n_batches, 4000 / (8 * 2));
    int from_b = 0;
    for (int i = 0; i < log.n_keys; i++) from_b += log.keys[i] >= 1000;
    double frac = (double)from_b / log.n_keys;  // expected 3*40 / (51 + 3*40) = 0.70
    if (frac < 0.62 || frac > 0.78) fail_msg("fraction from the upsampled source: %.3f", frac);

    c.upsampling_factors = "1";
    assert_null(loader_init(&c));
    assert_non_null(strstr(err_msg(), "1 upsampling factors for 2 data sources"));
    c.resampled = false, c.upsampling_factors = "1::3";
    assert_null(loader_init(&c));
    assert_non_null(strstr(err_msg(), "resampled"));
    free(both);
}

// Evaluation at the stored size: the batch is the stored picture itself, normalized.
static void test_transform_values(void **state) {
    (void)state;
    const int one[] = {3};
    char *m = make_in("square", one, 1, 10, 10, true, -1, 0);
    for (int u8 = 0; u8 <= 1; u8++) {
        loader_config c = small_config(m, false);
        c.image_size = 10, c.output = u8 ? LOADER_OUTPUT_UINT8 : LOADER_OUTPUT_FLOAT;
        loader *l = loader_init(&c);
        loader_batch b;
        assert_int_equal(loader_next(l, &b), 1);
        assert_int_equal(b.n, 3);
        assert_int_equal(loader_num_classes(l), 3);
        assert_string_equal(loader_class_name(l, 2), "two");
        for (int i = 0; i < b.n; i++) {
            int k = atoi(b.keys[i] + 1);
            assert_int_equal(b.labels[i], k % 3);
            char want[32];
            sprintf(want, "caption %d", k);
            assert_string_equal(b.captions[i], want);
            image_rgb pic = testutil_picture(10, 10, k);
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 100; p++) {
                    uint8_t v = pic.rgb[3 * p + ch];
                    size_t at = ((size_t)i * 3 + ch) * 100 + p;
                    if (u8) assert_int_equal(b.images_u8[at], v);
                    else assert_float_equal(b.images[at], (v / 255.0f - c.preprocess.mean[ch]) / c.preprocess.std[ch], 1e-5);
                }
            image_rgb_free(&pic);
        }
        assert_int_equal(loader_next(l, &b), 0);
        assert_int_equal(loader_next(l, &b), 0);
        loader_free(l);
    }
    free(m);
}

// Evaluation resizes the stored 12x10 pictures as OpenCLIP does (image_transform_eval with the
// config's filter) and normalizes with the config's mean and std.
static void test_eval_transform(void **state) {
    (void)state;
    for (int u8 = 0; u8 <= 1; u8++) {
        loader_config c = small_config(dataset, false);
        c.output = u8 ? LOADER_OUTPUT_UINT8 : LOADER_OUTPUT_FLOAT;
        c.preprocess.filter = IMAGE_FILTER_BILINEAR;
        c.preprocess.mean[1] = 0.25f, c.preprocess.std[2] = 0.5f;
        loader *l = loader_init(&c);
        loader_batch b;
        assert_int_equal(loader_next(l, &b), 1);
        uint8_t want[8 * 8 * 3];
        for (int i = 0; i < b.n; i++) {
            image_rgb pic = testutil_picture(12, 10, atoi(b.keys[i] + 1));
            assert_int_equal(image_transform_eval(&pic, &c.preprocess, 8, want), 0);
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 64; p++) {
                    size_t at = ((size_t)i * 3 + ch) * 64 + p;
                    uint8_t v = want[3 * p + ch];
                    if (u8) assert_int_equal(b.images_u8[at], v);
                    else assert_true(b.images[at] == (v / 255.0f - c.preprocess.mean[ch]) / c.preprocess.std[ch]);
                }
            image_rgb_free(&pic);
        }
        loader_free(l);
    }
}

// No batch holds a key twice.
static void assert_distinct_in_batches(const run_log *log) {
    for (int b = 0, first = 0; b < log->n_batches; first += log->batch_sizes[b++])
        for (int i = first; i < first + log->batch_sizes[b]; i++)
            for (int j = first; j < i; j++) assert_int_not_equal(log->keys[i], log->keys[j]);
}

// Evaluation (file order, so the batches are known): sample 12 (shard 2, index 0) is left out,
// batch 3 holds samples 13-15 and names sample 12, every other batch is as without it.
static const int corrupt_order[23] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
static void check_corrupt_in_order(const char *m, int workers) {
    loader_config c = small_config(m, false);
    c.workers = workers;
    loader *l = loader_init(&c);
    loader_batch b;
    int k = 0, named = 0;
    while (loader_next(l, &b) == 1) {
        for (int i = 0; i < b.n; i++) assert_int_equal(atoi(b.keys[i] + 1), corrupt_order[k++]);
        assert_int_equal(b.n, b.index == 3 ? 3 : 4);
        if (b.n_corrupt == 0) continue;
        assert_int_equal(b.index, 3);
        assert_int_equal(b.n_corrupt, 1);
        if (!strstr(b.corrupt[0], "shard-00002.h5: sample 0 ('s12'): corrupt WebP")) fail_msg("%s", b.corrupt[0]);
        named++;
    }
    assert_int_equal(k, 23);
    assert_int_equal(named, 1);
    assert_int_equal(loader_get_stats(l).corrupt_skipped, 1);
    loader_free(l);
}

// Training: sample 12 is replaced in its row, so the epoch keeps its 6 full batches; no batch holds
// a sample twice, sample 12 never appears, and the batches are the same for any number of workers
// and after a restore at any point.
static void check_corrupt_shuffled(const char *m) {
    static run_log ref, other;
    loader_config c = small_config(m, true);
    c.workers = 0;
    loader *l = loader_init(&c);
    run(l, &c, -1, &ref);
    assert_int_equal(loader_get_stats(l).corrupt_skipped, 1);
    loader_free(l);
    assert_int_equal(ref.n_batches, 6);
    assert_int_equal(ref.first_corrupt, 1);  // with this seed
    assert_distinct_in_batches(&ref);
    for (int i = 0; i < ref.n_keys; i++) assert_int_not_equal(ref.keys[i], 12);
    for (c.workers = 1; c.workers <= 3; c.workers++) {
        l = loader_init(&c);
        run(l, &c, -1, &other);
        loader_free(l);
        assert_same_run(&ref, &other);
    }
    for (int k = 0; k <= 5; k++) check_resume(c, k);
}

static void test_corrupt_sample(void **state) {
    (void)state;
    const int s[] = {6, 6, 6, 6};
    char *m = make_in("corrupt", s, 4, 12, 10, false, 12, 0);
    for (int workers = 0; workers <= 3; workers++) check_corrupt_in_order(m, workers);
    check_corrupt_shuffled(m);
    free(m);
}

// Two epochs (0, then 1 after loader_set_epoch) of one rank of the global batch 8, or of rank r
// of 2 ranks of batch 4, into log; the position after `save_after` batches of epoch 1 into
// *saved (when saved is not NULL).
static void log_two_epochs(const loader_config *c, int save_after, uint8_t **saved, size_t *n, sample_log *log) {
    loader *l = loader_init(c);
    if (!l) fail_msg("%s", err_msg());
    int64_t per_epoch = loader_num_batches(l);
    log_samples(l, c, -1, log);
    assert_int_equal(log->n, per_epoch * c->batch_size);  // every batch full, the same count on every rank
    loader_set_epoch(l, 1);
    log_samples(l, c, save_after, log);
    if (saved) assert_int_equal(loader_state_save(l, saved, n), 0);
    log_samples(l, c, -1, log);
    assert_int_equal(log->n, 2 * per_epoch * c->batch_size);
    loader_free(l);
}

// Rows [r*4, (r+1)*4) of every global batch of `whole` (batch 8), from sample `from` on, are
// rank r's rows of `part` (batch 4), keys and pixels.
static void assert_rank_rows(const sample_log *whole, int from, const sample_log *part, int r) {
    size_t per = 3 * 8 * 8;
    assert_int_equal(part->n * 2, whole->n - from);
    for (int i = from; i < whole->n; i++) {
        int pos = i % 8;
        if (pos / 4 != r) continue;
        int j = (i - from) / 8 * 4 + pos % 4;
        if (whole->keys[i] != part->keys[j]) fail_msg("global row %d: key s%d, rank %d row %d: s%d", i, whole->keys[i], r, j, part->keys[j]);
        assert_memory_equal(whole->pixels + (size_t)i * per, part->pixels + (size_t)j * per, per * sizeof(float));
    }
}

// With corrupt samples in the data (every 5th), 2 ranks of batch 4 see exactly what one rank of
// batch 8 sees, row for row, pixels included, over two epochs; a position saved on one world size
// continues exactly on the other; no batch holds a corrupt sample or a sample twice.
static void test_corrupt_global_rule(void **state) {
    (void)state;
    const int s[] = {9, 14, 11, 8, 10};
    char *m = make_in("corrupt-global", s, 5, 12, 10, false, -1, 0);
    if (testutil_damage_every(m, 5)) fail_msg("%s", err_msg());
    loader_config one = small_config(m, true);
    one.batch_size = 8;
    sample_log whole = {0}, parts[2] = {{0}, {0}}, rest = {0};
    uint8_t *saved_one = NULL, *saved_two = NULL;
    size_t n_one = 0, n_two = 0;
    log_two_epochs(&one, 2, &saved_one, &n_one, &whole);
    assert_int_equal(whole.n, 2 * (52 / 8) * 8);
    for (int i = 0; i < whole.n; i++) assert_int_not_equal(whole.keys[i] % 5, 4);
    for (int b = 0; b < whole.n / 8; b++)
        for (int i = 8 * b; i < 8 * b + 8; i++)
            for (int j = 8 * b; j < i; j++) assert_int_not_equal(whole.keys[i], whole.keys[j]);
    for (int r = 0; r < 2; r++) {
        loader_config c = small_config(m, true);
        c.world_size = 2, c.rank = r, c.workers = 2 * r;
        log_two_epochs(&c, 2, r == 1 ? &saved_two : NULL, &n_two, &parts[r]);
        assert_rank_rows(&whole, 0, &parts[r], r);
    }
    int from = (52 / 8) * 8 + 2 * 8;  // epoch 1, batch 2
    loader *l = loader_init(&one);    // saved on rank 1 of 2, continued on 1 rank
    assert_int_equal(loader_state_restore(l, saved_two, n_two), 0);
    log_samples(l, &one, -1, &rest);
    loader_free(l);
    assert_int_equal(rest.n, whole.n - from);
    assert_memory_equal(rest.keys, whole.keys + from, (size_t)rest.n * sizeof(int));
    assert_memory_equal(rest.pixels, whole.pixels + (size_t)from * 3 * 8 * 8, (size_t)rest.n * 3 * 8 * 8 * sizeof(float));
    for (int r = 0; r < 2; r++) {  // saved on 1 rank, continued on 2
        loader_config c = small_config(m, true);
        c.world_size = 2, c.rank = r;
        sample_log part = {0};
        l = loader_init(&c);
        assert_int_equal(loader_state_restore(l, saved_one, n_one), 0);
        log_samples(l, &c, -1, &part);
        loader_free(l);
        assert_rank_rows(&whole, from, &part, r);
        free(part.pixels);
    }
    free(saved_one), free(saved_two);
    free(whole.pixels), free(parts[0].pixels), free(parts[1].pixels), free(rest.pixels);
    free(m);
}

// Evaluation leaves corrupt rows out, so the ranks together evaluate every good sample once:
// with every 2nd sample corrupt and 2 ranks of batch 1, rank 1's rows are all corrupt and it
// returns no batch (its corrupt samples counted), rank 0 returns the good ones.
static void test_corrupt_left_out_in_evaluation(void **state) {
    (void)state;
    const int s[] = {7, 13};
    char *m = make_in("corrupt-eval", s, 2, 12, 10, false, -1, 0);
    if (testutil_damage_every(m, 2)) fail_msg("%s", err_msg());
    for (int r = 0; r < 2; r++) {
        loader_config c = small_config(m, false);
        c.world_size = 2, c.rank = r, c.batch_size = 1, c.workers = r;
        static run_log log;
        run_epoch(&c, 0, &log);
        assert_int_equal(log.n_keys, r == 0 ? 10 : 0);
        for (int i = 0; i < log.n_keys; i++) assert_int_equal(log.keys[i], 2 * i);
        loader *l = loader_init(&c);
        loader_batch b;
        while (loader_next(l, &b) == 1) {}
        assert_int_equal(loader_get_stats(l).corrupt_skipped, r == 0 ? 0 : 10);
        loader_free(l);
    }
    free(m);
}

// A shard whose every image is corrupt stops the run, naming it, rather than being skipped in
// silence: in evaluation after 100 corrupt samples in a row, in training when 100 draws find no
// replacement.
static void test_damaged_shard(void **state) {
    (void)state;
    const int s[] = {150};
    char *m = make_in("damaged", s, 1, 12, 10, false, TESTUTIL_ALL_CORRUPT, 0);
    const char *want[2] = {"100 corrupt samples in a row", "batch 0: no good sample in 100 draws to replace the corrupt one in row 0"};
    for (int train = 0; train <= 1; train++) {
        loader_config c = small_config(m, train);
        loader *l = loader_init(&c);
        loader_batch b;
        assert_int_equal(loader_next(l, &b), -1);
        assert_int_equal(loader_next(l, &b), -1);  // and stays so
        if (!strstr(err_msg(), want[train]) || !strstr(err_msg(), "damaged/shard-00000.h5") || !strstr(err_msg(), "data looks damaged"))
            fail_msg("%s", err_msg());
        loader_free(l);
    }
    free(m);
}

// Each row's (shard, index) names the sample its key comes from (keys count over all shards).
static void assert_positions(const loader *l, const loader_batch *b, const int *shard_sizes) {
    for (int i = 0; i < b->n; i++) {
        int k = atoi(b->keys[i] + 1), first = 0;
        for (int sh = 0; sh < b->shards[i]; sh++) first += shard_sizes[sh];
        assert_true(b->shards[i] >= 0 && b->shards[i] < loader_num_shards(l));
        assert_true(b->indices[i] >= 0 && b->indices[i] < loader_shard_size(l, b->shards[i]));
        assert_int_equal(first + b->indices[i], k);
    }
}

// The teacher view is the same crop at the teacher's size: equal to the student's view at equal
// sizes (random crops), equal to an evaluation loader's output at that size (centre crops); a row
// whose corrupt sample was replaced (training) carries its replacement's position.
static void test_teacher_view_and_positions(void **state) {
    (void)state;
    loader_config c = small_config(dataset, true);
    c.teacher_image_size = c.image_size, c.workers = 2;
    loader *l = loader_init(&c);
    assert_int_equal(loader_num_shards(l), N_SHARDS);
    assert_non_null(strstr(loader_shard_path(l, 1), "shard-00001"));
    loader_batch b;
    size_t floats = 3 * (size_t)c.image_size * (size_t)c.image_size;
    while (loader_next(l, &b) == 1) {
        assert_memory_equal(b.teacher_images, b.images, (size_t)b.n * floats * sizeof(float));
        assert_positions(l, &b, sizes);
    }
    loader_free(l);

    loader_config ce = small_config(dataset, false), ct = small_config(dataset, false);
    ce.teacher_image_size = 12, ct.image_size = 12;
    loader *le = loader_init(&ce), *lt = loader_init(&ct);
    loader_batch bt;
    while (loader_next(le, &b) == 1) {
        assert_int_equal(loader_next(lt, &bt), 1);
        assert_memory_equal(b.teacher_images, bt.images, (size_t)b.n * 3 * 12 * 12 * sizeof(float));
    }
    loader_free(le), loader_free(lt);

    const int s2[] = {6, 6};
    char *m = make_in("corrupt-positions", s2, 2, 12, 10, false, 6, 0);  // key 6 is shard 1, index 0
    c = small_config(m, true);
    l = loader_init(&c);
    int replaced = 0;
    while (loader_next(l, &b) == 1) {
        assert_positions(l, &b, s2);
        replaced += b.n_corrupt;
        for (int i = 0; i < b.n; i++) assert_string_not_equal(b.keys[i], "s6");
    }
    assert_int_equal(replaced, 1);
    assert_int_equal(loader_get_stats(l).corrupt_skipped, 1);
    loader_free(l);
    free(m);
    c = small_config(dataset, true);
    c.teacher_image_size = 8, c.output = LOADER_OUTPUT_UINT8;
    assert_null(loader_init(&c));
    assert_non_null(strstr(err_msg(), "teacher image size"));
}

static void test_missing_and_truncated_shards(void **state) {
    (void)state;
    const int s[] = {4, 4, 4};
    char *m = make_in("broken", s, 3, 12, 10, false, -1, 0);
    char *dir = testutil_path(tmp, "broken");
    char *s1 = testutil_path(dir, "shard-00001.h5"), *s2 = testutil_path(dir, "shard-00002.h5");
    assert_int_equal(testutil_truncate(s1, 2000), 0);
    loader_config c = small_config(m, false);
    loader *l = loader_init(&c);
    assert_non_null(l);
    loader_batch b;
    int rc;
    while ((rc = loader_next(l, &b)) == 1) {}
    assert_int_equal(rc, -1);
    if (!strstr(err_msg(), s1)) fail_msg("%s", err_msg());
    loader_free(l);

    remove(s2);
    assert_null(loader_init(&c));
    if (!strstr(err_msg(), s2) || !strstr(err_msg(), "missing")) fail_msg("%s", err_msg());
    free(m), free(dir), free(s1), free(s2);
}

static void test_count_mismatch(void **state) {
    (void)state;
    const int s[] = {4, 4};
    char *m = make_in("mismatch", s, 2, 12, 10, false, -1, 0);
    manifest *man = manifest_load(m);
    man->shards[1].num_samples = 5;
    assert_int_equal(manifest_save(m, man), 0);
    manifest_free(man);
    loader_config c = small_config(m, false);
    loader *l = loader_init(&c);
    loader_batch b;
    int rc;
    while ((rc = loader_next(l, &b)) == 1) {}
    assert_int_equal(rc, -1);
    if (!strstr(err_msg(), "holds 4 samples but its manifest says 5")) fail_msg("%s", err_msg());
    loader_free(l);
    free(m);
}

// Captions are tokenized in the workers, the same for any number of them.
static void test_tokenized(void **state) {
    (void)state;
    tokenizer *tok = tokenizer_load(vocab_path, 0);
    if (!tok) fail_msg("%s", err_msg());
    static run_log ref, other;
    loader_config c = small_config(dataset, true);
    c.tok = tok, c.context_length = 77, c.workers = 1;
    run_epoch(&c, 0, &ref);
    c.workers = 3;
    run_epoch(&c, 0, &other);
    assert_same_run(&ref, &other);
    loader *l = loader_init(&c);
    loader_batch b;
    assert_int_equal(loader_next(l, &b), 1);
    int64_t want[77];
    for (int i = 0; i < b.n; i++) {
        assert_true(tokenizer_encode(tok, b.captions[i], 77, want) >= 4);  // SOT caption digits EOT
        assert_memory_equal(b.tokens + i * 77, want, sizeof want);
    }
    loader_free(l);
    tokenizer_free(tok);
}

// The shard format claims a manifest and a folder holding one; a path no format claims goes to it
// too, and its listing names the path.
static void test_reader_formats(void **state) {
    (void)state;
    char *folder = testutil_path(tmp, "a");
    assert_true(reader_format_shard.claims(dataset));
    assert_true(reader_format_shard.claims(folder));
    assert_false(reader_format_shard.claims(tmp));
    assert_ptr_equal(reader_format_find(folder), &reader_format_shard);
    assert_ptr_equal(reader_format_find("/nonexistent/data"), &reader_format_shard);
    reader_listing listing;
    assert_int_equal(reader_format_shard.list(folder, &listing), 0);
    assert_int_equal(listing.n_units, N_SHARDS);
    assert_int_equal(listing.num_samples, N_SAMPLES);
    reader_format_shard.release(&listing);
    assert_int_equal(reader_format_shard.list("/nonexistent/data", &listing), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/data"));
    free(folder);
}

static void test_bad_config(void **state) {
    (void)state;
    loader_config c = small_config(dataset, true);
    c.rank = 2, c.world_size = 2;
    assert_null(loader_init(&c));
    c = small_config("/nonexistent/manifest.json", true);
    assert_null(loader_init(&c));
    assert_non_null(strstr(err_msg(), "/nonexistent/manifest.json"));
}

// --aug-cfg: OpenCLIP's keys and literals; the timm keys and unknown keys refused, naming them.
static void test_aug_cfg(void **state) {
    (void)state;
    loader_config c = small_config(dataset, true);
    assert_int_equal(loader_aug_cfg_parse(&c, "scale=(0.5,1.0)  ratio=[0.8, 1.25] color_jitter=0.4"), 0);
    assert_float_equal(c.scale_min, 0.5, 1e-6), assert_float_equal(c.scale_max, 1.0, 1e-6);
    assert_float_equal(c.ratio_min, 0.8, 1e-6), assert_float_equal(c.ratio_max, 1.25, 1e-6);
    for (int i = 0; i < 3; i++) assert_float_equal(c.color_jitter[i], 0.4, 1e-6);
    assert_float_equal(c.color_jitter[3], 0, 0);
    assert_int_equal(loader_aug_cfg_parse(&c, "color_jitter=(0.1, 0.2, 0.3, 0.05)"), 0);
    assert_float_equal(c.color_jitter[1], 0.2, 1e-6), assert_float_equal(c.color_jitter[3], 0.05, 1e-6);
    const char *bad[][2] = {
        {"use_timm=True", "use_timm"}, {"re_prob=0.25", "re_prob"}, {"interpolation=random", "interpolation"},
        {"scal=(0.5,1)", "did you mean 'scale'"}, {"scale=(1.0,0.5)", "scale=(1.0,0.5)"},
        {"scale=0.5", "scale=0.5"}, {"color_jitter=(0.1,0.2)", "color_jitter"}, {"color_jitter=(0,0,0,0.7)", "hue"},
        {"scale", "not key=value"}, {"ratio=(0.5,x)", "ratio"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(loader_aug_cfg_parse(&c, bad[i][0]), -1);
        if (!strstr(err_msg(), bad[i][1])) fail_msg("'%s': %s", bad[i][0], err_msg());
    }
}

// Stored views handed back (a view source over an evaluation loader's K views per sample): each
// training row is exactly its stored view, the one named by view_index, with the colour jitter
// applied; the picks follow (seed, epoch, position), and differ between epochs.
typedef struct {
    int k;
    loader_view views[64][3];  // [sample key][view]
    float *pixels;             // (64, K, 3, S, S)
} stored_views;

static int pick_stored(void *ctx, int32_t shard, int64_t index, uint64_t draw, loader_view *out) {
    stored_views *sv = ctx;
    int key = 0;
    for (int s = 0; s < shard; s++) key += sizes[s];
    int k = (int)(draw % (uint64_t)sv->k);
    *out = sv->views[key + index][k];
    return k;
}

static void test_stored_views(void **state) {
    (void)state;
    stored_views sv = {.k = 3};
    loader_config ce = small_config(dataset, false);
    ce.views = sv.k;
    assert_int_equal(loader_aug_cfg_parse(&ce, "scale=(0.3,1.0) color_jitter=(0.4,0.4,0.4,0.1)"), 0);
    size_t plane = 3 * (size_t)ce.image_size * (size_t)ce.image_size;
    sv.pixels = calloc(64 * (size_t)sv.k * plane, sizeof(float));
    loader *le = loader_init(&ce);
    loader_batch b;
    int seen = 0;
    while (loader_next(le, &b) == 1)
        for (int i = 0; i < b.n; i++, seen++) {
            int key = atoi(b.keys[i] + 1);
            memcpy(sv.views[key], b.views + (size_t)i * 3, sizeof sv.views[key]);
            memcpy(sv.pixels + (size_t)key * 3 * plane, b.view_images + (size_t)i * 3 * plane, 3 * plane * sizeof(float));
            for (int k = 0; k < 3; k++) {
                const loader_view *v = &sv.views[key][k];
                assert_true(v->crop.width > 0 && v->crop.height > 0);
                assert_true(v->jitter[0] >= 0.6f && v->jitter[0] <= 1.4f && fabsf(v->jitter[3]) <= 0.1f);
            }
        }
    assert_int_equal(seen, 51);
    loader_free(le);

    loader_config c = small_config(dataset, true);
    c.output = LOADER_OUTPUT_FLOAT, c.workers = 2;
    loader *l = loader_init(&c);
    loader_set_view_source(l, (loader_view_source){pick_stored, &sv});
    int picks[2][64] = {{0}}, counts[3] = {0};
    for (int epoch = 0; epoch < 2; epoch++) {
        loader_set_epoch(l, epoch);
        while (loader_next(l, &b) == 1)
            for (int i = 0; i < b.n; i++) {
                int key = atoi(b.keys[i] + 1), k = b.view_index[i];
                assert_true(k >= 0 && k < 3);
                picks[epoch][key] = k, counts[k]++;
                assert_memory_equal(b.images + (size_t)i * plane, sv.pixels + ((size_t)key * 3 + (size_t)k) * plane,
                                    plane * sizeof(float));
            }
    }
    loader_free(l);
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    assert_memory_not_equal(picks[0], picks[1], sizeof picks[0]);
    free(sv.pixels);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_loader CLIP_VOCAB\n");
        return 2;
    }
    vocab_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coverage),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_resume_after_set_epoch),
        cmocka_unit_test(test_restore_errors),
        cmocka_unit_test(test_global_batches_independent_of_world_size),
        cmocka_unit_test(test_resampled_mixing),
        cmocka_unit_test(test_transform_values),
        cmocka_unit_test(test_eval_transform),
        cmocka_unit_test(test_corrupt_sample),
        cmocka_unit_test(test_corrupt_global_rule),
        cmocka_unit_test(test_corrupt_left_out_in_evaluation),
        cmocka_unit_test(test_damaged_shard),
        cmocka_unit_test(test_teacher_view_and_positions),
        cmocka_unit_test(test_missing_and_truncated_shards),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_tokenized),
        cmocka_unit_test(test_reader_formats),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_aug_cfg),
        cmocka_unit_test(test_stored_views),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
