// `clipc classify`: zero-shot label probabilities of image files, for quick use from the shell:
// softmax over the labels of exp(logit_scale) * cosine(image, label classifier).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "cli/eval_args.h"
#include "eval/zeroshot.h"
#include "cli/commands.h"

static const char USAGE[] =
    "clipc classify --pretrained CKPT --labels \"cat,dog,car\" [--templates FILE] [--output FILE.json] IMAGE...\n\n"
    "Prints, for each JPEG, PNG or WebP image, the probability of each label: the softmax over the labels\n"
    "of the model's logit scale times the cosine between the image and the label's text embedding (the\n"
    "mean over the templates, one per line with {} for the label; default \"" ZEROSHOT_DEFAULT_TEMPLATE "\").";

typedef struct {
    eval_options common;
    char *labels, *templates, *output;
    char **files;
    int n_files;
} classify_options;

// "cat, dog,car" -> {"cat", "dog", "car"}: comma-separated, surrounding spaces removed.
static int split_labels(const char *list, char ***labels) {
    int n = 0;
    *labels = xmalloc((strlen(list) + 1) * sizeof(char *));
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        const char *stop = end ? end : p + strlen(p);
        while (p < stop && *p == ' ') p++;
        while (stop > p && stop[-1] == ' ') stop--;
        if (stop == p) {
            zeroshot_free_lines(*labels, n);
            return err_set("--labels: empty label in '%s'", list);
        }
        (*labels)[n] = xmalloc((size_t)(stop - p) + 1);
        memcpy((*labels)[n], p, (size_t)(stop - p));
        (*labels)[n++][stop - p] = '\0';
        if (!end) return n;
        p = end + 1;
    }
}

static void print_table(char **files, int n, char **labels, int C, const float *probs) {
    printf("image\tlabel");
    for (int c = 0; c < C; c++) printf("\t%s", labels[c]);
    printf("\n");
    for (int i = 0; i < n; i++) {
        const float *p = probs + (size_t)i * (size_t)C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (p[c] > p[best]) best = c;
        printf("%s\t%s", files[i], labels[best]);
        for (int c = 0; c < C; c++) printf("\t%.4f", p[c]);
        printf("\n");
    }
}

static int write_json(const char *path, char **files, int n, char **labels, int C, const float *probs) {
    cJSON *root = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_CreateObject(), *p = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "image", files[i]);
        for (int c = 0; c < C; c++) cJSON_AddNumberToObject(p, labels[c], probs[(size_t)i * (size_t)C + (size_t)c]);
        cJSON_AddItemToObject(e, "probabilities", p);
        cJSON_AddItemToArray(root, e);
    }
    char *text = cJSON_Print(root);
    int rc = atomic_file_write_bytes(path, text, strlen(text));
    free(text);
    cJSON_Delete(root);
    return rc;
}

static int classify(const classify_options *o) {
    if (!o->labels) return err_set("--labels: the candidate labels, comma-separated (\"cat,dog,car\")");
    if (o->n_files == 0) return err_set("no images: give one or more image files");
    char **labels = NULL;
    int C = split_labels(o->labels, &labels);
    if (C < 0) return -1;
    session s;
    float *probs = xmalloc((size_t)o->n_files * (size_t)C * sizeof(float));
    int rc = eval_session_open(&o->common, true, &s);
    if (rc == 0)
        rc = zeroshot_classify_files(s.model, s.tok, (const char *const *)labels, C, o->templates, o->files, o->n_files,
                                     (int)o->common.batch_size, probs);
    if (rc == 0) print_table(o->files, o->n_files, labels, C, probs);
    if (rc == 0 && o->output) rc = write_json(o->output, o->files, o->n_files, labels, C, probs);
    free(probs);
    zeroshot_free_lines(labels, C);
    session_close(&s);
    return rc;
}

int cmd_classify(int argc, char **argv) {
    classify_options o = {0};
    eval_options_default(&o.common);
    arg_spec specs[EVAL_N_COMMON_SPECS + 3] = {
        {"labels", ARG_STR, &o.labels, "candidate labels, comma-separated", false},
        {"templates", ARG_STR, &o.templates, "templates file, one per line with {} (default \"" ZEROSHOT_DEFAULT_TEMPLATE "\")", false},
        {"output", ARG_STR, &o.output, "also write the probabilities as JSON to this file", false},
    };
    eval_options_specs(&o.common, specs + 3);
    o.files = xmalloc((size_t)(argc > 0 ? argc : 1) * sizeof(char *));
    int rc = args_parse_command("classify", USAGE, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv, o.files, argc,
                             &o.n_files);
    if (rc < 0) rc = classify(&o) == 0 ? 0 : eval_fail("classify");
    free(o.files);
    return rc;
}
