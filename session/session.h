// session: what every command that runs a model sets up first, written once: the model config
// (a name, a JSON path, or the "clipc.config" metadata of the weights), the model initialised
// from a seed and optionally loaded from weights, the device ("cpu", "cuda", "cuda:N"), the
// intra-op threads, and the tokenizer checked against the model's vocabulary size. Used by
// train, eval, embed, classify, finetune and benchmark.
#ifndef CLIPC_SESSION_SESSION_H
#define CLIPC_SESSION_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "text/tokenizer.h"
#include "model/clip.h"
#include "model/pretrained.h"

typedef struct {
    const char *model;          // config name or JSON path; NULL: the weights' "clipc.config"
    const char *model_configs;  // folder of named configs; NULL: the shipped ones
    const char *pretrained;     // weights: a file (OpenCLIP state dict or clipc checkpoint, in safetensors
                                // or PyTorch's formats) or an OpenCLIP tag of the model (model/pretrained.h);
                                // NULL: from seed
    const char *vocab;          // BPE merges file; NULL: no tokenizer
    const char *device;         // "cpu", "cuda", "cuda:N"; NULL: CUDA when a GPU is present. A
                                // rank of a multi-process run passes its own device, dist_device()
                                // (tensor_device_format): "cuda:LOCAL_RANK", or in strict device
                                // mode (shim/tensor.h) "cpu:N", whose tensors no other rank's ops take
    int threads;                // intra-op threads (0: one per core)
    uint64_t seed;              // initialisation seed
    bool siglip;                // SigLIP's initial logit scale (ln 10) and bias (-10)
    bool lock_image, lock_text; // freeze a tower (--lock-image, --lock-text)
    // Training's overrides of the model (clipc train's OpenCLIP flags; zero: none)
    int lock_image_unlocked_groups, lock_text_unlocked_layers;  // leave a locked tower's last N groups trainable
    bool lock_image_freeze_bn_stats, lock_text_freeze_layer_norm;
    bool force_quick_gelu;                 // QuickGELU whatever the config says
    const double *force_patch_dropout;     // replaces the config's patch_dropout; NULL: keep it
    const double *image_mean, *image_std;  // (3) replace the config's normalization; NULL: keep it
} session_options;

typedef struct {
    clip_config cfg;
    clip_model *model;    // on `device`
    tokenizer *tok;       // NULL without a vocabulary
    tensor_device device;
    pretrained_source weights;  // what pretrained resolved to: the file (path "" without), the tag's
                                // QuickGELU, mean and std (already applied to cfg)
} session;

// Sets everything up. Returns 0, or -1 with err_msg() naming the file or option at fault (the
// session is then closed).
int session_open(const session_options *o, session *s);
void session_close(session *s);

// The config of a model: from config_name (a name or path) when given, else from the
// "clipc.config" metadata of weights; what weights names (a file or a pretrained tag) applies its
// QuickGELU, mean and std (pretrained_apply). Returns 0 or -1 (weights without metadata ask for --model).
int session_model_config(const char *config_name, const char *configs_dir, const char *weights, clip_config *cfg);

#endif
