#include "train/log.h"

#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "train/report.h"

struct metrics_log {
    FILE *f;
    char *path;
    tensorboard_file *tensorboard;  // --report-to tensorboard (NULL: off)
};

metrics_log *metrics_log_open(const char *path) {
    FILE *f = fopen_checked(path, "a");
    if (!f) return NULL;
    metrics_log *l = xmalloc(sizeof *l);
    l->f = f;
    l->path = xstrdup(path);
    l->tensorboard = NULL;
    return l;
}

void metrics_log_close(metrics_log *l) {
    if (!l) return;
    fclose(l->f);
    tensorboard_close(l->tensorboard);
    free(l->path);
    free(l);
}

cJSON *metrics_line(const char *type, int64_t step, int64_t epoch) {
    cJSON *line = cJSON_CreateObject();
    cJSON_AddStringToObject(line, "type", type);
    cJSON_AddNumberToObject(line, "step", (double)step);
    cJSON_AddNumberToObject(line, "epoch", (double)epoch);
    return line;
}

int metrics_log_write(metrics_log *l, cJSON *line, bool flush) {
    char *text = cJSON_PrintUnformatted(line);
    int rc = text && fprintf(l->f, "%s\n", text) >= 0 && (!flush || fflush(l->f) == 0) ? 0 : err_errno(l->path);
    if (rc == 0 && l->tensorboard) rc = report_write_scalars(l->tensorboard, line);
    cJSON_Delete(line);
    free(text);
    return rc;
}

int metrics_log_add_tensorboard(metrics_log *l, const char *dir) {
    l->tensorboard = tensorboard_open(dir);
    return l->tensorboard ? 0 : -1;
}
