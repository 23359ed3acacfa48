// train: a whole training run (`clipc train`): model, data, optimizer and schedule set up from the
// options, optional resume, the loop over epochs with checkpoints, validation and zero-shot
// evaluation, and the run folder (params.json, metrics.jsonl, checkpoints/).
#ifndef CLIPC_TRAIN_TRAIN_H
#define CLIPC_TRAIN_TRAIN_H

#include "train/options.h"

// Runs the training described by o. Returns 0, or -1 with err_msg() naming the culprit.
int train_run(const train_options *o);

#endif
