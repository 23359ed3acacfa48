#include "cli/eval_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void eval_options_default(eval_options *o) {
    memset(o, 0, sizeof *o);
    o->vocab = getenv("CLIPC_VOCAB");
    o->batch_size = 128;
    o->workers = 2;
}

void eval_options_specs(eval_options *o, arg_spec *specs) {
    arg_spec common[EVAL_N_COMMON_SPECS] = {
        {"pretrained", ARG_STR, &o->pretrained, "the weights: a file (safetensors, torch.save zip, TorchScript) or an OpenCLIP tag of --model", false},
        {"model", ARG_STR, &o->model, "model config name or JSON path (default: the checkpoint's clipc.config)", false},
        {"model-configs", ARG_STR, &o->model_configs, "folder of model configs (default: the shipped ones)", false},
        {"vocab", ARG_STR, &o->vocab, "BPE merges file (default: $CLIPC_VOCAB)", false},
        {"device", ARG_STR, &o->device, "cpu, cuda or cuda:N (default: cuda when a GPU is present)", false},
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

int eval_session_open(const eval_options *o, bool need_tokenizer, session *s) {
    memset(s, 0, sizeof *s);  // closing a session that failed to open is then harmless
    if (!o->pretrained) return err_set("--pretrained: which weights to evaluate (a file or an OpenCLIP tag)");
    if (o->batch_size < 1) return err_set("--batch-size must be at least 1");
    if (need_tokenizer && !o->vocab) return err_set("no vocabulary: pass --vocab PATH or set CLIPC_VOCAB");
    session_options so = {.model = o->model, .model_configs = o->model_configs, .pretrained = o->pretrained,
                          .vocab = need_tokenizer ? o->vocab : NULL, .device = o->device, .threads = (int)o->threads};
    return session_open(&so, s);
}
