// End-to-end test of `clipc train --report-to tensorboard` on the micro setup of micro_run.sh: a run
// with validation and zero-shot evaluation stopped at step 6 and resumed to step 8 leaves two event
// files in logs/NAME/tensorboard/ (a new one on resume) whose records read back (framing, both
// CRCs, file_version) and whose events hold, in order, every number of metrics.jsonl at its step
// under OpenCLIP's tags. Also: the option from --config, OpenCLIP's 'wandb' refused, an unknown
// reporter, and a run folder whose tensorboard/ cannot be made.
// Usage: test_train_tensorboard CLIPC_BINARY FASHION_MNIST_DIR TESTS_SOURCE_DIR
#include <cjson/cJSON.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli_run.h"
#include "tensorboard_read.h"

static const char *clipc, *fmnist, *tests_dir;
static char work[256];

#define MICRO "--model clip-micro --model-configs %s/configs --vocab %s/vocab.txt.gz --train-data %s/data " \
              "--batch-size 32 --train-num-samples 128 --warmup 2 --lr 1e-3 --workers 2 --seed 3 --threads 1 " \
              "--log-every-n-steps 1 --device cpu --logs %s/logs"

static int train(char *out, size_t cap, const char *extra) {
    return cli_run(out, cap, "%s train " MICRO " %s", clipc, work, work, work, work, extra);
}

static int setup(void **state) {
    (void)state;
    snprintf(work, sizeof work, "/tmp/clipc_test_train_tensorboard_XXXXXX");
    assert_non_null(mkdtemp(work));
    char out[8192];
    if (cli_run(out, sizeof out, "clipc=%s fmnist=%s work=%s bash -c '. %s/micro_run.sh && micro_setup'", clipc, fmnist,
                work, tests_dir) != 0)
        fail_msg("micro_setup: %s", out);
    return cli_run(NULL, 0, "printf 'a photo of a {}.\\nan image of a {}.\\n' > %s/templates.txt", work);
}

static int teardown(void **state) {
    (void)state;
    return cli_run(NULL, 0, "rm -rf %s", work);
}

// OpenCLIP's tags (training/train.py of v2.20.0) for clipc's metrics.jsonl fields, else
// "<type>/<field>"; NULL for the axis fields.
static const char *expected_tag(const char *type, const char *field, char *buf, size_t cap) {
    static const char *table[][3] = {
        {"train", "loss", "train/loss"}, {"train", "lr", "train/lr"}, {"train", "logit_scale", "train/scale"},
        {"train", "samples_per_s", "train/samples_per_second"}, {"train", "data_time", "train/data_time"},
        {"train", "batch_time", "train/batch_time"}, {"val", "loss", "val/clip_val_loss"},
        {"val", "n", "val/num_samples"}, {"val", "epoch", "val/epoch"},
        {"zeroshot", "top1", "val/zeroshot-val-top1"}, {"zeroshot", "top5", "val/zeroshot-val-top5"},
        {"zeroshot", "n", "val/zeroshot-num_samples"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i][0], type) && !strcmp(table[i][1], field)) return table[i][2];
    if (!strcmp(field, "step") || !strcmp(field, "epoch")) return NULL;
    snprintf(buf, cap, "%s/%s", type, field);
    return buf;
}

#define MAX_EVENTS 64

