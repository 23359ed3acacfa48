#include "train/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

int report_parse_targets(const char *value, report_targets *out) {
    *out = (report_targets){0};
    if (!value) return 0;
    char *list = xstrdup(value), *save = NULL;
    int rc = 0;
    for (char *name = strtok_r(list, ", ", &save); name && rc == 0; name = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(name, "tensorboard")) out->tensorboard = true;
        else if (!strcmp(name, "wandb") || !strcmp(name, "all"))
            rc = err_set("--report-to %s: clipc does not report to Weights & Biases (it runs no Python and makes no "
                         "network calls); use --report-to tensorboard, and metrics.jsonl holds every figure", value);
        else rc = err_set("--report-to must be tensorboard (OpenCLIP's 'wandb' is not supported), got '%s'", name);
    }
    free(list);
    return rc;
}

// OpenCLIP's tags (v2.20.0, training/train.py) for clipc's line types and fields.
static const struct { const char *type, *field, *tag; } openclip_tags[] = {
    {"train", "loss", "train/loss"},
    {"train", "lr", "train/lr"},
    {"train", "logit_scale", "train/scale"},
    {"train", "samples_per_s", "train/samples_per_second"},
    {"train", "data_time", "train/data_time"},
    {"train", "batch_time", "train/batch_time"},
    {"val", "loss", "val/clip_val_loss"},
    {"val", "n", "val/num_samples"},
    {"val", "epoch", "val/epoch"},
    {"zeroshot", "top1", "val/zeroshot-val-top1"},
    {"zeroshot", "top5", "val/zeroshot-val-top5"},
    {"zeroshot", "n", "val/zeroshot-num_samples"},
};

// The tag of field in a line of type (NULL: not a scalar).
static char *tag_of(const char *type, const char *field) {
    for (size_t i = 0; i < sizeof openclip_tags / sizeof openclip_tags[0]; i++)
        if (!strcmp(openclip_tags[i].type, type) && !strcmp(openclip_tags[i].field, field))
            return xstrdup(openclip_tags[i].tag);
    if (!strcmp(field, "step") || !strcmp(field, "epoch")) return NULL;
    size_t cap = strlen(type) + strlen(field) + 2;
    char *tag = xmalloc(cap);
    snprintf(tag, cap, "%s/%s", type, field);
    return tag;
}

int report_write_scalars(tensorboard_file *f, const cJSON *line) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(line, "type");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(line, "step");
    if (!cJSON_IsString(type) || !cJSON_IsNumber(step)) return err_set("a metrics line without type or step");
    int cap = cJSON_GetArraySize(line), n = 0;
    char **tags = xcalloc((size_t)cap, sizeof *tags);
    float *values = xcalloc((size_t)cap, sizeof *values);
    for (const cJSON *item = line->child; item; item = item->next) {
        if (!cJSON_IsNumber(item) || !(tags[n] = tag_of(type->valuestring, item->string))) continue;
        values[n++] = (float)item->valuedouble;
    }
    int rc = n > 0 ? tensorboard_write_scalars(f, (int64_t)step->valuedouble, n, (const char *const *)tags, values) : 0;
    for (int i = 0; i < n; i++) free(tags[i]);
    free(tags);
    free(values);
    return rc;
}
