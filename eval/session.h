// session: what `clipc eval`, `clipc embed` and `clipc classify` share: their common options, the
// model loaded from a checkpoint (config from --model, else from the file's "clipc.config"
// metadata), the tokenizer, the device, and the evaluation transform of single image files.
#ifndef CLIPC_EVAL_SESSION_H
#define CLIPC_EVAL_SESSION_H

#include <stdbool.h>

#include "common/args.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "model/clip.h"

typedef struct {
    char *pretrained;     // the weights (OpenCLIP state dict or clipc checkpoint, safetensors)
    char *model;          // config name or path; NULL: the checkpoint's "clipc.config"
    char *model_configs;  // where names are looked up
    char *vocab;          // BPE merges file ($CLIPC_VOCAB)
    char *device;         // "cpu", "cuda" or NULL (cuda when a GPU is present)
    long threads;         // intra-op threads (0: one per core)
    long batch_size;
    long workers;         // data loading threads
} eval_options;

#define EVAL_N_COMMON_SPECS 8

// Defaults, and the option specs of the fields above into specs[0..EVAL_N_COMMON_SPECS).
void eval_options_default(eval_options *o);
void eval_options_specs(eval_options *o, arg_spec *specs);

// Prints "clipc <cmd>: <err_msg()>" and returns 1.
int eval_fail(const char *cmd);

typedef struct {
    clip_model *model;
    tokenizer *tok;  // NULL unless asked for
} eval_session;

// Sets threads, picks the device, loads the model (and the tokenizer when need_tokenizer).
// Returns 0, or -1 with err_msg() naming the file or option at fault.
int eval_session_open(const eval_options *o, bool need_tokenizer, eval_session *s);
void eval_session_close(eval_session *s);

// The config of a weights file: from config_name (a name or path) when given, else from its
// "clipc.config" metadata. Returns 0 or -1 (a file without metadata asks for --model).
int eval_checkpoint_config(const char *weights, const char *config_name, const char *configs_dir, clip_config *cfg);

// A loader over labelled or captioned shards in evaluation order (the model's evaluation transform,
// no shuffle, every sample once), tokenizing the captions when with_tokens is set.
loader *eval_loader_open(const eval_options *o, const eval_session *s, const char *data, bool with_tokens);

// Reads an image file and applies the model's evaluation transform into out (3, S, S) (S = the
// model's image size; cfg->preprocess: resize, centre crop, mean and std, as the loader does).
// Errors name the file.
int eval_image_load(const char *path, const clip_config *cfg, float *out);

// Normalized image features of n image files into features (n, E) on the host, batch_size files
// per forward pass. The first unreadable or corrupt file stops it with an error naming the file.
int eval_embed_image_files(const clip_model *m, char *const *paths, int n, int batch_size, float *features);

// Normalized image features (B, E) of a host batch of transformed images (B, 3, S, S), into
// features on the host.
int eval_embed_images(const clip_model *m, const float *images, int n, float *features);

#endif
