// zeroshot: zero-shot classification with a CLIP model, as OpenCLIP's zero_shot_classifier and
// run(): each class name goes into every template, the normalized text embeddings are averaged
// per class and normalized again (the classifier); an image's class is the row of highest cosine.
#ifndef CLIPC_EVAL_ZEROSHOT_H
#define CLIPC_EVAL_ZEROSHOT_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "loader/loader.h"
#include "text/tokenizer.h"
#include "eval/metrics.h"
#include "model/clip.h"

// The template of a single-template classifier (`clipc classify`, `clipc finetune`).
#define ZEROSHOT_DEFAULT_TEMPLATE "a photo of a {}."

// Reads the lines of a list file (class names or templates; common/fsutil.h's fs_read_lines: empty
// lines and '#' comment lines left out) into a new array of strings. Returns the count, or -1 with
// err_msg() naming the file (also when it has no lines).
int zeroshot_read_lines(const char *path, char ***lines);
void zeroshot_free_lines(char **lines, int n);

// Fills a template: "{}" or "{c}" becomes the class name. Returns a new malloc'ed string.
char *zeroshot_fill_template(const char *templ, const char *class_name);

// Normalized text embeddings (n, E) of n texts on the model's device, encoded in chunks, in the
// current scope; NULL with err_msg() on failure.
tensor *zeroshot_encode_texts(const clip_model *m, const tokenizer *tok, const char *const *texts, int n);

// The classifier (C, E) on the model's device, outside any scope; NULL with err_msg() on failure.
tensor *zeroshot_classifier(const clip_model *m, const tokenizer *tok, const char *const *class_names,
                            int n_classes, const char *const *templates, int n_templates);

// zeroshot_classifier with the templates of a list file. NULL with err_msg() naming the file.
tensor *zeroshot_classifier_from_file(const clip_model *m, const tokenizer *tok, const char *const *class_names,
                                      int n_classes, const char *templates_file);

// The class names of a labelled set: from a list file (NULL: the shards' own), whose count must
// match the loader's classes. Returns the count, or -1 with err_msg() naming the file or data
// (and *names NULL).
int zeroshot_class_names(const char *file, const loader *l, const char *data, char ***names);

typedef struct {
    int64_t n;                 // images evaluated
    double top1, top5;         // accuracy in [0, 1]
    int n_classes;
    int64_t *confusion;        // (C, C): row = true class, column = predicted (caller frees)
} zeroshot_result;

// Classifies every batch the loader gives for its current epoch (labels required), adding each
// image's rank of its true class and its top-1 prediction to counts (eval/metrics.h: ties go to the
// lower class index). Returns 0 (also for a loader that gives no images: one rank's share may be
// empty), or -1 when a batch fails or a label is out of range. progress (may be NULL) hears of
// every batch.
int zeroshot_evaluate_counts(const clip_model *m, const tensor *classifier, loader *l, metrics_classes *counts,
                             const metrics_progress *progress);

// Classifies one batch (images, labels, keys) into counts, in the caller's no-grad mode and scope.
int zeroshot_add_batch(const clip_model *m, const tensor *classifier, const loader_batch *b, metrics_classes *counts);

// zeroshot_evaluate_counts summarized: top-1, top-5 and the confusion matrix; no images is an error.
int zeroshot_evaluate(const clip_model *m, const tensor *classifier, loader *l, zeroshot_result *out);
void zeroshot_result_free(zeroshot_result *r);

// A labelled set classified in one call: the class names of names_file (NULL: the shards'; see
// zeroshot_class_names, data naming the set in errors) into *names, the classifier of
// templates_file, and every image of the loader's epoch counted into counts (initialised here with
// the class count). Returns the class count; or -1 with err_msg(), *names NULL and counts left
// freed. The caller frees *names (zeroshot_free_lines) and counts (metrics_classes_free).
int zeroshot_evaluate_set(const clip_model *m, const tokenizer *tok, loader *l, const char *data, const char *names_file,
                          const char *templates_file, char ***names, metrics_classes *counts,
                          const metrics_progress *progress);

// Zero-shot label probabilities of image files (`clipc classify`): probs (n_files, n_labels) on the
// host, each row the softmax over the labels of exp(logit_scale) * cosine(image, label), the
// classifier made from the labels and the templates of templates_file (NULL: the one
// ZEROSHOT_DEFAULT_TEMPLATE). Images are read batch_size files per forward pass
// (eval/embed.h's eval_embed_image_files). Returns 0, or -1 naming the file at fault.
int zeroshot_classify_files(const clip_model *m, const tokenizer *tok, const char *const *labels, int n_labels,
                            const char *templates_file, char *const *files, int n_files, int batch_size, float *probs);

// Adds the results of counts to a JSON object: "n", "n_classes", "top1", "top5",
// "mean_per_class_accuracy", "per_class" ([{"class", "n", "accuracy" (null without images)}]) and
// "confusion" (C rows of C counts).
void zeroshot_counts_json(cJSON *obj, const metrics_classes *counts, const char *const *class_names);

#endif
