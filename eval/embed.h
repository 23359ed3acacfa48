// embed: what evaluation reads images through: the evaluation loader over shards, the
// evaluation transform of single image files, and normalized image and text features into host
// buffers (`clipc embed`).
#ifndef CLIPC_EVAL_EMBED_H
#define CLIPC_EVAL_EMBED_H

#include <stdbool.h>

#include "loader/loader.h"
#include "session/session.h"

// A loader over labelled or captioned shards in evaluation order (the model's evaluation transform,
// no shuffle, every sample once), tokenizing the captions when with_tokens is set.
loader *eval_loader_open(const session *s, const char *data, int batch_size, int workers, bool with_tokens);

// Reads an image file and applies the model's evaluation transform into out (3, S, S) (S = the
// model's image size; cfg->preprocess: resize, centre crop, mean and std, as the loader does).
// Errors name the file.
int eval_image_load(const char *path, const clip_config *cfg, float *out);

// Normalized image features of n image files into features (n, E) on the host, batch_size files
// per forward pass. The first unreadable or corrupt file stops it with an error naming the file.
int eval_embed_image_files(const clip_model *m, char *const *paths, int n, int batch_size, float *features);

// Normalized image features (B, E) of a host batch of transformed images (B, 3, S, S), into
// features on the host.
int eval_embed_images(const clip_model *m, const float *images, int n, float *features);

// Rows of normalized embeddings (n, dim) on the host, each with its key (a shard sample's key, an
// image file's path, a text), grown as they are appended.
typedef struct {
    float *rows;  // (n, dim)
    char **keys;  // (n)
    int64_t n, cap;
    int dim;
} eval_embeddings;

void eval_embeddings_init(eval_embeddings *e, int dim);
void eval_embeddings_free(eval_embeddings *e);

// Appends the image features of every sample of the shards data (evaluation order, eval_loader_open),
// keyed by sample key. Errors name data.
int eval_embed_shards(const session *s, const char *data, int batch_size, int workers, eval_embeddings *out);

// Appends the image features of n image files (eval_embed_image_files), keyed by path.
int eval_embed_files(const clip_model *m, char *const *paths, int n, int batch_size, eval_embeddings *out);

// Appends the text features of the lines of a file ('-': stdin; empty and '#' lines left out, as
// eval/zeroshot.h's zeroshot_read_lines), keyed by the text. Errors name the file.
int eval_embed_text_file(const session *s, const char *file, eval_embeddings *out);

// Normalized text embeddings of n texts into features (n, E) on the host (the texts encoded in
// chunks, as eval/zeroshot.h's zeroshot_encode_texts). Returns 0, or -1 with err_msg().
int eval_embed_texts(const clip_model *m, const tokenizer *tok, const char *const *texts, int n, float *features);

#endif
