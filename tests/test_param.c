// Tests param/: names of any length kept whole (and found again), the packed layout (trainable
// values first, gradients lined up with them), and param_set_frozen()'s errors: a missing tensor
// and an integer tensor made trainable fail naming the parameter and leave it as it was. The
// gradient hooks of shim/grad_hook.h on packed parameters: each fires once per backward, in the
// backward's order, after the gradient is in the flat gradient buffer; not after removal.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "param/param.h"
#include "shim/grad_hook.h"

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

// ---- gradient hooks -------------------------------------------------------------------------------

typedef struct {
    param_list *l;
    int order[8], n;
    float seen[8];  // the flat gradient buffer's first element of the parameter when its hook fired
} hook_log;

static void on_gradient(void *ctx, int index) {
    hook_log *h = ctx;
    float g[4];  // the trainable a and b
    if (h->n < 8 && tensor_to_host(h->l->grad, g, sizeof g) == 0) h->seen[h->n] = g[h->l->items[index].offset];
    if (h->n < 8) h->order[h->n] = index;
    h->n++;
}

// loss = sum((2 a) * b): b's gradient (2a) comes out of the last op, a's (2b) one op further back.
static int backward_once(param_list *l) {
    tensor_scope_begin();
    tensor *a = l->items[0].value, *b = l->items[1].value;
    int rc = tensor_backward(tensor_sum(tensor_mul(tensor_mul_scalar(a, 2.0), b)), NULL);
    tensor_scope_end();
    return rc;
}

static void test_grad_hooks(void **state) {
    (void)state;
    param_list l;
    param_list_init(&l);
    param_list_add(&l, "a", filled(3, 2, TENSOR_F32));  // grad buffer [0, 2): 2b = 10
    param_list_add(&l, "b", filled(5, 2, TENSOR_F32));  // grad buffer [2, 4): 2a = 6
    param_list_add(&l, "frozen", filled(1, 1, TENSOR_F32));
    assert_int_equal(param_set_frozen(&l.items[2], true), 0);
    assert_int_equal(param_list_pack(&l, TENSOR_CPU), 0);
    hook_log h = {.l = &l};
    tensor_grad_hook *hooks[2];
    for (int i = 0; i < 2; i++) assert_non_null(hooks[i] = tensor_grad_hook_add(l.items[i].value, on_gradient, &h, i));
    assert_null(tensor_grad_hook_add(l.items[2].value, on_gradient, &h, 2));  // frozen: no gradient
    assert_non_null(strstr(err_msg(), "not a leaf that requires grad"));
    assert_int_equal(backward_once(&l), 0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.order[0], 1);  // the backward's order: b first
    assert_int_equal(h.order[1], 0);
    assert_true(h.seen[0] == 6.0f && h.seen[1] == 10.0f);  // already accumulated into the flat buffer
    assert_int_equal(backward_once(&l), 0);  // once more per backward, accumulating
    assert_int_equal(h.n, 4);
    assert_true(h.seen[2] == 12.0f && h.seen[3] == 20.0f);
    tensor_grad_hook_remove(hooks[0]);
    tensor_grad_hook_remove(hooks[1]);
    assert_int_equal(backward_once(&l), 0);
    assert_int_equal(h.n, 4);
    param_list_free(&l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_long_names_are_kept_whole),
        cmocka_unit_test(test_pack_layout),
        cmocka_unit_test(test_set_frozen_errors),
        cmocka_unit_test(test_grad_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
