// head: linear classification heads over L2-normalized CLIP image features (the linear probe, the
// zero-shot head and the fine-tuned head of `clipc finetune`), their safetensors files and their
// accuracy on feature sets held on the host.
//
// A head computes logits = normalize(image_features) @ weight^T + bias. Its file (docs/fewshot.md)
// holds "<prefix>.weight" F32 (C, D) and "<prefix>.bias" F32 (C), prefix "probe" for
// kind "linear-probe" and "head" for kind "zeroshot-finetuned", with the metadata
//   "clipc.head"       the kind
//   "clipc.classnames" a JSON array of the C class names, in label order
//   "clipc.config"     the model config (JSON) whose image features the head reads
// plus whatever else the writer adds (e.g. "clipc.lambda", "clipc.wiseft_alpha").
#ifndef CLIPC_FINETUNE_HEAD_H
#define CLIPC_FINETUNE_HEAD_H

#include <stdint.h>

#define HEAD_KIND_PROBE "linear-probe"
#define HEAD_KIND_FINETUNED "zeroshot-finetuned"

typedef struct {
    int n_classes, dim;  // C, D
    float *weight;       // (C, D)
    float *bias;         // (C)
} linear_head;

// A head of zeros.
void linear_head_init(linear_head *h, int n_classes, int dim);
void linear_head_free(linear_head *h);

// Accuracy and mean cross-entropy of the head on features x (n, D) with labels y (n), computed
// with libtorch on the CPU in double precision. Either output may be NULL. Returns 0 or -1.
int linear_head_score(const linear_head *h, const float *x, const int32_t *y, int64_t n, double *accuracy,
                      double *log_loss);

// Writes a head file atomically. kind is HEAD_KIND_PROBE or HEAD_KIND_FINETUNED; extra_metadata is
// NULL or a NULL-terminated key, value list. Returns 0 or -1.
int linear_head_save(const linear_head *h, const char *path, const char *kind, const char *const *class_names,
                     const char *config_json, const char *const *extra_metadata);

// Reads a head file: kind (into kind[0..32)) and class names (a new array of C strings, freed
// with zeroshot_free_lines) may be NULL. Errors name the file and the missing or malformed part.
int linear_head_load(const char *path, linear_head *h, char *kind, char ***class_names);

#endif
