// Tests tensorboard/event_file.h: the CRC32C convention (the standard check value), files named as
// TensorBoard's writers name them, a new file at each open, the records read back (framing, both
// CRCs, the first event's file_version, each scalar's tag, step and value), the wire bytes of the
// field numbers of tensorboard's event.proto and summary.proto checked by hand, damaged files
// (a flipped byte in a length or an event, a cut last record: the records before it still read),
// and folders that cannot hold event files.
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "tensorboard/event_file.h"
#include "tensorboard_read.h"

static char work[256];

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_tensorboard_XXXXXX");
    return mkdtemp(work) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", work);
    return system(cmd);
}

static void test_crc32c_check_value(void **state) {
    (void)state;
    assert_int_equal(tbr_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
}

// Writes 3 events (steps 1, 2, 10) to a new file in dir; returns its path (malloc'ed).
static char *write_three(const char *dir) {
    tensorboard_file *f = tensorboard_open(dir);
    if (!f) fail_msg("%s", err_msg());
    const char *tags[2] = {"train/loss", "train/lr"};
    const float a[2] = {2.5f, 1e-3f}, b[2] = {0.0f, -7.25f}, c[1] = {3.0e38f};
    assert_int_equal(tensorboard_write_scalars(f, 1, 2, tags, a), 0);
    assert_int_equal(tensorboard_write_scalars(f, 2, 2, tags, b), 0);
    assert_int_equal(tensorboard_write_scalars(f, 10, 1, (const char *[]){"val/clip_val_loss"}, c), 0);
    char *path = strdup(tensorboard_path(f));
    tensorboard_close(f);
    return path;
}

static void test_round_trip(void **state) {
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/tb", work);
    char *path = write_three(dir);
    char host[256] = "";
    gethostname(host, sizeof host);
    char expect[600];
    snprintf(expect, sizeof expect, "%s/events.out.tfevents.", dir);
    assert_memory_equal(path, expect, strlen(expect));
    const char *rest = path + strlen(expect);  // <10-digit unix time>.<hostname>.<pid>.<counter>
    assert_int_equal(strspn(rest, "0123456789"), 10);
    assert_memory_equal(rest + 11, host, strlen(host));

    Tensorboard__Event *ev[8];
    uint8_t *raw[8];
    size_t size[8];
    char why[200];
    int n = tbr_read(path, ev, raw, size, 8, why, sizeof why);
    assert_string_equal(why, "");
    assert_int_equal(n, 4);
    assert_int_equal(ev[0]->what_case, TENSORBOARD__EVENT__WHAT_FILE_VERSION);
    assert_string_equal(ev[0]->file_version, "brain.Event:2");
    assert_true(ev[0]->wall_time > 1.7e9);
    const int64_t steps[3] = {1, 2, 10};
    const float values[3][2] = {{2.5f, 1e-3f}, {0.0f, -7.25f}, {3.0e38f, 0}};
    for (int i = 1; i < 4; i++) {
        assert_int_equal(ev[i]->what_case, TENSORBOARD__EVENT__WHAT_SUMMARY);
        assert_int_equal(ev[i]->step, steps[i - 1]);
        assert_true(ev[i]->wall_time >= ev[0]->wall_time);
        assert_int_equal(ev[i]->summary->n_value, i < 3 ? 2 : 1);
        for (size_t k = 0; k < ev[i]->summary->n_value; k++) {
            Tensorboard__Summary__Value *v = ev[i]->summary->value[k];
            assert_string_equal(v->tag, i < 3 ? (k ? "train/lr" : "train/loss") : "val/clip_val_loss");
            assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);  // 0 is written too
            assert_true(v->simple_value == values[i - 1][k]);
        }
    }
    // The wire bytes, by hand (field number << 3 | wire type): Event.wall_time 1 (double), then
    // Event.file_version 3 (string) ...
    assert_int_equal(raw[0][0], 1 << 3 | 1);
    assert_int_equal(raw[0][9], 3 << 3 | 2);
    assert_int_equal(raw[0][10], 13);
    assert_memory_equal(raw[0] + 11, "brain.Event:2", 13);
    // ... and Event.step 2 (varint) = 2, Event.summary 5, Summary.value 1, Value.tag 1 "train/loss",
    // Value.simple_value 2 (32-bit float).
    const uint8_t *p = raw[2] + 9;
    const uint8_t head[] = {2 << 3 | 0, 2, 5 << 3 | 2};
    assert_memory_equal(p, head, 3);
    p += 4;  // the summary's length
    assert_int_equal(p[0], 1 << 3 | 2);
    assert_int_equal(p[2], 1 << 3 | 2);
    assert_int_equal(p[3], 10);
    assert_memory_equal(p + 4, "train/loss", 10);
    assert_int_equal(p[14], 2 << 3 | 5);
    float zero;
    memcpy(&zero, p + 15, 4);
    assert_true(zero == 0.0f);
    tbr_free(ev, raw, n);

    // A second open (a resumed run) starts a new file beside the first.
    char *again = write_three(dir);
    assert_string_not_equal(again, path);
    assert_int_equal(tbr_read(path, ev, NULL, NULL, 8, why, sizeof why), 4);
    tbr_free(ev, NULL, 4);
    free(again);
    free(path);
}

