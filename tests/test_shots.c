// Tests of the few-shot draw (shards/shots.h): the same seed gives the same samples, every class gets
// exactly K distinct samples of its own, smaller draws are prefixes of larger ones, a class with
// fewer than K samples and an unlabelled set are errors, and the written shot set holds the drawn
// samples byte for byte.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "shards/shard.h"
#include "shards/shots.h"
#include "data_testutil.h"

static char *tmp;
static manifest *labelled;  // 3 shards of 7, 5 and 9 samples, labels k % 3: 7 per class

// A dataset of shards of the given sizes in tmp/name (testutil_make_dataset), loaded.
static manifest *make_set(const char *name, const int *sizes, int n_shards, bool with_labels) {
    char *dir = testutil_path(tmp, name);
    fs_mkdirs(dir);
    char *path = testutil_make_dataset(dir, sizes, n_shards, 8, 8, with_labels, -1, 0);
    manifest *m = manifest_load(path);
    free(path);
    free(dir);
    return m;
}

static int setup(void **state) {
    (void)state;
    tmp = testutil_tmpdir();
    static const int sizes[3] = {7, 5, 9};
    labelled = make_set("set", sizes, 3, true);
    return labelled ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    manifest_free(labelled);
    testutil_rmtree(tmp);
    free(tmp);
    return 0;
}

// The global sample number ("s<k>" keys) of shot j.
static int64_t global_index(const shot_set *s, int64_t j) {
    int64_t k = s->index[j];
    for (int sh = 0; sh < s->shard[j]; sh++) k += labelled->shards[sh].num_samples;
    return k;
}

static void test_same_seed_same_samples(void **state) {
    (void)state;
    shot_set a, b, c;
    assert_int_equal(shots_draw(labelled, 3, 42, &a), 0);
    assert_int_equal(shots_draw(labelled, 3, 42, &b), 0);
    assert_int_equal(shots_draw(labelled, 3, 43, &c), 0);
    assert_memory_equal(a.shard, b.shard, 9 * sizeof(int32_t));
    assert_memory_equal(a.index, b.index, 9 * sizeof(int64_t));
    bool differs = false;
    for (int j = 0; j < 9; j++) differs |= global_index(&a, j) != global_index(&c, j);
    assert_true(differs);
    shots_free(&a);
    shots_free(&b);
    shots_free(&c);
}

static void test_exactly_k_per_class(void **state) {
    (void)state;
    for (int k = 1; k <= 7; k++) {
        shot_set s;
        assert_int_equal(shots_draw(labelled, k, 7, &s), 0);
        assert_int_equal(s.n_classes, 3);
        assert_int_equal(s.shots, k);
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < k; j++) {
                int64_t g = global_index(&s, (int64_t)c * k + j);
                assert_int_equal(g % 3, c);  // the sample's label is its class
                for (int i = 0; i < j; i++) assert_true(g != global_index(&s, (int64_t)c * k + i));
            }
        shots_free(&s);
    }
}

static void test_draws_are_nested(void **state) {
    (void)state;
    shot_set small, large;
    assert_int_equal(shots_draw(labelled, 2, 5, &small), 0);
    assert_int_equal(shots_draw(labelled, 6, 5, &large), 0);
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < 2; j++) assert_int_equal(global_index(&small, c * 2 + j), global_index(&large, c * 6 + j));
    shots_free(&small);
    shots_free(&large);
}

static void test_too_few_samples(void **state) {
    (void)state;
    shot_set s;
    assert_int_equal(shots_draw(labelled, 8, 0, &s), -1);
    assert_non_null(strstr(err_msg(), "class 0 ('zero') has 7 samples, fewer than the 8 shots"));
    assert_int_equal(shots_draw(labelled, 0, 0, &s), -1);
    assert_non_null(strstr(err_msg(), "at least 1"));
}

static void test_unlabelled_set(void **state) {
    (void)state;
    static const int sizes[1] = {6};
    manifest *m = make_set("unlabelled", sizes, 1, false);
    assert_non_null(m);
    shot_set s;
    assert_int_equal(shots_draw(m, 1, 0, &s), -1);
    assert_non_null(strstr(err_msg(), "unlabelled"));
    manifest_free(m);
}

static void test_missing_shard(void **state) {
    (void)state;
    static const int sizes[2] = {3, 3};
    manifest *m = make_set("missing", sizes, 2, true);
    assert_non_null(m);
    assert_int_equal(remove(m->shards[1].resolved_path), 0);
    shot_set s;
    assert_int_equal(shots_draw(m, 1, 0, &s), -1);
    assert_non_null(strstr(err_msg(), "shard-00001.h5"));
    manifest_free(m);
}

// The written set holds the drawn samples in draw order, bytes, captions, keys and labels intact.
static void test_write_round_trip(void **state) {
    (void)state;
    shot_set s;
    assert_int_equal(shots_draw(labelled, 4, 9, &s), 0);
    char *dir = testutil_path(tmp, "shots");
    assert_int_equal(shots_write(labelled, &s, dir), 0);
    char *mpath = fs_join(dir, "manifest.json");
    manifest *m = manifest_load(mpath);
    assert_non_null(m);
    assert_int_equal(m->num_samples, 12);
    assert_int_equal(m->n_classes, 3);
    assert_string_equal(m->class_names[2], "two");
    shard_reader *out = shard_reader_open(m->shards[0].resolved_path);
    assert_non_null(out);
    for (int j = 0; j < 12; j++) {
        shard_reader *in = shard_reader_open(labelled->shards[s.shard[j]].resolved_path);
        assert_non_null(in);
        int64_t i = s.index[j];
        assert_string_equal(shard_reader_key(out, j), shard_reader_key(in, i));
        assert_string_equal(shard_reader_caption(out, j), shard_reader_caption(in, i));
        assert_int_equal(shard_reader_label(out, j), j / 4);
        size_t na = shard_reader_image_offset(out, j + 1) - shard_reader_image_offset(out, j);
        size_t nb = shard_reader_image_offset(in, i + 1) - shard_reader_image_offset(in, i);
        assert_int_equal(na, nb);
        uint8_t *a = malloc(na), *b = malloc(nb);
        assert_int_equal(shard_reader_read_images(out, j, 1, a), 0);
        assert_int_equal(shard_reader_read_images(in, i, 1, b), 0);
        assert_memory_equal(a, b, na);
        free(a);
        free(b);
        shard_reader_close(in);
    }
    shard_reader_close(out);
    manifest_free(m);
    free(mpath);
    free(dir);
    shots_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_same_samples), cmocka_unit_test(test_exactly_k_per_class),
        cmocka_unit_test(test_draws_are_nested),       cmocka_unit_test(test_too_few_samples),
        cmocka_unit_test(test_unlabelled_set),         cmocka_unit_test(test_missing_shard),
        cmocka_unit_test(test_write_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
