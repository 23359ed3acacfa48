// finetune: `clipc finetune` in one call (docs/fewshot.md). K shots per class are drawn from the
// training set and written to OUT/shots (shards/shots.h); then the zero-shot accuracy on the test
// set, a linear probe on frozen features (probe.safetensors), and end-to-end fine-tuning from the
// zero-shot head (finetune/tune.h) with WiSE-FT interpolation between the initial and tuned weights
// (finetuned.* and wiseft.* weights and heads), each scored on the test set, with a JSON report.
// Progress reaches the caller as events; the library prints nothing.
#ifndef CLIPC_FINETUNE_FINETUNE_H
#define CLIPC_FINETUNE_FINETUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "finetune/fewshot.h"
#include "session/session.h"

typedef enum {
    FINETUNE_EVENT_SHOTS,     // the shots are written: n_classes, path (the shot set)
    FINETUNE_EVENT_ZEROSHOT,  // top1 of the zero-shot head on n_test images, n_templates
    FINETUNE_EVENT_PROBE,     // the probe is fitted, scored (top1) and saved (path); probe
    FINETUNE_EVENT_TRAIN,     // fine-tuning starts: total steps, batch, warmup
    FINETUNE_EVENT_STEP,      // a fine-tuning step: step of total, epoch, loss, lr
    FINETUNE_EVENT_WISEFT,    // the index-th interpolation: alpha, top1
} finetune_event_kind;

typedef struct {
    finetune_event_kind kind;
    int n_classes, n_templates, batch, index;
    int64_t n_test, step, total, epoch, warmup;
    double top1, loss, lr, alpha;
    const char *path;
    const probe_report *probe;
} finetune_event;

typedef struct {
    session_options session;      // model, weights (.pretrained), vocabulary (required), device, threads
    const char *train_data;       // labelled manifest the shots are drawn from
    const char *test_data;        // labelled manifest of the test accuracy
    const char *out_dir;          // shots, heads and weights
    const char *output;           // the JSON report (NULL: none)
    const char *templates;        // templates file (NULL: ZEROSHOT_DEFAULT_TEMPLATE)
    const char *classnames;       // class names file (NULL: the training set's)
    bool probe, finetune;         // which methods run (the zero-shot accuracy always)
    int shots;                    // K, in [1, 1000000]
    int64_t seed;                 // of the shot draw and of fine-tuning's data order
    int epochs, batch_size;       // fine-tuning: >= 1 (the batch is capped at the number of shots)
    int64_t warmup;               // fine-tuning warmup steps (< 0: a tenth of the steps)
    double probe_lambda;          // the probe's L2 strength (< 0: chosen on held-out shots)
    double lr, wd, wiseft_alpha;  // wiseft_alpha in [0, 1]: the interpolation saved as wiseft.*
    int64_t test_num_samples;     // test on the first N test samples (0: all)
    int workers;                  // data loading threads
    void (*on_event)(void *ctx, const finetune_event *e);  // may be NULL
    void *ctx;
} finetune_options;

// The defaults of `clipc finetune` (K = 16, 20 epochs of batch 32, lr 1e-5, wd 0.1, alpha 0.5,
// both methods, the probe's strength swept); the paths are NULL.
finetune_options finetune_options_default(void);

// Checks what needs no file: the required paths, K, epochs, batch size and alpha. Returns 0 or -1
// naming the option (as its `clipc finetune` flag).
int finetune_options_check(const finetune_options *o);

typedef struct {
    int n_classes;
    int64_t n_test;          // test images scored
    double zeroshot_top1;
    double probe_top1, probe_lambda;                  // with o->probe
    double finetuned_top1, best_alpha, best_top1;     // with o->finetune: alpha 1, the best WiSE-FT
} finetune_result;

// Runs `clipc finetune` as o says. Returns 0, or -1 with err_msg() naming the file, option or
// step at fault (what was written before then stays).
int finetune_run(const finetune_options *o, finetune_result *out);

#endif
