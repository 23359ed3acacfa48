#include "session/session.h"

#include <math.h>
#include <string.h>

#include "common/error.h"
#include "model/safetensors.h"
#include "shim/torch_file.h"

// The config in the "clipc.config" metadata of a safetensors file.
static int config_from_metadata(const char *weights, clip_config *cfg) {
    torch_file_kind kind;
    if (torch_file_sniff(weights, &kind) != 0) return -1;
    if (kind != TORCH_FILE_OTHER) return err_set("%s: PyTorch's files name no model config: pass --model NAME", weights);
    st_file *f = st_open(weights);
    if (!f) return -1;
    const char *json = st_metadata(f, "clipc.config");
    int rc = json ? clip_config_parse(json, weights, cfg)
                  : err_set("%s: no model config in the metadata (\"clipc.config\"): pass --model NAME", weights);
    st_close(f);
    return rc;
}

// The config, and what --pretrained names (a file or a tag of the config's model) in src, whose
// QuickGELU, mean and std apply to the config (model/pretrained.h).
static int model_config(const char *config_name, const char *configs_dir, const char *weights, clip_config *cfg,
                        pretrained_source *src) {
    memset(src, 0, sizeof *src);
    if (!config_name && !weights) return err_set("no model: pass --model NAME (or --pretrained weights that name their config)");
    if (!config_name) {
        if (pretrained_resolve(NULL, weights, src) != 0 || config_from_metadata(src->path, cfg) != 0) return -1;
    } else {
        char path[4096];
        if (clip_config_find(config_name, configs_dir, path, sizeof path) || clip_config_load(path, cfg)) return -1;
        if (weights && pretrained_resolve(cfg->name, weights, src) != 0) return -1;
    }
    pretrained_apply(src, cfg);
    return 0;
}

int session_model_config(const char *config_name, const char *configs_dir, const char *weights, clip_config *cfg) {
    pretrained_source src;
    return model_config(config_name, configs_dir, weights, cfg, &src);
}

static int open_tokenizer(const session_options *o, session *s) {
    if (!o->vocab) return 0;
    s->tok = tokenizer_load(o->vocab, 0);
    if (!s->tok) return -1;
    if (tokenizer_vocab_size(s->tok) > s->cfg.text.vocab_size)
        return err_set("%s: the vocabulary has %d tokens but model %s has vocab_size %d", o->vocab,
                       tokenizer_vocab_size(s->tok), s->cfg.name, s->cfg.text.vocab_size);
    return 0;
}

// The config as training overrides it; the weights then save the result in their metadata, so
// evaluating them normalizes as training did.
static void apply_overrides(const session_options *o, clip_config *cfg) {
    if (o->force_quick_gelu) cfg->quick_gelu = true;
    if (o->force_patch_dropout) cfg->vision.patch_dropout = *o->force_patch_dropout;
    for (int i = 0; i < 3; i++) {
        if (o->image_mean) cfg->preprocess.mean[i] = (float)o->image_mean[i];
        if (o->image_std) cfg->preprocess.std[i] = (float)o->image_std[i];
    }
}

static int open_model(const session_options *o, session *s) {
    if (model_config(o->model, o->model_configs, o->pretrained, &s->cfg, &s->weights) != 0) return -1;
    if (o->siglip) {
        s->cfg.init_logit_scale = log(10.0);
        s->cfg.init_logit_bias_set = true;
        s->cfg.init_logit_bias = -10.0;
    }
    apply_overrides(o, &s->cfg);
    s->model = clip_model_init(&s->cfg, o->seed);
    if (!s->model) return -1;
    if (o->pretrained && clip_model_load(s->model, s->weights.path) != 0) return -1;
    if (o->lock_image && clip_model_lock_image_groups(s->model, o->lock_image_unlocked_groups, o->lock_image_freeze_bn_stats) != 0)
        return -1;
    if (o->lock_text && clip_model_lock_text_groups(s->model, o->lock_text_unlocked_layers, o->lock_text_freeze_layer_norm) != 0)
        return -1;
    return clip_model_to_device(s->model, s->device);
}

int session_open(const session_options *o, session *s) {
    memset(s, 0, sizeof *s);
    tensor_set_threads(o->threads);
    int rc = tensor_device_parse(o->device, &s->device);
    if (rc == 0) rc = open_model(o, s);
    if (rc == 0) rc = open_tokenizer(o, s);
    if (rc != 0) session_close(s);
    return rc;
}

void session_close(session *s) {
    clip_model_free(s->model);
    tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}
