// options: the configuration of `clipc train`, with OpenCLIP's flag names where they exist.
// Flags may also come from `--config FILE` (a JSON object of the same keys; flags override it).
#ifndef CLIPC_TRAIN_OPTIONS_H
#define CLIPC_TRAIN_OPTIONS_H

#include <stdbool.h>
#include <stdio.h>

typedef struct {
    char *model, *model_configs, *pretrained, *vocab;
    char *train_data, *val_data, *train_data_upsampling_factors;
    char *zeroshot_data, *zeroshot_templates, *zeroshot_classnames;
    char *logs, *name, *resume, *config, *device, *precision, *lr_scheduler, *on_save_error;
    char *distill_model, *distill_pretrained, *distill_cache;  // train/distill.h
    char *report_to;  // train/report.h
    char *distill_logit_scale, *aug_cfg;                       // train/distill.h; loader/loader.h (--aug-cfg)
    long batch_size, epochs, epochs_cooldown, train_num_samples, warmup, seed, workers, threads;
    long save_frequency, save_steps, keep_checkpoints, zeroshot_frequency, log_every_n_steps;
    long max_steps, nonfinite_limit, accum_freq, profile_steps, zero;
    double lr, wd, beta1, beta2, eps, grad_clip_norm, lr_cooldown_power, lr_cooldown_end, dist_timeout;
    double distill_weight, distill_feature_weight;
    double contrastive_weight;  // train/distill.h
    bool dataset_resampled, save_most_recent, lock_image, lock_text, siglip, local_loss, gather_with_grad;
    bool no_tf32, deterministic, dist_debug;
    bool no_overlap_reduce;  // sum the gradients after the backward instead of during it
    bool use_bn_sync;  // ModifiedResNet towers: SyncBatchNorm over the ranks
    bool grad_checkpointing;  // model/clip.h: recompute the residual blocks in the backward
    // OpenCLIP's remaining model and run flags (docs/training.md)
    long lock_image_unlocked_groups, lock_text_unlocked_layers, val_frequency;
    bool lock_image_freeze_bn_stats, lock_text_freeze_layer_norm, force_quick_gelu, delete_previous_checkpoint;
    double force_patch_dropout;        // < 0: the config's patch_dropout
    double image_mean[3], image_std[3];  // NaN in [0]: the model config's
} train_options;

// --precision, with OpenCLIP's names and meanings.
typedef enum {
    TRAIN_PRECISION_FP32,       // float32 weights and compute (TF32 matrix products on GPU unless --no-tf32)
    TRAIN_PRECISION_AMP_BF16,   // bf16 autocast over float32 master weights ("amp_bfloat16" too)
    TRAIN_PRECISION_PURE_BF16,  // bf16 weights, gradients, optimizer moments and compute
    TRAIN_PRECISION_AMP,        // float16 autocast over float32 weights with a dynamic loss scaler
                                // (optim/grad_scaler.h), OpenCLIP's amp ("amp_fp16" too); on the
                                // CPU, which has no float16 autocast, float32 compute with the scaler
} train_precision;

// Parses a --precision value; the other names OpenCLIP knows (fp16, bf16, pure_fp16) are refused
// with the reason. Returns 0 or -1 with a message.
int train_precision_parse(const char *name, train_precision *out);

// Parses argv (after "train") and the --config file. Returns 0, 1 for --help (printed), or -1
// with err_msg() set.
int train_options_parse(train_options *o, int argc, char **argv);

// Writes the resolved options as JSON (the run's params.json, which --config accepts back; unset
// strings are left out) or as "name: value" lines.
void train_options_print(const train_options *o, FILE *f, bool json);

#endif
