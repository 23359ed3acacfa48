// Tests of the evaluation entry points the commands call, on a tiny random model: the label
// probabilities of image files (zeroshot_classify_files) are the softmax of exp(logit_scale) times
// the cosines between the files' features and the zero-shot classifier, computed here on the host;
// a labelled set in one call (zeroshot_evaluate_set) counts every image, and on failure names the
// cause and leaves nothing to free; the keyed host rows of eval/embed.h hold the shards', files' and
// texts' features under their keys. Bad input is an error naming the file or argument.
// Usage: test_eval_lib VOCAB
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>

#include "eval/embed.h"
#include "eval/zeroshot.h"
#include "eval_test.h"
#include "shim/tensor.h"

static const char *vocab;
static char *work, *data, *files[2];
static session sess;

static int setup(void **state) {
    (void)state;
    work = testutil_tmpdir();
    static const int sizes[2] = {4, 2};
    data = testutil_make_dataset(work, sizes, 2, 40, 40, true, -1, 0);
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.png", i);
        files[i] = testutil_path(work, name);
        image_rgb img = testutil_picture(48, 36, 10 + i);
        assert_int_equal(testutil_write_png(files[i], &img), 0);
        image_rgb_free(&img);
    }
    eval_test_write(work, "tiny.json", EVAL_TEST_TINY);
    char *cfg = testutil_path(work, "tiny.json");
    session_options so = {.model = cfg, .vocab = vocab, .device = "cpu", .threads = 1, .seed = 5};
    if (session_open(&so, &sess) != 0) fail_msg("%s", err_msg());
    free(cfg);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    session_close(&sess);
    testutil_rmtree(work);
    for (int i = 0; i < 2; i++) free(files[i]);
    free(work), free(data);
    return 0;
}

static void test_classify_files_softmax(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    const char *labels[3] = {"red", "green", "blue"}, *templ[1] = {ZEROSHOT_DEFAULT_TEMPLATE};
    float probs[2 * 3], features[2 * EVAL_TEST_E], classifier[3 * EVAL_TEST_E];
    if (zeroshot_classify_files(sess.model, sess.tok, labels, 3, NULL, files, 2, 1, probs) != 0) fail_msg("%s", err_msg());
    // The same from the pieces: image features, the classifier and the logit scale on the host.
    assert_int_equal(eval_embed_image_files(sess.model, files, 2, 2, features), 0);
    tensor *c = zeroshot_classifier(sess.model, sess.tok, labels, 3, templ, 1);
    assert_non_null(c);
    assert_int_equal(tensor_to_host(c, classifier, sizeof classifier), 0);
    tensor_free(c);
    double log_scale = 0;
    assert_int_equal(tensor_item(sess.model->logit_scale, &log_scale), 0);
    for (int i = 0; i < 2; i++) {
        double logits[3], max = -INFINITY, sum = 0;
        for (int k = 0; k < 3; k++) {
            double dot = 0;
            for (int e = 0; e < EVAL_TEST_E; e++) dot += (double)features[i * EVAL_TEST_E + e] * classifier[k * EVAL_TEST_E + e];
            logits[k] = exp(log_scale) * dot;
            if (logits[k] > max) max = logits[k];
        }
        for (int k = 0; k < 3; k++) sum += exp(logits[k] - max);
        for (int k = 0; k < 3; k++) assert_float_equal(probs[i * 3 + k], exp(logits[k] - max) / sum, 1e-5);
    }
    // A templates file with that one template gives the same probabilities.
    eval_test_write(work, "templates.txt", ZEROSHOT_DEFAULT_TEMPLATE "\n");
    char *tfile = testutil_path(work, "templates.txt");
    float again[2 * 3];
    assert_int_equal(zeroshot_classify_files(sess.model, sess.tok, labels, 3, tfile, files, 2, 2, again), 0);
    for (int i = 0; i < 6; i++) assert_float_equal(again[i], probs[i], 1e-6);
    free(tfile);
    assert_int_equal(tensor_live_count(), live);
}

