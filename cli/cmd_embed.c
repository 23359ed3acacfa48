// `clipc embed`: images (shards and/or JPEG, PNG, WebP files) and text lines (a file or stdin) to
// L2-normalized embeddings, written as safetensors (image_embeddings, text_embeddings, the keys in
// the metadata) or as .npy (one kind per file, keys beside it in <stem>.keys.txt).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "eval/npy.h"
#include "cli/eval_args.h"
#include "eval/embed.h"
#include "model/safetensors.h"
#include "cli/commands.h"

static const char USAGE[] =
    "clipc embed --pretrained CKPT [IMAGE...] [--images DATA] [--texts FILE|-] --output OUT.safetensors|OUT.npy\n\n"
    "Normalized CLIP embeddings of images (image files given as arguments, and/or every sample of the shards\n"
    "DATA, in file order) and of texts (one per non-empty line of FILE, '-' for stdin). Images get the\n"
    "evaluation transform (shorter side resized, centre crop, OpenAI mean/std).\n"
    "OUT.safetensors holds image_embeddings (N, E) and text_embeddings (T, E) (float32) with the image keys\n"
    "(shard keys, then file paths) and the texts as JSON arrays in the metadata (image_keys, texts).\n"
    "OUT.npy holds one of the two (float32, C order); the keys go to OUT.keys.txt, one per line.";

static char *keys_json(const eval_embeddings *s) {
    cJSON *arr = cJSON_CreateArray();
    for (int64_t i = 0; i < s->n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(s->keys[i]));
    char *text = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return text;
}

static int write_safetensors(const char *path, const session *s, const char *pretrained, const eval_embeddings *images,
                             const eval_embeddings *texts) {
    st_writer *w = st_writer_init();
    char *config = clip_config_to_json(&s->model->cfg);
    char *image_keys = images->n ? keys_json(images) : NULL, *text_keys = texts->n ? keys_json(texts) : NULL;
    int rc = st_writer_set_metadata(w, "clipc.config", config) || st_writer_set_metadata(w, "clipc.pretrained", pretrained);
    int64_t image_shape[2] = {images->n, images->dim}, text_shape[2] = {texts->n, texts->dim};
    if (rc == 0 && images->n)
        rc = st_writer_add(w, "image_embeddings", ST_DTYPE_F32, image_shape, 2, images->rows) ||
             st_writer_set_metadata(w, "image_keys", image_keys);
    if (rc == 0 && texts->n)
        rc = st_writer_add(w, "text_embeddings", ST_DTYPE_F32, text_shape, 2, texts->rows) ||
             st_writer_set_metadata(w, "texts", text_keys);
    if (rc == 0) rc = st_writer_write(w, path);
    st_writer_free(w);
    free(config);
    free(image_keys);
    free(text_keys);
    return rc ? -1 : 0;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int write_npy(const char *path, const eval_embeddings *set) {
    if (npy_write_f32(path, set->rows, set->n, set->dim)) return -1;
    size_t stem = strlen(path) - strlen(".npy");
    char *keys_path = xmalloc(stem + sizeof ".keys.txt");
    memcpy(keys_path, path, stem);
    strcpy(keys_path + stem, ".keys.txt");
    size_t size = 0;
    for (int64_t i = 0; i < set->n; i++) size += strlen(set->keys[i]) + 1;
    char *text = xmalloc(size + 1), *p = text;
    for (int64_t i = 0; i < set->n; i++) p += sprintf(p, "%s\n", set->keys[i]);
    int rc = atomic_file_write_bytes(keys_path, text, size);
    free(text);
    free(keys_path);
    return rc;
}

typedef struct {
    eval_options common;
    char *images, *texts, *output;
    char **files;
    int n_files;
} embed_options;

static int check_options(const embed_options *o) {
    if (!o->output) return err_set("--output: where to write the embeddings (.safetensors or .npy)");
    if (!o->images && !o->texts && !o->n_files) return err_set("nothing to embed: give image files, --images DATA or --texts FILE");
    bool npy = has_suffix(o->output, ".npy");
    if (!npy && !has_suffix(o->output, ".safetensors")) return err_set("%s: --output must end in .safetensors or .npy", o->output);
    if (npy && o->texts && (o->images || o->n_files))
        return err_set("%s: a .npy file holds one array: embed images and texts into two files, or use .safetensors", o->output);
    return 0;
}

static int embed(const embed_options *o) {
    if (check_options(o)) return -1;
    session s;
    int rc = eval_session_open(&o->common, o->texts != NULL, &s);
    int dim = rc == 0 ? s.model->cfg.embed_dim : 0;
    eval_embeddings images, texts;
    eval_embeddings_init(&images, dim);
    eval_embeddings_init(&texts, dim);
    if (rc == 0 && o->images)
        rc = eval_embed_shards(&s, o->images, (int)o->common.batch_size, (int)o->common.workers, &images);
    if (rc == 0 && o->n_files) rc = eval_embed_files(s.model, o->files, o->n_files, (int)o->common.batch_size, &images);
    if (rc == 0 && o->texts) rc = eval_embed_text_file(&s, o->texts, &texts);
    if (rc == 0 && has_suffix(o->output, ".npy")) rc = write_npy(o->output, o->texts ? &texts : &images);
    else if (rc == 0) rc = write_safetensors(o->output, &s, o->common.pretrained, &images, &texts);
    if (rc == 0)
        printf("clipc embed: %lld images, %lld texts, dimension %d -> %s\n", (long long)images.n, (long long)texts.n, dim,
               o->output);
    eval_embeddings_free(&images);
    eval_embeddings_free(&texts);
    session_close(&s);
    return rc;
}

int cmd_embed(int argc, char **argv) {
    embed_options o = {0};
    eval_options_default(&o.common);
    arg_spec specs[EVAL_N_COMMON_SPECS + 3] = {
        {"images", ARG_STR, &o.images, "shards whose images to embed (all samples, file order)", false},
        {"texts", ARG_STR, &o.texts, "file of texts to embed, one per line ('-': stdin)", false},
        {"output", ARG_STR, &o.output, "OUT.safetensors (both kinds) or OUT.npy (one kind)", false},
    };
    eval_options_specs(&o.common, specs + 3);
    o.files = xmalloc((size_t)(argc > 0 ? argc : 1) * sizeof(char *));
    int rc = args_parse_command("embed", USAGE, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, o.files, argc,
                             &o.n_files);
    if (rc < 0) rc = embed(&o) == 0 ? 0 : eval_fail("embed");
    free(o.files);
    return rc;
}
