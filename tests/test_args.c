// Tests the shared option parser: values, flags, positional arguments, JSON config with flags
// taking precedence, and nearest-name suggestions for unknown options and keys.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/args.h"
#include "common/error.h"

typedef struct {
    long batch;
    double lr;
    bool flag;
    char *name;
} opts;

static int make_specs(arg_spec *s, opts *o) {
    arg_spec specs[] = {
        {"batch-size", ARG_INT, &o->batch, "batch", false},
        {"lr", ARG_FLOAT, &o->lr, "learning rate", false},
        {"lock-image", ARG_FLAG, &o->flag, "freeze", false},
        {"name", ARG_STR, &o->name, "run name", false},
    };
    memcpy(s, specs, sizeof specs);
    return 4;
}

static void test_parse_values(void **state) {
    (void)state;
    opts o = {0};
    arg_spec s[4];
    int n = make_specs(s, &o);
    char *argv[] = {"--batch-size", "32", "--lr=0.001", "--lock-image", "pos", "--name", "x"};
    char *pos[2];
    int np = 0;
    assert_int_equal(args_parse(s, n, 7, argv, pos, 2, &np), 0);
    assert_int_equal(o.batch, 32);
    assert_true(o.lr == 0.001);
    assert_true(o.flag);
    assert_string_equal(o.name, "x");
    assert_int_equal(np, 1);
    assert_string_equal(pos[0], "pos");
}

static void test_unknown_suggests(void **state) {
    (void)state;
    opts o = {0};
    arg_spec s[4];
    int n = make_specs(s, &o);
    char *argv[] = {"--batch-sise", "3"};
    assert_int_equal(args_parse(s, n, 2, argv, NULL, 0, NULL), -1);
    assert_non_null(strstr(err_msg(), "unknown option '--batch-sise' (did you mean '--batch-size'?)"));
}

static void test_bad_number(void **state) {
    (void)state;
    opts o = {0};
    arg_spec s[4];
    int n = make_specs(s, &o);
    char *argv[] = {"--lr", "fast"};
    assert_int_equal(args_parse(s, n, 2, argv, NULL, 0, NULL), -1);
    assert_non_null(strstr(err_msg(), "'lr' expects a number"));
}

static void test_json_flags_override(void **state) {
    (void)state;
    opts o = {0};
    arg_spec s[4];
    int n = make_specs(s, &o);
    char *argv[] = {"--lr", "0.5"};
    assert_int_equal(args_parse(s, n, 2, argv, NULL, 0, NULL), 0);
    assert_int_equal(args_apply_json(s, n, "{\"lr\": 0.1, \"batch_size\": 64, \"lock-image\": true}", "c.json"), 0);
    assert_true(o.lr == 0.5);
    assert_int_equal(o.batch, 64);
    assert_true(o.flag);
    assert_int_equal(args_apply_json(s, n, "{\"nmae\": \"x\"}", "c.json"), -1);
    assert_non_null(strstr(err_msg(), "c.json: unknown option 'nmae' (did you mean 'name'?)"));
}

// ARG_FLOAT3: the numbers after the option (up to the next one), or one for all three; in JSON an
// array or a number; printed back as JSON only when set.
static void test_float3(void **state) {
    (void)state;
    double mean[3] = {NAN, NAN, NAN};
    long batch = 0;
    arg_spec s[2] = {{"image-mean", ARG_FLOAT3, mean, "mean", false}, {"batch-size", ARG_INT, &batch, "batch", false}};
    char *argv[] = {"--image-mean", "0.5", "-0.25", "1e-1", "--batch-size", "4"};
    assert_int_equal(args_parse(s, 2, 6, argv, NULL, 0, NULL), 0);
    assert_true(mean[0] == 0.5 && mean[1] == -0.25 && mean[2] == 0.1 && batch == 4);
    char *one[] = {"--image-mean=0.75"};
    assert_int_equal(args_parse(s, 2, 1, one, NULL, 0, NULL), 0);
    assert_true(mean[0] == 0.75 && mean[1] == 0.75 && mean[2] == 0.75);
    char *two[] = {"--image-mean", "1", "2", "--batch-size", "4"};
    assert_int_equal(args_parse(s, 2, 5, two, NULL, 0, NULL), -1);
    assert_non_null(strstr(err_msg(), "'image-mean' expects 3 numbers (or 1 for all three), got 2"));
    char *none[] = {"--image-mean"};
    assert_int_equal(args_parse(s, 2, 1, none, NULL, 0, NULL), -1);
    assert_non_null(strstr(err_msg(), "'--image-mean' needs 3 numbers"));
    s[0].seen = false;
    if (args_apply_json(s, 2, "{\"image_mean\": [1, 2, 3]}", "c.json") != 0) fail_msg("%s", err_msg());
    assert_true(mean[0] == 1 && mean[2] == 3);
    s[0].seen = false;
    assert_int_equal(args_apply_json(s, 2, "{\"image_mean\": [1, \"x\", 3]}", "c.json"), -1);
    assert_non_null(strstr(err_msg(), "c.json: option 'image-mean' expects 3 numbers"));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    args_print(s, 2, f, true);
    fclose(f);
    assert_non_null(strstr(text, "[1, 2, 3]"));
    free(text);
    mean[0] = NAN;  // unset: left out of JSON
    f = open_memstream(&text, &len);
    args_print(s, 2, f, true);
    fclose(f);
    assert_null(strstr(text, "image-mean"));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_unknown_suggests),
        cmocka_unit_test(test_bad_number),
        cmocka_unit_test(test_json_flags_override),
        cmocka_unit_test(test_float3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
