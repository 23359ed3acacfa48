#include "train/options.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"
#include "train/report.h"

#define SPEC(name, type, field, help) {name, type, &o->field, help, false}

// The table lives in one function so that parse and print see the same list.
static int make_specs(train_options *o, arg_spec *s) {
    arg_spec specs[] = {
        SPEC("model", ARG_STR, model, "model config name (configs/models) or path to an OpenCLIP config JSON"),
        SPEC("model-configs", ARG_STR, model_configs, "folder of model configs (default: the shipped ones)"),
        SPEC("pretrained", ARG_STR, pretrained, "initial weights: a file (safetensors, torch.save zip, TorchScript) or an OpenCLIP tag of --model"),
        SPEC("vocab", ARG_STR, vocab, "BPE merges file (default: $CLIPC_VOCAB)"),
        SPEC("train-data", ARG_STR, train_data, "training manifest(s), '::'-separated"),
        SPEC("train-data-upsampling-factors", ARG_STR, train_data_upsampling_factors, "source weights 'a::b' (resampled)"),
        SPEC("val-data", ARG_STR, val_data, "validation manifest: contrastive loss after every --val-frequency epochs"),
        SPEC("val-frequency", ARG_INT, val_frequency, "--val-data: validation every N epochs, and after the last"),
        SPEC("dataset-resampled", ARG_FLAG, dataset_resampled, "draw shards with replacement"),
        SPEC("train-num-samples", ARG_INT, train_num_samples, "samples per epoch (0: the whole set)"),
        SPEC("batch-size", ARG_INT, batch_size, "samples per step"),
        SPEC("epochs", ARG_INT, epochs, "training epochs"),
        SPEC("max-steps", ARG_INT, max_steps, "stop after this many steps in all (0: no limit)"),
        SPEC("lr", ARG_FLOAT, lr, "peak learning rate"),
        SPEC("wd", ARG_FLOAT, wd, "weight decay"),
        SPEC("beta1", ARG_FLOAT, beta1, "AdamW beta1"),
        SPEC("beta2", ARG_FLOAT, beta2, "AdamW beta2"),
        SPEC("eps", ARG_FLOAT, eps, "AdamW epsilon"),
        SPEC("warmup", ARG_INT, warmup, "linear warmup steps"),
        SPEC("lr-scheduler", ARG_STR, lr_scheduler, "cosine, const or const-cooldown"),
        SPEC("epochs-cooldown", ARG_INT, epochs_cooldown, "const-cooldown: epochs of cooldown at the end"),
        SPEC("lr-cooldown-power", ARG_FLOAT, lr_cooldown_power, "const-cooldown: decay power"),
        SPEC("lr-cooldown-end", ARG_FLOAT, lr_cooldown_end, "const-cooldown: final learning rate"),
        SPEC("grad-clip-norm", ARG_FLOAT, grad_clip_norm, "clip gradients to this global L2 norm (0: off)"),
        SPEC("precision", ARG_STR, precision, "fp32, amp_bf16 (bf16 autocast), pure_bf16 (bf16 weights) or amp (float16 autocast with loss scaling); default: amp_bf16 on a GPU that computes in bf16, else fp32"),
        SPEC("no-tf32", ARG_FLAG, no_tf32, "full float32 matrix products on GPU (default: TF32, as OpenCLIP)"),
        SPEC("deterministic", ARG_FLAG, deterministic, "GPU: deterministic algorithms only (bit-reproducible, slower)"),
        SPEC("device", ARG_STR, device, "cpu, cuda or cuda:N (default: cuda when a GPU is present; under a launcher each rank uses GPU LOCAL_RANK)"),
        SPEC("dist-timeout", ARG_FLOAT, dist_timeout, "seconds any collective may wait for the other ranks (600, as PyTorch's NCCL)"),
        SPEC("dist-debug", ARG_FLAG, dist_debug, "check before every collective that all ranks make the same one (kind, dtypes, shapes, call site); a mismatch stops every rank naming both (also CLIPC_DIST_DEBUG=1)"),
        SPEC("no-overlap-reduce", ARG_FLAG, no_overlap_reduce, "several ranks: sum the gradients over the ranks after the backward, in one call, instead of each bucket as soon as the backward has made it (overlapped, as PyTorch's DDP)"),
        SPEC("local-loss", ARG_FLAG, local_loss, "accepted for OpenCLIP: clipc's loss is always the exact global-batch loss, each rank computing its own rows"),
        SPEC("gather-with-grad", ARG_FLAG, gather_with_grad, "accepted for OpenCLIP: gradients always reach the other ranks' features (exact)"),
        SPEC("zero", ARG_INT, zero, "ZeRO sharding over the ranks (nearest to OpenCLIP's later --fsdp, whose FSDP2 also shards the weights; clipc keeps full weights on every rank): 0 none, 1 AdamW state, 2 AdamW state and gradient reduction (FSDP's SHARD_GRAD_OP); one rank: nothing to shard"),
        SPEC("threads", ARG_INT, threads, "intra-op threads (0: one per core)"),
        SPEC("workers", ARG_INT, workers, "data loading threads"),
        SPEC("seed", ARG_INT, seed, "random seed"),
        SPEC("lock-image", ARG_FLAG, lock_image, "freeze the image tower"),
        SPEC("lock-image-unlocked-groups", ARG_INT, lock_image_unlocked_groups, "--lock-image: leave the last N layer groups trainable (ViT: [conv1, class and positional embeddings, ln_pre], each block but the last, [last block, ln_post], [proj])"),
        SPEC("lock-image-freeze-bn-stats", ARG_FLAG, lock_image_freeze_bn_stats, "--lock-image: freeze BatchNorm running statistics of locked groups (ResNet towers)"),
        SPEC("lock-text", ARG_FLAG, lock_text, "freeze the text tower"),
        SPEC("use-bn-sync", ARG_FLAG, use_bn_sync, "ResNet towers: BatchNorm statistics of the global batch over the ranks (SyncBatchNorm)"),
        SPEC("lock-text-unlocked-layers", ARG_INT, lock_text_unlocked_layers, "--lock-text: leave the last N groups trainable ([token and positional embeddings], each block but the last, [last block, ln_final], [text_projection])"),
        SPEC("lock-text-freeze-layer-norm", ARG_FLAG, lock_text_freeze_layer_norm, "--lock-text: accepted for OpenCLIP; LayerNorms of locked groups are always frozen, as OpenCLIP's own text tower does"),
        SPEC("force-quick-gelu", ARG_FLAG, force_quick_gelu, "use QuickGELU whatever the model config says"),
        SPEC("force-patch-dropout", ARG_FLOAT, force_patch_dropout, "fraction of image patches dropped in training, replacing the config's patch_dropout (0: none)"),
        SPEC("image-mean", ARG_FLOAT3, image_mean, "image normalization mean per channel (default: the model config's)"),
        SPEC("image-std", ARG_FLOAT3, image_std, "image normalization std per channel (default: the model config's)"),
        SPEC("siglip", ARG_FLAG, siglip, "sigmoid loss (logit scale 10, bias -10)"),
        SPEC("distill-model", ARG_STR, distill_model, "teacher config for distillation (default: its weights' metadata)"),
        SPEC("distill-pretrained", ARG_STR, distill_pretrained, "teacher weights: a frozen teacher runs on each batch"),
        SPEC("distill-cache", ARG_STR, distill_cache, "folder of stored teacher targets ('clipc distill-cache')"),
        SPEC("distill-weight", ARG_FLOAT, distill_weight, "weight of the distillation term (DistillClipLoss)"),
        SPEC("distill-feature-weight", ARG_FLOAT, distill_feature_weight, "weight of the feature MSE term (0: off)"),
        // distill: teacher ensembles, the contrastive weight, OpenCLIP's --aug-cfg
        SPEC("distill-logit-scale", ARG_STR, distill_logit_scale, "each teacher's scale exp(logit_scale), 'S1::S2' (default: its own)"),
        SPEC("contrastive-weight", ARG_FLOAT, contrastive_weight, "weight of the student's contrastive loss when distilling (0: pure distillation)"),
        SPEC("aug-cfg", ARG_STR, aug_cfg, "training augmentation, OpenCLIP's key=value list: scale='(0.08,1.0)' ratio=... color_jitter=0.4"),
        // end distill
        SPEC("zeroshot-data", ARG_STR, zeroshot_data, "labelled manifest for zero-shot evaluation"),
        SPEC("zeroshot-frequency", ARG_INT, zeroshot_frequency, "zero-shot evaluation every N epochs (0: off)"),
        SPEC("zeroshot-templates", ARG_STR, zeroshot_templates, "templates file, one per line with {} for the class"),
        SPEC("zeroshot-classnames", ARG_STR, zeroshot_classnames, "class names file (default: from the shards)"),
        SPEC("logs", ARG_STR, logs, "folder of runs"),
        SPEC("name", ARG_STR, name, "run name (default: date, model, lr, batch size)"),
        SPEC("save-frequency", ARG_INT, save_frequency, "checkpoint every N epochs (0: off)"),
        SPEC("save-steps", ARG_INT, save_steps, "also checkpoint every N steps (0: off)"),
        SPEC("save-most-recent", ARG_FLAG, save_most_recent, "also keep epoch_latest, overwritten each time"),
        SPEC("keep-checkpoints", ARG_INT, keep_checkpoints, "keep only the newest N numbered checkpoints (0: all)"),
        SPEC("delete-previous-checkpoint", ARG_FLAG, delete_previous_checkpoint, "delete the previous epoch checkpoint once a new one is written (step_N and epoch_latest stay)"),
        SPEC("on-save-error", ARG_STR, on_save_error, "a checkpoint that cannot be written: stop or continue"),
        SPEC("resume", ARG_STR, resume, "checkpoint to continue from, or 'latest'"),
        SPEC("log-every-n-steps", ARG_INT, log_every_n_steps, "progress line every N steps"),
        SPEC("report-to", ARG_STR, report_to, "tensorboard: also write the metrics as TensorBoard event files in logs/NAME/tensorboard ('wandb' is refused)"),
        SPEC("nonfinite-limit", ARG_INT, nonfinite_limit, "stop after N non-finite losses in a row"),
        SPEC("accum-freq", ARG_INT, accum_freq, "micro-batches of --batch-size per step, the loss exact over all of them"),
        SPEC("grad-checkpointing", ARG_FLAG, grad_checkpointing, "recompute each transformer block's activations in the backward instead of keeping them (less memory, about a third more compute)"),
        SPEC("profile-steps", ARG_INT, profile_steps, "print time, ops, host reads and syncs of the first N steps"),
        SPEC("config", ARG_STR, config, "JSON file of these options (flags override it)"),
    };
    if (s) memcpy(s, specs, sizeof specs);
    return (int)(sizeof specs / sizeof specs[0]);
}

