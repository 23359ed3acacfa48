// eval_args: the options that `clipc eval`, `embed`, `classify` and `benchmark` share (the weights,
// model, vocabulary, device, threads, batch size, loader threads) and the session they open.
#ifndef CLIPC_CLI_EVAL_ARGS_H
#define CLIPC_CLI_EVAL_ARGS_H

#include <stdbool.h>

#include "common/args.h"
#include "session/session.h"

typedef struct {
    char *pretrained;     // the weights (OpenCLIP state dict or clipc checkpoint, safetensors)
    char *model;          // config name or path; NULL: the checkpoint's "clipc.config"
    char *model_configs;  // where names are looked up (NULL: the shipped configs)
    char *vocab;          // BPE merges file ($CLIPC_VOCAB)
    char *device;         // "cpu", "cuda", "cuda:N" or NULL (cuda when a GPU is present)
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

// Opens the session of o's weights (session/session.h), with the tokenizer when need_tokenizer.
// Returns 0, or -1 with err_msg() naming the file or option at fault.
int eval_session_open(const eval_options *o, bool need_tokenizer, session *s);

#endif
