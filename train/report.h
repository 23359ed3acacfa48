// report: --report-to (OpenCLIP's flag): where a run's metrics go besides metrics.jsonl, and the
// TensorBoard scalars of a metrics.jsonl line (tensorboard/event_file.h), under OpenCLIP's tags.
#ifndef CLIPC_TRAIN_REPORT_H
#define CLIPC_TRAIN_REPORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "tensorboard/event_file.h"

typedef struct {
    bool tensorboard;  // event files under logs/NAME/tensorboard/
} report_targets;

// Parses --report-to: a comma-separated list of OpenCLIP's names. "tensorboard" is written;
// "wandb" (and "all", which includes it) is refused with the reason; "" or NULL reports nowhere
// else. Returns 0 or -1 with a message naming the value.
int report_parse_targets(const char *value, report_targets *out);

// Writes the numbers of a metrics.jsonl line as one event at its "step": each field under
// OpenCLIP's tag where it has one (train/loss, train/lr, train/scale, train/samples_per_second,
// val/clip_val_loss, ...), else "<type>/<field>"; "step" and "epoch" are the axis, not scalars
// (but for val/epoch, as OpenCLIP logs it); text fields are left out. Returns 0 or -1.
int report_write_scalars(tensorboard_file *f, const cJSON *line);

#endif
