#include "shards/manifest.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fsutil.h"

static int bad_key(const char *path, const char *key, const char *problem) {
    return err_set("%s: '%s' %s", path, key, problem);
}

static int read_count(const cJSON *obj, const char *key, const char *path, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d < 0x1p63) || d != floor(d))  // in range before the cast: a larger one is undefined
        return bad_key(path, key, "is missing or not a count");
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int parse_shards(manifest *m, const cJSON *list, const char *dir) {
    if (!cJSON_IsArray(list)) return bad_key(m->path, "shards", "is missing or not a list");
    m->n_shards = cJSON_GetArraySize(list);
    m->shards = xcalloc((size_t)(m->n_shards ? m->n_shards : 1), sizeof(manifest_shard));
    int64_t total = 0;
    for (int i = 0; i < m->n_shards; i++) {
        const cJSON *s = cJSON_GetArrayItem(list, i);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(s, "path");
        if (!cJSON_IsString(p) || !p->valuestring[0])
            return err_set("%s: shards[%d].path is missing or empty", m->path, i);
        manifest_shard *sh = &m->shards[i];
        sh->path = xstrdup(p->valuestring);
        sh->resolved_path = fs_join(dir, sh->path);
        if (read_count(s, "num_samples", m->path, &sh->num_samples)) return err_prefix("shards[%d]", i);
        if (cJSON_GetObjectItemCaseSensitive(s, "skipped") && read_count(s, "skipped", m->path, &sh->skipped))
            return err_prefix("shards[%d]", i);
        total += sh->num_samples;
    }
    if (total != m->num_samples)
        return err_set("%s: shards hold %lld samples but num_samples is %lld", m->path, (long long)total,
                       (long long)m->num_samples);
    return 0;
}

static int parse_class_names(manifest *m, const cJSON *list) {
    if (!list) return 0;
    if (!cJSON_IsArray(list)) return bad_key(m->path, "class_names", "is not a list");
    m->n_classes = cJSON_GetArraySize(list);
    m->class_names = xcalloc((size_t)(m->n_classes ? m->n_classes : 1), sizeof(char *));
    for (int i = 0; i < m->n_classes; i++) {
        const cJSON *c = cJSON_GetArrayItem(list, i);
        if (!cJSON_IsString(c)) return err_set("%s: class_names[%d] is not a string", m->path, i);
        m->class_names[i] = xstrdup(c->valuestring);
    }
    return 0;
}

static int parse_manifest(manifest *m, const cJSON *root) {
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(format) || strcmp(format->valuestring, MANIFEST_FORMAT_NAME) != 0)
        return err_set("%s: not a clipc manifest ('format' is not '" MANIFEST_FORMAT_NAME "')", m->path);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(version) || version->valueint != MANIFEST_FORMAT_VERSION)
        return err_set("%s: manifest version %s, this build reads version %d", m->path,
                       cJSON_IsNumber(version) ? "unsupported" : "missing", MANIFEST_FORMAT_VERSION);
    if (read_count(root, "num_samples", m->path, &m->num_samples)) return -1;
    if (cJSON_GetObjectItemCaseSensitive(root, "skipped") && read_count(root, "skipped", m->path, &m->skipped))
        return -1;
    const cJSON *made_by = cJSON_GetObjectItemCaseSensitive(root, "made_by");
    m->made_by = made_by ? cJSON_PrintUnformatted(made_by) : xstrdup("{}");
    char *dir = fs_dirname(m->path);
    int rc = parse_shards(m, cJSON_GetObjectItemCaseSensitive(root, "shards"), dir);
    free(dir);
    if (rc == 0) rc = parse_class_names(m, cJSON_GetObjectItemCaseSensitive(root, "class_names"));
    return rc;
}

manifest *manifest_load(const char *path) {
    manifest *m = xcalloc(1, sizeof *m);
    m->path = fs_is_dir(path) ? fs_join(path, MANIFEST_DEFAULT_NAME) : xstrdup(path);
    char *text = (char *)fs_read_all(m->path, NULL);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    int rc = -1;
    if (text && !root) err_set("%s: not valid JSON", m->path);
    else if (root) rc = parse_manifest(m, root);
    cJSON_Delete(root);
    free(text);
    if (rc != 0) {
        manifest_free(m);
        return NULL;
    }
    return m;
}

void manifest_free(manifest *m) {
    if (!m) return;
    for (int i = 0; m->shards && i < m->n_shards; i++) {
        free(m->shards[i].path);
        free(m->shards[i].resolved_path);
    }
    for (int i = 0; m->class_names && i < m->n_classes; i++) free(m->class_names[i]);
    free(m->shards);
    free(m->class_names);
    free(m->made_by);
    free(m->path);
    free(m);
}

static cJSON *shards_json(const manifest *m, int64_t *total, int64_t *skipped) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < m->n_shards; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "path", m->shards[i].path);
        cJSON_AddNumberToObject(s, "num_samples", (double)m->shards[i].num_samples);
        cJSON_AddNumberToObject(s, "skipped", (double)m->shards[i].skipped);
        cJSON_AddItemToArray(list, s);
        *total += m->shards[i].num_samples;
        *skipped += m->shards[i].skipped;
    }
    return list;
}

int manifest_save(const char *path, const manifest *m) {
    int64_t total = 0, skipped = 0;
    cJSON *shards = shards_json(m, &total, &skipped);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", MANIFEST_FORMAT_NAME);
    cJSON_AddNumberToObject(root, "version", MANIFEST_FORMAT_VERSION);
    cJSON_AddNumberToObject(root, "num_samples", (double)total);
    cJSON_AddNumberToObject(root, "skipped", (double)skipped);
    cJSON_AddStringToObject(root, "image_encoding", "webp");
    if (m->n_classes > 0)
        cJSON_AddItemToObject(root, "class_names",
                              cJSON_CreateStringArray((const char *const *)m->class_names, m->n_classes));
    cJSON *made_by = cJSON_Parse(m->made_by ? m->made_by : "{}");
    cJSON_AddItemToObject(root, "made_by", made_by ? made_by : cJSON_CreateObject());
    cJSON_AddItemToObject(root, "shards", shards);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    int rc = atomic_file_write_bytes(path, text, len + 1);
    free(text);
    return rc;
}

char *manifest_dataset_name(const char *path) {
    char *copy = xstrdup(path);
    size_t len = strlen(copy);
    while (len > 1 && copy[len - 1] == '/') copy[--len] = '\0';
    const char *suffix = "/" MANIFEST_DEFAULT_NAME;
    if (len > strlen(suffix) && !strcmp(copy + len - strlen(suffix), suffix)) copy[len - strlen(suffix)] = '\0';
    const char *slash = strrchr(copy, '/');
    char *name = xstrdup(slash ? slash + 1 : copy);
    free(copy);
    return name;
}
