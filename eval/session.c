#include "eval/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "data/fsutil.h"
#include "data/image.h"
#include "model/safetensors.h"

void eval_options_default(eval_options *o) {
    memset(o, 0, sizeof *o);
    o->model_configs = "configs/models";
    o->vocab = getenv("CLIPC_VOCAB");
    o->batch_size = 128;
    o->workers = 2;
}

void eval_options_specs(eval_options *o, arg_spec *specs) {
    arg_spec common[EVAL_N_COMMON_SPECS] = {
        {"pretrained", ARG_STR, &o->pretrained, "the weights: an OpenCLIP state dict or clipc checkpoint (safetensors)", false},
        {"model", ARG_STR, &o->model, "model config name or JSON path (default: the checkpoint's clipc.config)", false},
        {"model-configs", ARG_STR, &o->model_configs, "folder of model configs (configs/models)", false},
        {"vocab", ARG_STR, &o->vocab, "BPE merges file (default: $CLIPC_VOCAB)", false},
        {"device", ARG_STR, &o->device, "cpu or cuda (default: cuda when a GPU is present)", false},
        {"threads", ARG_INT, &o->threads, "intra-op threads (0: one per core)", false},
        {"batch-size", ARG_INT, &o->batch_size, "images per forward pass (128)", false},
        {"workers", ARG_INT, &o->workers, "data loading threads (2)", false},
    };
    memcpy(specs, common, sizeof common);
}

int eval_fail(const char *cmd) {
    fprintf(stderr, "clipc %s: %s\n", cmd, err_msg());
    return 1;
}

int eval_checkpoint_config(const char *weights, const char *config_name, const char *configs_dir, clip_config *cfg) {
    if (config_name) {
        char path[1024];
        return clip_config_find(config_name, configs_dir, path, sizeof path) || clip_config_load(path, cfg) ? -1 : 0;
    }
    st_file *f = st_open(weights);
    if (!f) return -1;
    const char *json = st_metadata(f, "clipc.config");
    int rc = json ? clip_config_parse(json, weights, cfg)
                  : err_set("%s: no model config in the metadata (\"clipc.config\"): pass --model NAME", weights);
    st_close(f);
    return rc;
}

static int open_tokenizer(const eval_options *o, eval_session *s) {
    if (!o->vocab) return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB");
    s->tok = tokenizer_load(o->vocab, 0);
    if (!s->tok) return -1;
    const clip_config *cfg = &s->model->cfg;
    if (tokenizer_vocab_size(s->tok) > cfg->text.vocab_size)
        return err_set("%s: the vocabulary has %d tokens but model %s has vocab_size %d", o->vocab,
                       tokenizer_vocab_size(s->tok), cfg->name, cfg->text.vocab_size);
    return 0;
}

int eval_session_open(const eval_options *o, bool need_tokenizer, eval_session *s) {
    memset(s, 0, sizeof *s);
    if (!o->pretrained) return err_set("--pretrained: which weights to evaluate (a safetensors file)");
    if (o->batch_size < 1) return err_set("--batch-size must be at least 1");
    tensor_set_threads((int)o->threads);
    tensor_device dev;
    clip_config cfg;
    if (tensor_device_parse(o->device, &dev) || eval_checkpoint_config(o->pretrained, o->model, o->model_configs, &cfg)) return -1;
    s->model = clip_model_init(&cfg, 0);
    if (!s->model || clip_model_load(s->model, o->pretrained) || clip_model_to_device(s->model, dev)) return -1;
    return need_tokenizer ? open_tokenizer(o, s) : 0;
}

void eval_session_close(eval_session *s) {
    clip_model_free(s->model);
    tokenizer_free(s->tok);
    memset(s, 0, sizeof *s);
}

loader *eval_loader_open(const eval_options *o, const eval_session *s, const char *data, bool with_tokens) {
    loader_config lc;
    loader_config_init(&lc, data, (int)o->batch_size, s->model->cfg.vision.image_size, false);
    lc.preprocess = s->model->cfg.preprocess;
    lc.workers = (int)o->workers;
    lc.tok = with_tokens ? s->tok : NULL;
    lc.context_length = s->model->cfg.text.context_length;
    return loader_init(&lc);
}

int eval_image_load(const char *path, const clip_config *cfg, float *out) {
    size_t size = 0;
    uint8_t *bytes = fs_read_all(path, &size);
    if (!bytes) return -1;
    const image_preprocess *pp = &cfg->preprocess;
    size_t plane = (size_t)cfg->vision.image_size * (size_t)cfg->vision.image_size;
    uint8_t *rgb = xmalloc(3 * plane);
    int rc = image_decode_eval(bytes, size, pp, cfg->vision.image_size, rgb);
    if (rc == 0) {
        for (size_t p = 0; p < plane; p++)  // as the loader normalizes
            for (int c = 0; c < 3; c++) out[c * plane + p] = ((float)rgb[3 * p + c] / 255.0f - pp->mean[c]) / pp->std[c];
    } else {
        err_prefix("%s", path);
    }
    free(rgb);
    free(bytes);
    return rc;
}

int eval_embed_images(const clip_model *m, const float *images, int n, float *features) {
    int S = m->cfg.vision.image_size;
    int64_t shape[4] = {n, 3, S, S};
    size_t nbytes = (size_t)n * (size_t)m->cfg.embed_dim * sizeof(float);
    tensor_no_grad_begin();
    tensor_scope_begin();
    tensor *x = tensor_to_device(tensor_from_host(images, shape, 4, TENSOR_F32, false), m->device, false);
    int rc = tensor_to_host(tensor_to_dtype(clip_encode_image(m, x, true), TENSOR_F32), features, nbytes);
    tensor_scope_end();
    tensor_no_grad_end();
    return rc;
}

int eval_embed_image_files(const clip_model *m, char *const *paths, int n, int batch_size, float *features) {
    int S = m->cfg.vision.image_size, E = m->cfg.embed_dim;
    size_t image_floats = 3 * (size_t)S * (size_t)S;
    float *batch = xmalloc((size_t)batch_size * image_floats * sizeof(float));
    int rc = 0;
    for (int begin = 0; begin < n && rc == 0; begin += batch_size) {
        int rows = n - begin < batch_size ? n - begin : batch_size;
        for (int i = 0; i < rows && rc == 0; i++) rc = eval_image_load(paths[begin + i], &m->cfg, batch + i * image_floats);
        if (rc == 0) rc = eval_embed_images(m, batch, rows, features + (size_t)begin * (size_t)E);
    }
    free(batch);
    return rc;
}
