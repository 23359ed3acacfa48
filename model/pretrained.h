// pretrained: what --pretrained names, resolved to a weights file and what the weights imply for
// the model. Either a file (any format of model/weights.h) or one of OpenCLIP's pretrained tags
// for the model (`--model ViT-B-32 --pretrained laion2b_s34b_b79k`), found without any network in
// the caches where OpenCLIP keeps its downloads:
//   a tag with a url    OpenCLIP's download folder, ~/.cache/clip/<the url's file name>
//   a tag with hf_hub   the Hugging Face hub cache: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE,
//                       else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
//                       ~/.cache/huggingface/hub; in it models--ORG--NAME/snapshots/REV/FILE (the
//                       revision refs/main names first, then the newest), FILE being
//                       open_clip_model.safetensors (later OpenCLIP releases), then the one the
//                       tag names (open_clip_pytorch_model.bin by default)
// The tags come from the table OpenCLIP v2.20.0 publishes (src/open_clip/pretrained.py), shipped
// as configs/pretrained.json (scripts/gen_pretrained_table.py). As in OpenCLIP, a tag is matched
// lower-cased with '-' as '_', and a tag wins over a file of the same name.
#ifndef CLIPC_MODEL_PRETRAINED_H
#define CLIPC_MODEL_PRETRAINED_H

#include <stdbool.h>

#include "model/config.h"

typedef struct {
    char path[4096];     // the weights file
    char tag[128];       // the OpenCLIP tag it was found by; "" when --pretrained named the file
    bool quick_gelu;     // the weights are OpenAI's, trained with QuickGELU: the tag "openai" or a
                         // TorchScript archive (OpenCLIP's load_openai_model builds them so)
    bool has_mean, has_std;
    float mean[3], std[3];  // the tag's normalization (OpenCLIP's pretrained_cfg mean / std)
} pretrained_source;

// Resolves pretrained (a tag or a path) for the model named model (a config's name, as
// clip_config's name; NULL when unknown). Returns 0, or -1 with a one-line message: a tag whose
// weights are in no cache (the paths looked at, and what OpenCLIP would download), an unknown tag
// of a model (its tags), a tag without --model.
int pretrained_resolve(const char *model, const char *pretrained, pretrained_source *out);

// What OpenCLIP's create_model_and_transforms takes from the weights, applied to cfg: QuickGELU,
// and the tag's mean and std as the evaluation transform's. Options given explicitly
// (--force-quick-gelu, --image-mean, --image-std) are applied after it.
void pretrained_apply(const pretrained_source *src, clip_config *cfg);

#endif
