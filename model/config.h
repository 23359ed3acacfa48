// config: OpenCLIP `model_configs` JSON files (e.g. configs/models/ViT-B-32.json) read into a
// clip_config, and written back in the same form.
//
// The Hugging Face hub layout of OpenCLIP (`open_clip_config.json`: {"model_cfg": {...},
// "preprocess_cfg": {...}}) is read too: preprocess_cfg gives the evaluation transform (mean, std,
// interpolation "bicubic"/"bilinear", resize_mode "shortest"/"squash"); without it the transform is
// OpenCLIP's default (OpenAI's mean and std, bicubic, shortest side). A config with a non-default
// transform is written back in the hub layout, so that it survives checkpoint metadata.
//
// Absent optional keys take OpenCLIP's defaults (CLIPVisionCfg / CLIPTextCfg / CLIP). A key that
// OpenCLIP knows but clipc cannot honour with the given value (timm or Hugging Face towers,
// attentional pooling, layer scale, ...) is an "unsupported" error naming the key; a key nobody
// knows is an error suggesting the nearest valid key. See docs/model.md for the list.
#ifndef CLIPC_MODEL_CONFIG_H
#define CLIPC_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "image/image.h"

typedef struct {
    int embed_dim;
    bool quick_gelu;             // x * sigmoid(1.702 x) instead of exact GELU, in both towers
    double init_logit_scale;     // initial log logit scale, OpenCLIP's default ln(1 / 0.07)
    bool init_logit_bias_set;    // "init_logit_bias" present (SigLIP-style models carry a bias)
    double init_logit_bias;
    struct {
        int image_size, layers, width, head_width, patch_size;
        double mlp_ratio;
        // A list of 4 layer counts: a ModifiedResNet tower (model/resnet.h; layers and patch_size
        // are then 0). All 0 for a vision transformer.
        int resnet_layers[4];
        double patch_dropout;  // fraction of patch tokens dropped in training (OpenCLIP's PatchDropout)
    } vision;
    struct {
        int context_length, vocab_size, width, heads, layers;
    } text;
    image_preprocess preprocess;  // the evaluation transform (preprocess_cfg)
    char name[256];  // from the file name (e.g. "ViT-B-32"), used in messages and metadata; any
                     // file's base name fits (NAME_MAX is 255)
} clip_config;

// OpenCLIP's default of init_logit_scale.
#define CLIP_CONFIG_DEFAULT_LOGIT_SCALE 2.659260036932778  // ln(1 / 0.07), as np.log(1 / 0.07)

// Whether the image tower is a ModifiedResNet (vision_cfg.layers a list) rather than a ViT.
static inline bool clip_config_is_resnet(const clip_config *cfg) { return cfg->vision.resnet_layers[0] > 0; }

// Reads and validates a config file. Returns 0, or -1 with err_msg() naming the file and key.
int clip_config_load(const char *path, clip_config *cfg);

// Parses config JSON text; source names it in messages and gives cfg->name (its base name
// without a ".json" suffix; -1 naming it when that is over 255 bytes). Returns 0 or -1.
int clip_config_parse(const char *json, const char *source, clip_config *cfg);

// The config as OpenCLIP-compatible JSON (loadable by open_clip's create_model); malloc'ed.
char *clip_config_to_json(const clip_config *cfg);

// Resolves a model name ("ViT-B-32" -> "<configs_dir>/ViT-B-32.json") or a path (anything with
// a '/' or ending in ".json", used as is) into out_path. configs_dir NULL means the model configs
// clipc ships (common/datafiles.h: "models/" beside the binary), never the current folder.
// Returns 0, or -1 when the file does not exist (suggesting the nearest model name).
int clip_config_find(const char *name_or_path, const char *configs_dir, char *out_path, size_t cap);

#endif