static void test_classify_files_bad_input(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    const char *labels[2] = {"a", "b"};
    float probs[2 * 2];
    assert_int_equal(zeroshot_classify_files(sess.model, sess.tok, labels, 0, NULL, files, 2, 1, probs), -1);
    assert_non_null(strstr(err_msg(), "0 labels"));
    assert_int_equal(zeroshot_classify_files(sess.model, sess.tok, labels, 2, NULL, files, 2, 0, probs), -1);
    assert_non_null(strstr(err_msg(), "batch size 0"));
    assert_int_equal(zeroshot_classify_files(sess.model, sess.tok, labels, 2, "/nonexistent/t.txt", files, 2, 1, probs), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/t.txt"));
    char *missing[2] = {files[0], "/nonexistent/x.png"};
    assert_int_equal(zeroshot_classify_files(sess.model, sess.tok, labels, 2, NULL, missing, 2, 1, probs), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/x.png"));
    assert_int_equal(tensor_live_count(), live);
}

static void test_evaluate_set(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    eval_test_write(work, "t.txt", "a photo of a {}.\na picture of a {}.\n");
    char *tfile = testutil_path(work, "t.txt"), **names = NULL;
    loader *l = eval_loader_open(&sess, data, 4, 1, false);
    assert_non_null(l);
    metrics_classes counts;
    int n = zeroshot_evaluate_set(sess.model, sess.tok, l, data, NULL, tfile, &names, &counts, NULL);
    if (n < 0) fail_msg("%s", err_msg());
    assert_int_equal(n, 3);
    assert_string_equal(names[2], "two");
    assert_int_equal(counts.n, 6);
    metrics_classes_free(&counts);
    zeroshot_free_lines(names, n);
    loader_free(l);
    // Two class names for three classes, and a missing templates file: -1, names NULL, counts free.
    eval_test_write(work, "names.txt", "x\ny\n");
    char *nfile = testutil_path(work, "names.txt");
    l = eval_loader_open(&sess, data, 4, 1, false);
    assert_int_equal(zeroshot_evaluate_set(sess.model, sess.tok, l, data, nfile, tfile, &names, &counts, NULL), -1);
    assert_non_null(strstr(err_msg(), "names.txt: 2 class names"));
    assert_null(names);
    assert_int_equal(zeroshot_evaluate_set(sess.model, sess.tok, l, data, NULL, "/nonexistent/t.txt", &names, &counts, NULL), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/t.txt"));
    assert_null(names);
    assert_null(counts.confusion);
    loader_free(l);
    free(tfile), free(nfile);
    assert_int_equal(tensor_live_count(), live);
}

static void test_embeddings(void **state) {
    (void)state;
    size_t live = tensor_live_count();
    eval_embeddings e;
    eval_embeddings_init(&e, EVAL_TEST_E);
    if (eval_embed_shards(&sess, data, 4, 1, &e) != 0) fail_msg("%s", err_msg());
    assert_int_equal(e.n, 6);
    assert_string_equal(e.keys[5], "s5");
    assert_int_equal(eval_embed_files(sess.model, files, 2, 1, &e), 0);
    assert_int_equal(e.n, 8);
    assert_string_equal(e.keys[7], files[1]);
    float direct[2 * EVAL_TEST_E];
    assert_int_equal(eval_embed_image_files(sess.model, files, 2, 2, direct), 0);
    for (int i = 0; i < 2 * EVAL_TEST_E; i++) assert_float_equal(e.rows[6 * EVAL_TEST_E + i], direct[i], 1e-5);
    for (int i = 0; i < 8; i++) {  // normalized rows
        double s = 0;
        for (int k = 0; k < EVAL_TEST_E; k++) s += (double)e.rows[i * EVAL_TEST_E + k] * e.rows[i * EVAL_TEST_E + k];
        assert_float_equal(s, 1.0, 1e-4);
    }
    eval_embeddings_free(&e);
    eval_embeddings_init(&e, EVAL_TEST_E);
    eval_test_write(work, "texts.txt", "first text\n\nsecond text\n");
    char *tfile = testutil_path(work, "texts.txt");
    assert_int_equal(eval_embed_text_file(&sess, tfile, &e), 0);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.keys[1], "second text");
    const char *texts[2] = {"first text", "second text"};
    float t[2 * EVAL_TEST_E];
    assert_int_equal(eval_embed_texts(sess.model, sess.tok, texts, 2, t), 0);
    assert_memory_equal(t, e.rows, sizeof t);
    assert_int_equal(eval_embed_text_file(&sess, "/nonexistent/texts.txt", &e), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/texts.txt"));
    assert_int_equal(eval_embed_shards(&sess, "/nonexistent/manifest.json", 4, 1, &e), -1);
    assert_non_null(strstr(err_msg(), "/nonexistent/manifest.json"));
    assert_int_equal(e.n, 2);
    eval_embeddings_free(&e);
    free(tfile);
    assert_int_equal(tensor_live_count(), live);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_eval_lib VOCAB\n");
        return 2;
    }
    vocab = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_files_softmax),
        cmocka_unit_test(test_classify_files_bad_input),
        cmocka_unit_test(test_evaluate_set),
        cmocka_unit_test(test_embeddings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
