// Tests the shared option parser: values, flags, positional arguments, JSON config with flags
// taking precedence, and nearest-name suggestions for unknown options and keys.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_unknown_suggests),
        cmocka_unit_test(test_bad_number),
        cmocka_unit_test(test_json_flags_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
