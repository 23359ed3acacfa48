#include "session/session.h"

#include <math.h>
#include <string.h>

#include "common/error.h"
#include "model/safetensors.h"

int session_model_config(const char *config_name, const char *configs_dir, const char *weights, clip_config *cfg) {
    if (config_name) {
        char path[4096];
        return clip_config_find(config_name, configs_dir, path, sizeof path) || clip_config_load(path, cfg) ? -1 : 0;
    }
    if (!weights) return err_set("no model: pass --model NAME (or --pretrained weights that name their config)");
    st_file *f = st_open(weights);
    if (!f) return -1;
    const char *json = st_metadata(f, "clipc.config");
    int rc = json ? clip_config_parse(json, weights, cfg)
                  : err_set("%s: no model config in the metadata (\"clipc.config\"): pass --model NAME", weights);
    st_close(f);
    return rc;
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
    if (session_model_config(o->model, o->model_configs, o->pretrained, &s->cfg) != 0) return -1;
    if (o->siglip) {
        s->cfg.init_logit_scale = log(10.0);
        s->cfg.init_logit_bias_set = true;
        s->cfg.init_logit_bias = -10.0;
    }
    apply_overrides(o, &s->cfg);
    s->model = clip_model_init(&s->cfg, o->seed);
    if (!s->model) return -1;
    if (o->pretrained && clip_model_load(s->model, o->pretrained) != 0) return -1;
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
