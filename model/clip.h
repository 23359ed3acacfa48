// clip: the CLIP model of OpenCLIP in C: a ViT image tower and a causal Transformer text tower,
// computing exactly what OpenCLIP computes, with OpenCLIP's parameter names and initialisation.
//
// Image tower: conv1 (kernel = stride = patch, no bias) -> prepend class_embedding -> add
// positional embedding -> ln_pre -> pre-LN residual blocks -> token 0 -> ln_post -> @ proj.
// Text tower: token + positional embedding -> causal blocks -> ln_final -> row at the first EOT
// (argmax of the ids) -> @ text_projection. logit_scale is kept in log space; logit_bias exists
// when the config asks for it (SigLIP).
#ifndef CLIPC_MODEL_CLIP_H
#define CLIPC_MODEL_CLIP_H

#include <stdint.h>

#include "model/config.h"
#include "model/resnet.h"
#include "param/param.h"
#include "shim/tensor.h"

// One pre-LN residual attention block (OpenCLIP's ResidualAttentionBlock).
typedef struct {
    tensor *ln_1_w, *ln_1_b;      // (W)
    tensor *in_proj_w;            // (3W, W): q | k | v rows
    tensor *in_proj_b;            // (3W)
    tensor *out_proj_w;           // (W, W)
    tensor *out_proj_b;           // (W)
    tensor *ln_2_w, *ln_2_b;      // (W)
    tensor *fc_w, *fc_b;          // (M, W), (M)
    tensor *proj_w, *proj_b;      // (W, M), (W)
} clip_block;

typedef struct {
    clip_config cfg;
    tensor_device device;
    // image tower; W = vision.width, G = image_size / patch_size, E = embed_dim
    tensor *conv1_w;              // (W, 3, P, P)
    tensor *class_embedding;      // (W)
    tensor *visual_pos;           // (G*G + 1, W)
    tensor *ln_pre_w, *ln_pre_b;  // (W)
    clip_block *visual_blocks;    // vision.layers
    tensor *ln_post_w, *ln_post_b;
    tensor *visual_proj;          // (W, E)
    // text tower; W = text.width, C = context_length, V = vocab_size
    tensor *token_embedding;      // (V, W)
    tensor *text_pos;             // (C, W)
    clip_block *text_blocks;      // text.layers
    tensor *ln_final_w, *ln_final_b;
    tensor *text_projection;      // (W, E)
    tensor *logit_scale;          // () log of the inverse temperature
    tensor *logit_bias;           // () or NULL
    param_list params;            // every tensor above, with its OpenCLIP key, in state-dict order
    // A ModifiedResNet image tower (vision_cfg.layers a list) instead of the ViT fields above,
    // with its BatchNorm running statistics in buffers (never optimized; saved and loaded).
    resnet_tower *resnet;         // NULL for a ViT
    param_list buffers;           // empty for a ViT
    bool grad_checkpointing;      // --grad-checkpointing: each residual block of both towers keeps
                                  // only its input for the backward, which recomputes the block
                                  // (tensor_checkpoint); false after clip_model_init
} clip_model;

// A model initialised as OpenCLIP initialises it, from a seed, on the CPU.
clip_model *clip_model_init(const clip_config *cfg, uint64_t seed);
void clip_model_free(clip_model *m);
// Moves the parameters to dev (param_list_pack: every handle is kept). Returns 0 or -1.
int clip_model_to_device(clip_model *m, tensor_device dev);
// Converts the parameters (and a ResNet tower's BatchNorm buffers) to dtype (BF16 for --precision
// pure_bf16), keeping every handle; call it
// outside any tensor scope, like clip_model_to_device. Weights are still loaded from and saved as
// float32. Returns 0 or -1.
int clip_model_to_dtype(clip_model *m, tensor_dtype dtype);
param *clip_model_find_param(clip_model *m, const char *name);

// The mode of a ModifiedResNet tower's BatchNorms (nothing for a ViT), kept in the tower, not in
// the weights, so it is set through the const model the objective holds. training: normalize with
// the batch's statistics (OpenCLIP's model.train()); otherwise the running statistics (model.eval(),
// the default). update_stats: a training pass updates the running statistics (on by default; the
// step turns it off while it recomputes micro-batches with the graph, so each sample counts once).
void clip_model_set_training(const clip_model *m, bool training);
void clip_model_set_update_stats(const clip_model *m, bool update);
// --use-bn-sync: training batch statistics summed over the ranks through reduce (NULL: each
// rank's own), see model/resnet.h.
void clip_model_set_bn_sync(const clip_model *m, tensor_reduce_fn reduce, void *ctx);
// Freezes the image (--lock-image) or text (--lock-text) tower and repacks. Returns 0 or -1.
int clip_model_lock_image(clip_model *m);
int clip_model_lock_text(clip_model *m);
// The same, leaving the last unlocked_groups layer groups of the image tower trainable (OpenCLIP's
// VisionTransformer.lock; --lock-image-unlocked-groups): [conv1, class_embedding,
// positional_embedding, ln_pre], each block but the last, [last block, ln_post], [proj]. 0 freezes
// the whole tower (clip_model_lock_image, any tower); more than the groups leaves it trainable; a
// tower with parameters outside these groups is an error naming one. A ModifiedResNet tower is
// locked by resnet_lock (OpenCLIP's ModifiedResNet.lock: whole only, unlocked_groups 0, and
// freeze_bn_stats keeps its BatchNorm running statistics fixed in training); a ViT has no
// BatchNorm, so freeze_bn_stats does nothing there. Returns 0 or -1.
int clip_model_lock_image_groups(clip_model *m, int unlocked_groups, bool freeze_bn_stats);
// The text tower's counterpart (--lock-text-unlocked-layers, OpenCLIP's TextTransformer lock):
// groups [token_embedding, positional_embedding], each block but the last, [last block, ln_final],
// [text_projection]. LayerNorms are frozen with their group whatever freeze_layer_norm says, as
// OpenCLIP's own text tower does (its flag acts on Hugging Face towers only). Returns 0 or -1.
int clip_model_lock_text_groups(clip_model *m, int unlocked_layers, bool freeze_layer_norm);

