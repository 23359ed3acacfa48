// distill_testutil: what the distillation tests (test_distill, test_distill_views) share: text
// files and seeded teachers written into a work folder, CPU sessions, stored-target caches.
// Header-only; include it after cmocka.h.
#ifndef CLIPC_TESTS_DISTILL_TESTUTIL_H
#define CLIPC_TESTS_DISTILL_TESTUTIL_H

#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "data_testutil.h"
#include "train/distill.h"
#include "train/distill_cache.h"

// work/name holding text; the path, to free.
static inline char *distill_test_write_text(const char *work, const char *name, const char *text) {
    char *path = testutil_path(work, name);
    assert_int_equal(testutil_write_file(path, text, strlen(text)), 0);
    return path;
}

// work/name: the weights of a model of config initialised with seed; the path, to free.
static inline char *distill_test_make_teacher(const char *work, const char *config, const char *name, uint64_t seed) {
    clip_config cfg;
    assert_int_equal(clip_config_load(config, &cfg), 0);
    clip_model *m = clip_model_init(&cfg, seed);
    char *path = testutil_path(work, name);
    assert_int_equal(clip_model_save(m, path, NULL), 0);
    clip_model_free(m);
    return path;
}

static inline session_options distill_test_options(const char *model, const char *weights, const char *vocab) {
    return (session_options){.model = model, .pretrained = weights, .vocab = vocab, .device = "cpu", .threads = 1,
                             .seed = 5};
}

static inline void distill_test_open_session(const char *model, const char *weights, const char *vocab, session *s) {
    session_options so = distill_test_options(model, weights, vocab);
    if (session_open(&so, s) != 0) fail_msg("%s", err_msg());
}

// The stored targets of the teacher (config teacher_cfg, weights teacher) as o says.
static inline void distill_test_build_cache(const char *teacher_cfg, const char *teacher, const char *vocab,
                                            const distill_cache_build_options *o) {
    session s;
    distill_test_open_session(teacher_cfg, teacher, vocab, &s);
    distill_teacher_id id;
    assert_int_equal(distill_teacher_id_init(&id, &s.cfg, teacher), 0);
    if (distill_cache_build(&s, &id, o) != 0) fail_msg("%s", err_msg());
    distill_teacher_id_free(&id);
    session_close(&s);
}

#endif