// Flips the byte at offset of the file at path (or cuts it there with cut).
static void damage(const char *path, long offset, int cut) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    if (cut) {
        assert_int_equal(ftruncate(fileno(f), offset), 0);
    } else {
        fseek(f, offset, SEEK_SET);
        int c = fgetc(f);
        fseek(f, offset, SEEK_SET);
        fputc(c ^ 0x20, f);
    }
    fclose(f);
}

static void expect_read(const char *path, int n, const char *why) {
    Tensorboard__Event *ev[8];
    char got[200];
    int k = tbr_read(path, ev, NULL, NULL, 8, got, sizeof got);
    tbr_free(ev, NULL, k);
    assert_int_equal(k, n);
    assert_string_equal(got, why);
}

static void test_damaged_records(void **state) {
    (void)state;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/damaged", work);
    char *path = write_three(dir);
    Tensorboard__Event *ev[8];
    uint8_t *raw[8];
    size_t size[8];
    char why[200];
    int n = tbr_read(path, ev, raw, size, 8, why, sizeof why);
    assert_int_equal(n, 4);
    tbr_free(ev, raw, n);
    long second = 16 + (long)size[0], third = second + 16 + (long)size[1];
    char copy[700];
    snprintf(copy, sizeof copy, "%s.copy", path);
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);

    assert_int_equal(system(cmd), 0);
    damage(copy, second + 14, 0);  // inside the second record's event
    expect_read(copy, 1, "record 1: data CRC");
    assert_int_equal(system(cmd), 0);
    damage(copy, third + 2, 0);  // the third record's length
    expect_read(copy, 2, "record 2: length CRC");
    assert_int_equal(system(cmd), 0);
    damage(copy, third + 20, 1);  // cut inside the third record (an interrupted write)
    expect_read(copy, 2, "record 2: truncated data");
    free(path);
}

static void test_unwritable_folders(void **state) {
    (void)state;
    assert_true(tensorboard_built());
    err_clear();
    assert_null(tensorboard_open("/nonexistent-clipc-folder/run/tensorboard"));
    assert_non_null(strstr(err_msg(), "/nonexistent-clipc-folder/run/tensorboard: cannot create the TensorBoard folder"));
    char file[300];
    snprintf(file, sizeof file, "%s/a-file", work);
    FILE *f = fopen(file, "w");
    fclose(f);
    assert_null(tensorboard_open(file));
    assert_non_null(strstr(err_msg(), "a-file: cannot write a TensorBoard event file there: Not a directory"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damaged_records),
        cmocka_unit_test(test_unwritable_folders),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
