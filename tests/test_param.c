// Tests param/: names of any length kept whole (and found again), the packed layout (trainable
// values first, gradients lined up with them), and param_set_frozen()'s errors: a missing tensor
// and an integer tensor made trainable fail naming the parameter and leave it as it was.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "param/param.h"

static tensor *filled(double value, int64_t n, tensor_dtype dtype) {
    return tensor_full(&n, 1, value, dtype, TENSOR_CPU);
}

static void test_long_names_are_kept_whole(void **state) {
    (void)state;
    char name[301];
    memset(name, 'x', 300);
    name[300] = '\0';
    memcpy(name + 290, ".weight123", 10);
    param_list l;
    param_list_init(&l);
    param_list_add(&l, "short", filled(1, 2, TENSOR_F32));
    param *p = param_list_add(&l, name, filled(2, 3, TENSOR_F32));
    assert_string_equal(p->name, name);
    name[299] = '4';  // a name differing only past character 299 is another parameter
    assert_null(param_list_find(&l, name));
    name[299] = '3';
    assert_ptr_equal(param_list_find(&l, name), &l.items[1]);
    assert_int_equal(param_list_pack(&l, TENSOR_CPU), 0);
    assert_string_equal(l.items[1].name, name);
    param_list_free(&l);
}

// The frozen parameter sits after the trainable ones in data; grad holds the trainable only.
static void test_pack_layout(void **state) {
    (void)state;
    param_list l;
    param_list_init(&l);
    param_list_add(&l, "a", filled(1, 2, TENSOR_F32));
    param_list_add(&l, "b", filled(2, 3, TENSOR_F32));
    param_list_add(&l, "c", filled(3, 4, TENSOR_F32));
    assert_int_equal(param_set_frozen(&l.items[1], true), 0);
    assert_int_equal(param_list_pack(&l, TENSOR_CPU), 0);
    assert_int_equal(l.numel, 9);
    assert_int_equal(l.n_trainable, 6);
    assert_int_equal(l.items[0].offset, 0);
    assert_int_equal(l.items[2].offset, 2);
    assert_int_equal(l.items[1].offset, 6);
    float data[9];
    assert_int_equal(tensor_to_host(l.data, data, sizeof data), 0);
    const float want[9] = {1, 1, 3, 3, 3, 3, 2, 2, 2};
    assert_memory_equal(data, want, sizeof want);
    assert_int_equal(tensor_numel(l.grad), 6);
    assert_false(tensor_requires_grad(l.items[1].value));
    assert_true(tensor_requires_grad(l.items[0].value));
    param_list_free(&l);
}

static void test_set_frozen_errors(void **state) {
    (void)state;
    param_list l;
    param_list_init(&l);
    param *ids = param_list_add(&l, "token_ids", filled(1, 2, TENSOR_I64));
    param *missing = param_list_add(&l, "from.an.earlier.failure", NULL);
    assert_int_equal(param_set_frozen(ids, true), 0);  // an integer tensor may stay without a gradient
    assert_true(ids->frozen);
    assert_int_equal(param_set_frozen(ids, false), -1);
    assert_non_null(strstr(err_msg(), "parameter token_ids: "));
    assert_true(ids->frozen);  // unchanged
    assert_int_equal(param_set_frozen(missing, true), -1);
    assert_string_equal(err_msg(), "parameter from.an.earlier.failure: no tensor");
    assert_false(missing->frozen);
    param_list_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_names_are_kept_whole),
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_set_frozen_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
