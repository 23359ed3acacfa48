// log: a run's metrics.jsonl, one JSON object per line (docs/training.md lists the line types),
// built with cJSON so every string is escaped and every number round-trips. Each line carries
// "type", "step" (optimizer steps done) and "epoch"; plot/metrics_plot.h reads the file back.
#ifndef CLIPC_TRAIN_LOG_H
#define CLIPC_TRAIN_LOG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct metrics_log metrics_log;

// Opens path for appending (a resumed run continues its file). NULL with a message on failure.
metrics_log *metrics_log_open(const char *path);
void metrics_log_close(metrics_log *l);  // NULL is ignored

// A new line object {"type": type, "step": step, "epoch": epoch} to add fields to.
cJSON *metrics_line(const char *type, int64_t step, int64_t epoch);

// Writes line (and deletes it); flush pushes it to the file at once (buffered otherwise).
// Returns 0 or -1 with a message naming the file.
int metrics_log_write(metrics_log *l, cJSON *line, bool flush);

// --report-to tensorboard: from now on each line's numbers also go to a new event file in folder
// dir (train/report.h), flushed at each line. Returns 0 or -1 with a message naming dir.
int metrics_log_add_tensorboard(metrics_log *l, const char *dir);

#endif
