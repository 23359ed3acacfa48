// retrieval: image-text retrieval with a CLIP model: image->text and text->image recall@1/5/10,
// mean and median rank, exact and in bounded memory.
//
// Scores are cosine similarities of the normalized features, computed for a chunk of queries
// against all candidates at a time: the full similarity matrix never exists, so 100k x 100k needs
// only the features plus one chunk of scores. The ranks are computed where the scores are: on the
// CPU by eval/metrics.h's loop, on a GPU by tensor_rank_in_rows, which sends back only the ranks
// of the true candidates (never the scores). Each query's rank is the 1-based rank of its true
// match(es) under eval/metrics.h's rule (ties broken by index, NaN last).
//
// Several captions of one image: a shard holds one caption per sample, so samples with the same
// key are one image with several captions (a COCO/Flickr CSV with one row per caption gives them
// the image path as key). The image is encoded once; image->text takes the best rank among the
// image's captions (a hit at K when any of them is within K), text->image ranks the caption's
// single image among all images.
#ifndef CLIPC_EVAL_RETRIEVAL_H
#define CLIPC_EVAL_RETRIEVAL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "loader/loader.h"
#include "eval/metrics.h"
#include "model/clip.h"
#include "shim/tensor.h"

#define RETRIEVAL_N_K 3
static const int64_t RETRIEVAL_K[RETRIEVAL_N_K] = {1, 5, 10};

// Elements of one chunk's work when chunk_rows is 0: (true candidates of its queries) x N, each
// ranked against its query's row (16 Mi elements).
#define RETRIEVAL_CHUNK_ELEMENTS ((int64_t)1 << 24)

typedef struct {
    int64_t n_queries;
    double recall[RETRIEVAL_N_K];  // at RETRIEVAL_K
    double mean_rank, median_rank;
} retrieval_direction;

typedef struct {
    int64_t n_images, n_texts;
    retrieval_direction image_to_text, text_to_image;
} retrieval_result;

// ranks[q] for every query row of queries (Q, E) against candidates (N, E) (same device, float):
// query q's true candidates are targets[offsets[q] .. offsets[q + 1]). chunk_rows queries are
// scored at a time (0: as many as fit RETRIEVAL_CHUNK_ELEMENTS). Returns 0 or -1 with err_msg().
int retrieval_ranks(const tensor *queries, const tensor *candidates, const int64_t *offsets,
                    const int64_t *targets, int64_t chunk_rows, int64_t *ranks);

// Both directions from image features (I, E), text features (T, E) (normalized by the caller) and
// text_image[t], the image of text t (every image has at least one text).
int retrieval_evaluate(const tensor *image_features, const tensor *text_features, const int64_t *text_image,
                       int64_t chunk_rows, retrieval_result *out);

// Encodes every batch of the loader's current epoch (the loader needs a tokenizer), grouping
// samples by key as described above, and evaluates both directions. progress (may be NULL) hears
// of every batch.
int retrieval_evaluate_loader(const clip_model *m, loader *l, int64_t chunk_rows, retrieval_result *out,
                              const metrics_progress *progress);

// Adds a result to a JSON object: "n_images", "n_texts", and "image_to_text" and "text_to_image",
// each {"n_queries", "R@1", "R@5", "R@10", "mean_rank", "median_rank"}.
void retrieval_result_json(cJSON *obj, const retrieval_result *r);

#endif