// A host batch of normalized images (B, 3, S, S), S = vision.image_size, as a tensor on the
// model's device.
tensor *clip_images_to_device(const clip_model *m, const float *images, int64_t B);
// The same from raw 0-255 values (B, 3, S, S), e.g. the loader's LOADER_OUTPUT_UINT8 batches:
// the bytes go to the device (a quarter of float32's traffic; without blocking when they sit in
// pinned memory, tensor_host_alloc) and are normalized there as OpenCLIP's transform does,
// (x / 255 - mean) / std per channel, in float32. The images must stay unchanged until the
// device's next synchronisation.
tensor *clip_images_u8_to_device(const clip_model *m, const uint8_t *images, int64_t B, const float mean[3],
                                 const float std[3]);

// images (B, 3, H, W) float normalized -> features (B, E); L2-normalized when normalize is true.
// Images of another dtype than the weights' (float32 for bf16 weights) are converted first.
tensor *clip_encode_image(const clip_model *m, const tensor *images, bool normalize);
// Patch dropout (OpenCLIP's PatchDropout, in training only; cfg.vision.patch_dropout p > 0): each
// image keeps K = max(1, floor(N (1 - p))) of its N patch tokens, a uniform random subset drawn
// from seeds[b] alone (so the same seed drops the same patches in every recomputation), and its
// class token. Writes B rows of K + 1 token indices (0, the class token, then the kept patches + 1
// ascending) into keep (room for B * (N + 1)) and returns K + 1.
int64_t clip_patch_dropout_keep(const clip_model *m, const uint64_t *seeds, int64_t B, int64_t *keep);
// clip_encode_image on the tokens keep (B, K) (host; clip_patch_dropout_keep) only, after the
// positional embedding, as OpenCLIP drops them before ln_pre.
tensor *clip_encode_image_keep(const clip_model *m, const tensor *images, const int64_t *keep, int64_t K, bool normalize);

// tokens (B, C) int64 -> features (B, E). Positions after the last EOT of the batch cannot affect
// the EOT rows under the causal mask, so the tower runs on the shortest prefix that holds them;
// finding it costs one host read here.
tensor *clip_encode_text(const clip_model *m, const tensor *tokens, bool normalize);

// The same features for tokens (B, C) held on the host, without any host read, at the cost of
// the captions' own lengths: each distinct caption of the batch is encoded once (captions repeat
// in labelled sets), and the distinct captions, shortest first, run in groups, each at its longest
// caption's length (clip_text_groups), which the causal mask makes exact. Rows are gathered back
// with index_select, whose backward sums the gradients of the copies, so values and gradients
// equal clip_encode_text's within float32 noise.
tensor *clip_encode_text_host(const clip_model *m, const int64_t *tokens, int64_t B, bool normalize);

// Splits n captions of ascending lengths len (tokens up to the EOT) into consecutive groups, each
// run at its longest length, at the least estimated cost: the FLOPs of the padded tokens in a text
// layer of the given width, plus a fixed cost a group that is higher on a GPU (launch-bound) than
// on the CPU. Writes each group's end (exclusive) into ends (room for n) and returns the count.
int64_t clip_text_groups(const int64_t *len, int64_t n, int64_t width, bool gpu, int64_t *ends);

// Loads weights from an OpenCLIP state dict (F32, F16 or BF16) in safetensors or in PyTorch's
// formats (model/weights.h): strict, so a missing or unexpected key or a wrong shape is an error
// naming the key and the file. A ResNet tower's BatchNorm buffers are part of it (running_mean,
// running_var, num_batches_tracked as an integer scalar), and are saved too.
int clip_model_load(clip_model *m, const char *path);
// Saves the weights with OpenCLIP's keys and the model config in the metadata ("clipc.config"),
// atomically; extra metadata pairs (NULL-terminated key, value list) are added when given.
int clip_model_save(const clip_model *m, const char *path, const char *const *extra_metadata);

#endif
