// Tests that a run's params.json (train_options_print as JSON) is accepted back by --config and
// resolves to the same options: every value of every type survives, unset strings included; and
// option values refused with their one-line message.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "train/options.h"

// The options as params.json text, without the "config" key (the file each parse read).
static char *params_json(const train_options *o) {
    train_options copy = *o;
    copy.config = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    train_options_print(&copy, f, true);
    fclose(f);
    return text;
}

static void test_params_json_round_trip(void **state) {
    (void)state;
    char *argv[] = {"--train-data", "shards/a::shards/b", "--lr", "0.000123456789", "--epochs", "3",
                    "--lock-text", "--wd", "0.1", "--warmup", "7", "--lr-scheduler", "const-cooldown",
                    "--epochs-cooldown", "1", "--name", "run \"quoted\""};
    train_options first;
    assert_int_equal(train_options_parse(&first, sizeof argv / sizeof *argv, argv), 0);
    assert_null(first.resume);  // an unset string: the case that used to be written as null
    char *json = params_json(&first);
    assert_null(strstr(json, "null"));
    char path[] = "/tmp/clipc_test_options_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);

    char *again[] = {"--config", path};
    train_options second;
    if (train_options_parse(&second, 2, again) != 0) fail_msg("%s\n%s", err_msg(), json);
    char *back = params_json(&second);
    assert_string_equal(back, json);
    assert_true(second.lr == first.lr && second.lock_text && second.epochs_cooldown == 1);
    assert_null(second.resume);
    assert_string_equal(second.name, "run \"quoted\"");
    unlink(path);
    free(json);
    free(back);
}

// --zero takes 0, 1 or 2; anything else is refused with one line naming the flag and the value.
static void test_zero_values(void **state) {
    (void)state;
    const char *values[] = {"0", "1", "2", "3", "-1"};
    for (int i = 0; i < 5; i++) {
        char *argv[] = {"--train-data", "shards", "--zero", (char *)values[i]};
        train_options o;
        int rc = train_options_parse(&o, 4, argv);
        if (i < 3) {
            assert_int_equal(rc, 0);
            assert_int_equal(o.zero, i);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err_msg(), "--zero must be 0, 1 (shard the AdamW state) or 2 (and the gradients), got"));
            assert_non_null(strstr(err_msg(), values[i]));
            assert_null(strchr(err_msg(), '\n'));
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_json_round_trip),
        cmocka_unit_test(test_zero_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
