// metrics_plot: reads a training run's metrics.jsonl (one JSON object per line, written by the
// training loop) and draws its curves as PNGs: loss (raw and smoothed), learning rate, logit
// scale, zero-shot accuracy and a 2x2 overview. The engine of `clipc plot`.
//
// Lines used: {"type":"train","step":..,"loss":..,"lr":..,"logit_scale":..,"samples_per_s":..}
// and {"type":"zeroshot","step":..,"dataset":"..","top1":..,"top5":..}. Lines of other types are
// used for what they carry of those fields ("loss" is drawn as "<type> loss", "top1"/"top5" as
// accuracy), else ignored. Malformed lines are counted, reported and skipped.
#ifndef CLIPC_PLOT_METRICS_PLOT_H
#define CLIPC_PLOT_METRICS_PLOT_H

#define METRICS_PLOT_MAX_WARNINGS 8
#define METRICS_PLOT_MAX_FILES 8

typedef struct {
    int n_train;         // training lines used
    int n_eval;          // zero-shot (or other accuracy) lines used
    int n_malformed;     // lines skipped as malformed
    char *warnings[METRICS_PLOT_MAX_WARNINGS];  // "<file>:<line>: <problem>", the first ones
    int n_warnings;
    char *written[METRICS_PLOT_MAX_FILES];      // paths of the PNGs written
    int n_written;
} metrics_plot_report;

// Draws the curves of run_dir/metrics.jsonl into out_dir (NULL: run_dir/plots, created when
// missing). Returns 0, or -1 with err_msg() set (missing or unreadable file, no training lines,
// a PNG that cannot be written); rep is filled either way and must be freed.
int metrics_plot_run(const char *run_dir, const char *out_dir, metrics_plot_report *rep);
void metrics_plot_report_free(metrics_plot_report *rep);

#endif
