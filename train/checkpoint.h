// checkpoint: what a training run saves to continue exactly where it stopped.
//
// A checkpoint is a pair of safetensors files in RUN/checkpoints/:
//   <stem>.safetensors        the weights, OpenCLIP keys (loadable by OpenCLIP), with the model
//                             config ("clipc.config") and the step ("clipc.step") in the metadata;
//   <stem>.state.safetensors  the optimizer moments and step counts, the training step and epoch,
//                             the data loader's position ("train.loader_state", U8) and the values
//                             of any trainable parameters outside the model ("param.<name>", e.g.
//                             the distillation projections), with the weights file's name and step
//                             in the metadata.
// Each file is written atomically (temporary file, fsync, rename), weights first, so a crash never
// damages an earlier checkpoint; a state file whose weights file is missing or has another step
// is refused as mismatched.
#ifndef CLIPC_TRAIN_CHECKPOINT_H
#define CLIPC_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model/clip.h"
#include "optim/adamw.h"

typedef struct {
    int64_t step;            // optimizer steps done
    int64_t epoch;           // epoch of the next batch
    uint8_t *loader_state;   // loader_state_save() bytes (malloc'ed)
    size_t loader_state_size;
    param_list *extra;       // parameters outside the model, saved and loaded by name; NULL: none
} train_position;

// Saves <dir>/<stem>.safetensors and <dir>/<stem>.state.safetensors.
int checkpoint_save(const char *dir, const char *stem, const clip_model *m, const adamw *opt,
                    const train_position *pos);

// Loads a checkpoint given either file of the pair (or the stem path). On success pos holds a
// malloc'ed loader state, and the parameters of pos->extra (when set) their saved values: the file
// must hold exactly those. Errors name the file and the defect.
int checkpoint_load(const char *path, clip_model *m, adamw *opt, train_position *pos);

// The newest checkpoint (highest step) in dir, as a state-file path. -1 when there is none.
int checkpoint_find_latest(const char *dir, char *out, size_t cap);

// Deletes all but the newest `keep` numbered checkpoints (epoch_N, step_N) in dir.
void checkpoint_prune(const char *dir, int keep);

#endif
