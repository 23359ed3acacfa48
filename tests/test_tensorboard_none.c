// Tests tensorboard/event_file_none.c, the tensorboard/event_file.h of a clipc configured without
// libprotobuf-c, protoc-c or ISA-L: tensorboard_built() says so and opening fails with one line
// naming the folder and the reason, creating nothing.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "tensorboard/event_file.h"

static void test_open_refused(void **state) {
    (void)state;
    assert_false(tensorboard_built());
    const char *dir = "/tmp/clipc-test-tensorboard-none";
    assert_null(tensorboard_open(dir));
    assert_non_null(strstr(err_msg(), "/tmp/clipc-test-tensorboard-none: this clipc was built without TensorBoard"));
    assert_int_equal(access(dir, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_open_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