static void set_defaults(train_options *o) {
    memset(o, 0, sizeof *o);
    o->model = "ViT-B-32";
    o->vocab = getenv("CLIPC_VOCAB");
    o->logs = "./logs";
    o->lr_scheduler = "cosine";
    o->on_save_error = "stop";
    o->zeroshot_templates = NULL;
    o->batch_size = 64;
    o->epochs = 32;
    o->lr = 5e-4;
    o->wd = 0.2;
    o->beta1 = 0.9;
    o->beta2 = 0.98;
    o->eps = 1e-6;
    o->warmup = 10000;
    o->lr_cooldown_power = 1.0;
    o->distill_weight = 1.0;
    o->contrastive_weight = 1.0;  // distill
    o->workers = 2;
    o->save_frequency = 1;
    o->zeroshot_frequency = 2;
    o->log_every_n_steps = 100;
    o->nonfinite_limit = 5;
    o->accum_freq = 1;
    o->dist_timeout = 600;
    o->val_frequency = 1;
    o->force_patch_dropout = -1;
    o->image_mean[0] = o->image_std[0] = NAN;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen_checked(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = xmalloc((size_t)n + 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

// distill: OpenCLIP's --aug-cfg takes several words (nargs='*': `--aug-cfg scale='(0.5,1)' color_jitter=0.4`);
// they are joined with spaces into one value, the argument list copied into args (capacity argc).
static int join_aug_cfg(int argc, char **argv, char **args) {
    static char joined[1024];  // the value outlives the parse, as argv does
    int n = 0;
    for (int i = 0; i < argc; i++) {
        args[n++] = argv[i];
        bool bare = !strcmp(argv[i], "--aug-cfg"), inline_value = !strncmp(argv[i], "--aug-cfg=", 10);
        if (!bare && !inline_value) continue;
        joined[0] = '\0';
        if (inline_value) snprintf(joined, sizeof joined, "%s", argv[i] + 10);
        for (; i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0; i++) {
            size_t used = strlen(joined);
            snprintf(joined + used, sizeof joined - used, "%s%s", used ? " " : "", argv[i + 1]);
        }
        if (bare) args[n++] = joined;
        else args[n - 1] = "--aug-cfg", args[n++] = joined;
    }
    return n;
}
// end distill

// The flags of train_options' "OpenCLIP's remaining" block.
static int check_openclip_flags(const train_options *o) {
    if (o->lock_image_unlocked_groups < 0)
        return err_set("--lock-image-unlocked-groups must be 0 or more, got %ld", o->lock_image_unlocked_groups);
    if (o->lock_text_unlocked_layers < 0)
        return err_set("--lock-text-unlocked-layers must be 0 or more, got %ld", o->lock_text_unlocked_layers);
    if ((o->lock_image_unlocked_groups || o->lock_image_freeze_bn_stats) && !o->lock_image)
        return err_set("--lock-image-unlocked-groups and --lock-image-freeze-bn-stats need --lock-image");
    if ((o->lock_text_unlocked_layers || o->lock_text_freeze_layer_norm) && !o->lock_text)
        return err_set("--lock-text-unlocked-layers and --lock-text-freeze-layer-norm need --lock-text");
    if (o->force_patch_dropout != -1 && !(o->force_patch_dropout >= 0 && o->force_patch_dropout < 1))
        return err_set("--force-patch-dropout must be in [0, 1), got %g", o->force_patch_dropout);
    for (int i = 0; i < 3 && !isnan(o->image_std[0]); i++)
        if (!(o->image_std[i] > 0)) return err_set("--image-std must be positive, got %g", o->image_std[i]);
    if (o->val_frequency < 1) return err_set("--val-frequency must be 1 or more, got %ld", o->val_frequency);
    return 0;
}

int train_options_parse(train_options *o, int argc, char **argv) {
    set_defaults(o);
    int n = make_specs(o, NULL);
    arg_spec *specs = xcalloc((size_t)n, sizeof(arg_spec));
    make_specs(o, specs);
    char **args = xcalloc((size_t)argc + 1, sizeof(char *));
    int rc = args_parse(specs, n, join_aug_cfg(argc, argv, args), args, NULL, 0, NULL);
    free(args);
    if (rc == 1) args_print_help(specs, n, "clipc train --train-data MANIFEST [options]");
    if (rc == 0 && o->config) {
        char *text = read_text_file(o->config);
        rc = text ? args_apply_json(specs, n, text, o->config) : -1;
        free(text);
    }
    free(specs);
    if (rc != 0) return rc;
    if (!o->train_data) return err_set("--train-data is required (a manifest made by 'clipc shards')");
    if (o->batch_size <= 0) return err_set("--batch-size must be positive, got %ld", o->batch_size);
    if (o->epochs <= 0) return err_set("--epochs must be positive, got %ld", o->epochs);
    if (o->accum_freq < 1) return err_set("--accum-freq must be 1 or more, got %ld", o->accum_freq);
    if (!(o->dist_timeout > 0)) return err_set("--dist-timeout must be positive, got %g", o->dist_timeout);
    if (strcmp(o->on_save_error, "stop") && strcmp(o->on_save_error, "continue"))
        return err_set("--on-save-error must be stop or continue, got '%s'", o->on_save_error);
    if (o->zero < 0 || o->zero > 2)
        return err_set("--zero must be 0, 1 (shard the AdamW state) or 2 (and the gradients), got %ld", o->zero);
    if (o->profile_steps < 0) return err_set("--profile-steps must be 0 or more, got %ld", o->profile_steps);
    report_targets report;
    if (report_parse_targets(o->report_to, &report) != 0) return -1;
    if (check_openclip_flags(o) != 0) return -1;
    train_precision p;
    return o->precision ? train_precision_parse(o->precision, &p) : 0;
}

int train_precision_parse(const char *name, train_precision *out) {
    if (!strcmp(name, "fp32")) *out = TRAIN_PRECISION_FP32;
    else if (!strcmp(name, "amp_bf16") || !strcmp(name, "amp_bfloat16")) *out = TRAIN_PRECISION_AMP_BF16;
    else if (!strcmp(name, "pure_bf16")) *out = TRAIN_PRECISION_PURE_BF16;
    else if (!strcmp(name, "bf16"))
        return err_set("--precision bf16 (OpenCLIP's OpenAI-style half weights, LayerNorms kept in float32) is not "
                       "supported: use amp_bf16 (autocast) or pure_bf16 (all weights bf16)");
    else if (!strcmp(name, "amp") || !strcmp(name, "amp_fp16")) *out = TRAIN_PRECISION_AMP;
    else if (!strcmp(name, "fp16") || !strcmp(name, "pure_fp16"))
        return err_set("--precision %s (OpenCLIP's float16 weights, gradients and optimizer state, without loss scaling "
                       "or float32 master weights) is not supported: small gradients underflow and updates round away; "
                       "use amp (float16 autocast with loss scaling) or amp_bf16", name);
    else return err_set("--precision must be fp32, amp_bf16, pure_bf16 or amp, got '%s'", name);
    return 0;
}

void train_options_print(const train_options *o, FILE *f, bool json) {
    train_options copy = *o;
    int n = make_specs(&copy, NULL);
    arg_spec *specs = xcalloc((size_t)n, sizeof(arg_spec));
    make_specs(&copy, specs);
    // JSON leaves unset strings out (no nulls), so that --config reads params.json back.
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (!json || specs[i].type != ARG_STR || *(char **)specs[i].dest) specs[kept++] = specs[i];
    args_print(specs, kept, f, json);
    free(specs);
}