// Every event file of run's tensorboard/ folder, read whole, in the order they were started
// (their first event's time); events[] gets the scalar events. Returns the number of files.
static int read_run_events(const char *run, Tensorboard__Event **events, int *n_events) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/logs/%s/tensorboard", work, run);
    DIR *d = opendir(dir);
    if (!d) fail_msg("%s: no such folder", dir);
    Tensorboard__Event *files[4][MAX_EVENTS];
    int counts[4], n_files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        assert_true(n_files < 4);
        assert_memory_equal(e->d_name, "events.out.tfevents.", 20);
        char path[1024], why[200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        counts[n_files] = tbr_read(path, files[n_files], NULL, NULL, MAX_EVENTS, why, sizeof why);
        if (why[0]) fail_msg("%s: %s", path, why);
        assert_true(counts[n_files] >= 1);
        assert_string_equal(files[n_files][0]->file_version, "brain.Event:2");
        n_files++;
    }
    closedir(d);
    *n_events = 0;
    for (int taken = 0; taken < n_files; taken++) {
        int first = -1;
        for (int f = 0; f < n_files; f++)
            if (counts[f] >= 0 && (first < 0 || files[f][0]->wall_time < files[first][0]->wall_time)) first = f;
        for (int i = 1; i < counts[first]; i++) {
            assert_true(*n_events < MAX_EVENTS);
            events[(*n_events)++] = files[first][i];
        }
        tensorboard__event__free_unpacked(files[first][0], NULL);
        counts[first] = -1;
    }
    return n_files;
}

