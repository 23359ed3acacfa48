#include "tests/tokenizer_fixture.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static int parse_line(const char *line, tokenizer_fixture *f) {
    cJSON *obj = cJSON_Parse(line);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(obj, "ids");
    if (!cJSON_IsString(text) || !cJSON_IsArray(ids)) {
        cJSON_Delete(obj);
        return -1;
    }
    int i = f->n++;
    f->text = xrealloc(f->text, (size_t)f->n * sizeof(char *));
    f->ids = xrealloc(f->ids, (size_t)f->n * sizeof(int64_t *));
    f->n_ids = xrealloc(f->n_ids, (size_t)f->n * sizeof(int));
    f->text[i] = xstrdup(text->valuestring);
    f->n_ids[i] = cJSON_GetArraySize(ids);
    f->ids[i] = xmalloc((size_t)(f->n_ids[i] + 1) * sizeof(int64_t));
    int k = 0;
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) f->ids[i][k++] = (int64_t)id->valuedouble;
    cJSON_Delete(obj);
    return 0;
}

int tokenizer_fixture_load(const char *path, tokenizer_fixture *f) {
    memset(f, 0, sizeof *f);
    FILE *in = fopen_checked(path, "r");
    if (!in) return -1;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (rc == 0 && getline(&line, &cap, in) > 0) {
        lineno++;
        if (parse_line(line, f) < 0) rc = err_set("%s: line %d: not {\"text\", \"ids\"}", path, lineno);
    }
    free(line);
    fclose(in);
    if (rc == 0 && f->n == 0) rc = err_set("%s: no lines", path);
    if (rc < 0) tokenizer_fixture_free(f);
    return rc;
}

void tokenizer_fixture_free(tokenizer_fixture *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->text[i]);
        free(f->ids[i]);
    }
    free(f->text);
    free(f->ids);
    free(f->n_ids);
    memset(f, 0, sizeof *f);
}
