// Tests that a run's params.json (train_options_print as JSON) is accepted back by --config and
// resolves to the same options: every value of every type survives, unset strings included; and
// option values refused with their one-line message.
#include <math.h>
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
                    "--epochs-cooldown", "1", "--name", "run \"quoted\"", "--image-mean", "0.5", "0.25", "-0.125",
                    "--image-std", "0.5", "--force-patch-dropout", "0", "--lock-text-unlocked-layers", "2",
                    "--val-frequency", "3", "--precision", "amp"};
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
    assert_true(second.image_mean[0] == 0.5 && second.image_mean[1] == 0.25 && second.image_mean[2] == -0.125);
    assert_true(second.image_std[0] == 0.5 && second.image_std[2] == 0.5);  // one value for all three
    assert_true(second.force_patch_dropout == 0 && second.lock_text_unlocked_layers == 2 && second.val_frequency == 3);
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

// Defaults: no override of the model (NaN mean, negative patch dropout), precision chosen later.
static void test_defaults(void **state) {
    (void)state;
    char *argv[] = {"--train-data", "x"};
    train_options o;
    assert_int_equal(train_options_parse(&o, 2, argv), 0);
    assert_null(o.precision);
    assert_true(isnan(o.image_mean[0]) && isnan(o.image_std[0]) && o.force_patch_dropout < 0);
    assert_true(o.val_frequency == 1 && !o.delete_previous_checkpoint && !o.force_quick_gelu);
    char *json = params_json(&o);
    assert_null(strstr(json, "image-mean"));  // unset: left out, so that --config reads it back
    free(json);
}

// Each bad value is an error naming its flag.
static void test_bad_values(void **state) {
    (void)state;
    struct {
        const char *args, *message;
    } cases[] = {
        {"--image-mean 0.5 0.5", "'image-mean' expects 3 numbers (or 1 for all three), got 2"},
        {"--image-mean 0.5 0.5 0.5 0.5", "'image-mean' expects 3 numbers"},
        {"--image-std 0.5 x 0.5", "'image-std' expects 3 numbers"},
        {"--image-std", "'--image-std' needs 3 numbers"},
        {"--image-std 0.2 0 0.2", "--image-std must be positive, got 0"},
        {"--force-patch-dropout 1", "--force-patch-dropout must be in [0, 1), got 1"},
        {"--lock-image-unlocked-groups 2", "need --lock-image"},
        {"--lock-text --lock-text-unlocked-layers -1", "--lock-text-unlocked-layers must be 0 or more"},
        {"--lock-text-freeze-layer-norm", "need --lock-text"},
        {"--val-frequency 0", "--val-frequency must be 1 or more"},
        {"--precision fp16", "--precision fp16 (OpenCLIP's float16 weights"},
        {"--precision pure_fp16", "use amp (float16 autocast with loss scaling) or amp_bf16"},
        {"--precision fp8", "must be fp32, amp_bf16, pure_bf16 or amp, got 'fp8'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char text[256], *argv[16];
        snprintf(text, sizeof text, "--train-data x %s", cases[i].args);
        int argc = 0;
        for (char *tok = strtok(text, " "); tok && argc < 16; tok = strtok(NULL, " ")) argv[argc++] = tok;
        train_options o;
        assert_int_equal(train_options_parse(&o, argc, argv), -1);
        if (!strstr(err_msg(), cases[i].message)) fail_msg("%s: got '%s'", cases[i].args, err_msg());
    }
    // In a --config file: an array of 3 (or 1) numbers.
    char path[] = "/tmp/clipc_test_options_XXXXXX";
    int fd = mkstemp(path);
    const char *json = "{\"image_mean\": [0.1, 0.2]}";
    assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    char *argv[] = {"--train-data", "x", "--config", path};
    train_options o;
    assert_int_equal(train_options_parse(&o, 4, argv), -1);
    assert_non_null(strstr(err_msg(), "'image-mean' expects 3 numbers"));
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_json_round_trip),
        cmocka_unit_test(test_zero_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