// Checks that events hold metrics.jsonl's numbers, line by line; returns the tags seen (a
// space-separated list, malloc'ed).
static char *check_against_metrics(const char *run, Tensorboard__Event **events, int n_events) {
    char path[512];
    snprintf(path, sizeof path, "%s/logs/%s/metrics.jsonl", work, run);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char text[4096], tags[4096] = " ";
    int e = 0;
    while (fgets(text, sizeof text, f)) {
        cJSON *line = cJSON_Parse(text);
        assert_non_null(line);
        const char *type = cJSON_GetObjectItem(line, "type")->valuestring;
        int64_t step = (int64_t)cJSON_GetObjectItem(line, "step")->valuedouble;
        size_t k = 0;
        for (cJSON *item = line->child; item; item = item->next) {
            char buf[128];
            const char *tag = cJSON_IsNumber(item) ? expected_tag(type, item->string, buf, sizeof buf) : NULL;
            if (!tag) continue;
            if (e >= n_events) fail_msg("no event for %s's %s at step %lld", type, tag, (long long)step);
            Tensorboard__Event *ev = events[e];
            assert_int_equal(ev->what_case, TENSORBOARD__EVENT__WHAT_SUMMARY);
            assert_int_equal(ev->step, step);
            assert_true(k < ev->summary->n_value);
            Tensorboard__Summary__Value *v = ev->summary->value[k++];
            assert_string_equal(v->tag, tag);
            assert_int_equal(v->value_case, TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
            if (v->simple_value != (float)item->valuedouble)
                fail_msg("%s at step %lld: event %g, metrics.jsonl %.17g", tag, (long long)step, v->simple_value,
                         item->valuedouble);
            char word[140];
            snprintf(word, sizeof word, "%s ", tag);
            if (!strstr(tags, word)) strncat(tags, word, sizeof tags - strlen(tags) - 1);
        }
        if (k > 0) assert_int_equal(k, events[e++]->summary->n_value);
        cJSON_Delete(line);
    }
    fclose(f);
    assert_int_equal(e, n_events);  // no event without its line
    return strdup(tags);
}

static void test_run_and_resume(void **state) {
    (void)state;
    char out[32768];
    const char *eval = "--val-data %s/data/val.json --zeroshot-data %s/data/val.json --zeroshot-frequency 1 "
                       "--zeroshot-templates %s/templates.txt --zeroshot-classnames %s/../configs/zeroshot/"
                       "fashion-mnist-classnames.txt --epochs 2 --name tb --report-to tensorboard";
    char flags[1024];
    snprintf(flags, sizeof flags, eval, work, work, work, tests_dir);
    char first[1200], second[1200];
    snprintf(first, sizeof first, "%s --max-steps 6 --save-steps 3", flags);
    snprintf(second, sizeof second, "%s --resume latest", flags);
    if (train(out, sizeof out, first) != 0) fail_msg("%s", out);
    if (train(out, sizeof out, second) != 0) fail_msg("%s", out);
    assert_non_null(strstr(out, "resumed from"));

    Tensorboard__Event *events[MAX_EVENTS];
    int n = 0;
    assert_int_equal(read_run_events("tb", events, &n), 2);  // one file per start
    char *tags = check_against_metrics("tb", events, n);
    printf("  %d events, tags:%s\n", n, tags);
    const char *openclip[] = {"train/loss", "train/lr", "train/scale", "train/samples_per_second", "train/data_time",
                              "train/batch_time", "val/clip_val_loss", "val/num_samples", "val/epoch",
                              "val/zeroshot-val-top1", "val/zeroshot-val-top5", "train/grad_norm"};
    for (size_t i = 0; i < sizeof openclip / sizeof *openclip; i++) {
        char word[64];
        snprintf(word, sizeof word, " %s ", openclip[i]);
        if (!strstr(tags, word)) fail_msg("no %s among%s", openclip[i], tags);
    }
    assert_int_equal(events[n - 1]->step, 8);
    for (int i = 0; i < n; i++) tensorboard__event__free_unpacked(events[i], NULL);
    free(tags);
}

static void test_options(void **state) {
    (void)state;
    char out[16384];
    // From --config, as every option (and written back to params.json).
    cli_run(NULL, 0, "echo '{\"report-to\": \"tensorboard\"}' > %s/tb.json", work);
    char flags[512];
    snprintf(flags, sizeof flags, "--config %s/tb.json --name from-config --max-steps 1 --save-frequency 0", work);
    if (train(out, sizeof out, flags) != 0) fail_msg("%s", out);
    Tensorboard__Event *events[MAX_EVENTS];
    int n = 0;
    assert_int_equal(read_run_events("from-config", events, &n), 1);
    free(check_against_metrics("from-config", events, n));
    assert_int_equal(n, 1);
    tensorboard__event__free_unpacked(events[0], NULL);
    assert_int_equal(cli_run(NULL, 0, "grep -q '\"report-to\":.*\"tensorboard\"' %s/logs/from-config/params.json", work), 0);
    // Without the flag, no folder.
    if (train(out, sizeof out, "--name plain --max-steps 1 --save-frequency 0") != 0) fail_msg("%s", out);
    assert_int_not_equal(cli_run(NULL, 0, "test -e %s/logs/plain/tensorboard", work), 0);

    // OpenCLIP's wandb (alone, with tensorboard, or as 'all') is refused with the reason; so is a typo.
    const char *refused[] = {"wandb", "wandb,tensorboard", "all"};
    for (int i = 0; i < 3; i++) {
        snprintf(flags, sizeof flags, "--name refused --report-to %s", refused[i]);
        assert_int_equal(train(out, sizeof out, flags), 2);
        if (!strstr(out, "clipc does not report to Weights & Biases")) fail_msg("%s", out);
    }
    assert_int_equal(train(out, sizeof out, "--name refused --report-to tensorbord"), 2);
    assert_non_null(strstr(out, "--report-to must be tensorboard"));
    assert_non_null(strstr(out, "got 'tensorbord'"));
    assert_int_not_equal(cli_run(NULL, 0, "test -e %s/logs/refused", work), 0);

    // A tensorboard/ that cannot be a folder (a file there): one line naming it, before any step.
    cli_run(NULL, 0, "mkdir -p %s/logs/blocked && touch %s/logs/blocked/tensorboard", work, work);
    assert_int_equal(train(out, sizeof out, "--name blocked --resume latest --report-to tensorboard"), 1);
    if (!strstr(out, "logs/blocked/tensorboard: cannot write a TensorBoard event file there: Not a directory"))
        fail_msg("%s", out);
    assert_null(strstr(out, "Train Epoch"));
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s CLIPC FASHION_MNIST_DIR TESTS_SOURCE_DIR\n", argv[0]);
        return 2;
    }
    clipc = argv[1], fmnist = argv[2], tests_dir = argv[3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_and_resume),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
