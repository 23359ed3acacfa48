// checkpoint: what a training run saves to continue exactly where it stopped, written so that a
// kill at any moment leaves only whole checkpoints behind.
//
// A checkpoint is a folder RUN/checkpoints/<name>/ (epoch_N, step_N or epoch_latest) holding
//   model.safetensors  the weights, OpenCLIP keys (loadable by OpenCLIP), with the model config
//                      ("clipc.config") and the step ("clipc.step") in the metadata;
//   state.safetensors  the optimizer moments and step counts, the training step and epoch, the
//                      data loader's position ("train.loader_state", U8) and the values of any
//                      trainable parameters outside the model ("param.<name>", e.g. the
//                      distillation projections), the loss scaler's state ("train.grad_scaler")
//                      under --precision amp, with the step in the metadata.
// Both files are written into a hidden folder ".tmp-<name>-<pid>" and synced; one rename then
// makes the folder <name> (an existing <name> is swapped out with renameat2(RENAME_EXCHANGE), then
// deleted), so a checkpoint is visible only once complete. Hidden leftovers of killed runs are
// removed by the next save or checkpoint_find_latest.
#ifndef CLIPC_TRAIN_CHECKPOINT_H
#define CLIPC_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/clip.h"
#include "optim/adamw.h"
#include "optim/grad_scaler.h"

#define CHECKPOINT_WEIGHTS "model.safetensors"
#define CHECKPOINT_STATE "state.safetensors"

typedef struct {
    int64_t step;            // optimizer steps done
    int64_t epoch;           // epoch of the next batch
    uint8_t *loader_state;   // loader_state_save() bytes (malloc'ed)
    size_t loader_state_size;
    param_list *extra;       // parameters outside the model, saved and loaded by name; NULL: none
    grad_scaler *scaler;     // the loss scaler (--precision amp), saved as "train.grad_scaler" (F64:
                             // scale, growth tracker) and restored when the file holds one; NULL: none
} train_position;

// Saves the checkpoint <dir>/<name>/, replacing one of that name. On failure (full disk,
// read-only folder...) nothing visible changes and err_msg() names the file and the system's
// reason.
int checkpoint_save(const char *dir, const char *name, const clip_model *m, const adamw *opt,
                    const train_position *pos);

// Loads a checkpoint given its folder or either file in it. On success pos holds a malloc'ed
// loader state, and the parameters of pos->extra (when set) their saved values: the file must hold
// exactly those. Errors name the file and the defect.
int checkpoint_load(const char *path, clip_model *m, adamw *opt, train_position *pos);

// Checks a checkpoint folder: both files present and valid safetensors, the same step in both,
// the training position present and (full) every tensor's bytes read. Returns the step, or -1
// with err_msg() saying what is wrong.
int64_t checkpoint_check(const char *path, bool full);

// Entries of a checkpoints folder that are not usable checkpoints: one line each, naming the file
// and its defect.
typedef struct {
    char **lines;
    int n;
} checkpoint_skipped;

void checkpoint_skipped_free(checkpoint_skipped *s);

// The newest checkpoint in dir (highest step) that passes the full check, as a folder path.
// Entries found unusable on the way go to *skipped (the caller prints and frees them). Returns 0;
// 1 when dir holds no checkpoint at all; -1 with err_msg() when dir cannot be read or nothing in it
// is usable.
int checkpoint_find_latest(const char *dir, char *out, size_t cap, checkpoint_skipped *skipped);

// Deletes the numbered checkpoints (epoch_N, step_N) of dir older than its newest `keep` usable
// ones (keep <= 0: none). A checkpoint that fails the check is never counted, so the newest usable
// one always stays.
void checkpoint_prune(const char *dir, int keep);

// --delete-previous-checkpoint: called once epoch_<epoch> is written (durable), deletes the older
// epoch_N of dir (N < epoch), OpenCLIP's deletion of epoch N-1's file made safe: nothing is deleted
// before a newer epoch checkpoint exists. step_N and epoch_latest stay (--keep-checkpoints prunes).
void checkpoint_delete_previous_epochs(const char *dir, int64_t epoch);

#endif
