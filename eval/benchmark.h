// benchmark: a suite of zero-shot evaluations, many models x many datasets in one go (`clipc
// benchmark`, as LAION's CLIP_benchmark): zero-shot classification (top-1, top-5, mean per-class
// recall) and image-text retrieval (recall@1/5/10 both ways) for every (model, dataset) pair, one
// JSON file per run, skipped when already there, and one merged table (CSV and Markdown) made from
// the JSON files present.
//
// Runs are listed model by model, datasets in the given order. With several ranks (the caller
// reads torchrun's RANK and WORLD_SIZE) rank r does the contiguous block [R*r/W, R*(r+1)/W) of the
// R runs, so that each rank loads as few models as it can. No collectives are needed: each run
// writes its own file atomically, and the table is made from whatever files exist when it is written.
//
// Loading models and opening loaders are the caller's (hooks), so that this module depends on no
// command's set-up.
#ifndef CLIPC_EVAL_BENCHMARK_H
#define CLIPC_EVAL_BENCHMARK_H

#include <stdbool.h>
#include <stdint.h>

#include "loader/loader.h"
#include "text/tokenizer.h"
#include "model/clip.h"

typedef enum {
    BENCHMARK_ZEROSHOT,   // "zeroshot_classification"
    BENCHMARK_RETRIEVAL,  // "zeroshot_retrieval"
} benchmark_task;

typedef struct {
    const char *name;        // in file names and the table: letters, digits, '.', '_', '-'
    const char *pretrained;  // the weights file
    const char *config;      // model config name or path; NULL: the checkpoint's own
} benchmark_model;

typedef struct {
    const char *name;        // as for models
    const char *data;        // shards: a folder or manifest
    benchmark_task task;
    const char *classnames;  // zero-shot: list file, or NULL for the shards' own names
    const char *templates;   // zero-shot: list file (required)
} benchmark_dataset;

typedef struct {
    // Opens a model and its tokenizer for the runs that follow (the previous one is closed first).
    // Returns 0, or -1 with err_msg().
    int (*open_model)(void *ctx, const benchmark_model *m, const clip_model **model, const tokenizer **tok);
    void (*close_model)(void *ctx);
    // An evaluation loader over data for the open model, tokenizing captions when with_tokens.
    loader *(*open_loader)(void *ctx, const char *data, bool with_tokens);
    void *ctx;
} benchmark_hooks;

typedef enum {
    BENCHMARK_EVENT_START,    // a run begins
    BENCHMARK_EVENT_BATCH,    // a batch of it was evaluated
    BENCHMARK_EVENT_DONE,     // its JSON was written
    BENCHMARK_EVENT_SKIPPED,  // its JSON was already there
    BENCHMARK_EVENT_FAILED,   // it failed (error says why); the other runs go on
} benchmark_event;

typedef struct {
    benchmark_event event;
    const benchmark_model *model;
    const benchmark_dataset *dataset;
    int run, n_runs;                       // 1-based position among this rank's runs, and their count
    int64_t samples_done, samples_total;   // over this rank's runs to evaluate
    double elapsed, eta;                   // seconds since the start, and still to go (-1: unknown)
    const char *path;                      // the run's JSON file
    const char *error;                     // FAILED: the one-line reason
} benchmark_progress;

typedef struct {
    const benchmark_model *models;
    int n_models;
    const benchmark_dataset *datasets;
    int n_datasets;
    const char *out_dir;
    int rank, world_size;
    int64_t chunk_rows;                    // retrieval: queries scored at a time (0: default)
    benchmark_hooks hooks;
    void (*progress)(void *ctx, const benchmark_progress *p);  // may be NULL
    void *progress_ctx;
} benchmark_plan;

typedef struct {
    int runs, done, skipped, failed;       // this rank's runs
} benchmark_summary;

// The JSON file of run (model, dataset): OUT/<model>/<dataset>.json (malloc'ed).
char *benchmark_run_path(const benchmark_plan *p, int model, int dataset);

// Checks names (allowed characters, distinct), tasks' files, rank and world size. Returns 0 or -1
// with err_msg() naming what is wrong.
int benchmark_check(const benchmark_plan *p);

// Runs this rank's runs. A run whose JSON exists and was made from the same inputs (weights,
// config, data, task, class names, templates) is skipped; one made from other inputs fails, naming
// the file. Each finished run's JSON is written atomically. A failed run does not stop the others.
// Returns 0 when every run was done or skipped, else -1 with err_msg() saying how many failed.
int benchmark_run(const benchmark_plan *p, benchmark_summary *s);

// The merged table of the planned runs whose JSON exists, in plan order: OUT/results.csv (one row
// a run, CLIP_benchmark's metric names, fractions) and OUT/results.md (a zero-shot table and a
// retrieval table, percentages), both written atomically; *markdown gets the Markdown (malloc'ed).
// Returns the number of runs in the table, or -1 with err_msg() (an unreadable JSON file is named).
int benchmark_write_table(const benchmark_plan *p, char **markdown);

#endif
