#include "model/pretrained.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/datafiles.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "shim/torch_file.h"

#define PATH_CAP 4096

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static cJSON *load_table(void) {
    char path[PATH_CAP];
    if (datafile_path("pretrained.json", path, sizeof path) != 0) return NULL;
    char *text = (char *)fs_read_all(path, NULL);
    if (!text) return NULL;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "models"))) {
        cJSON_Delete(root);
        err_set("%s: not OpenCLIP's table of pretrained tags (no \"models\" object)", path);
        return NULL;
    }
    return root;
}

// OpenCLIP's _clean_tag: lower case, '-' as '_'.
static void clean_tag(const char *tag, char *out, size_t cap) {
    size_t i = 0;
    for (; tag[i] && i + 1 < cap; i++) out[i] = tag[i] == '-' ? '_' : (char)tolower((unsigned char)tag[i]);
    out[i] = '\0';
}

// A value of huggingface_hub's environment, with its leading "~/" expanded as it does.
static bool env_path(const char *name, const char *suffix, char *out, size_t cap) {
    const char *v = getenv(name);
    if (!v || !*v) return false;
    const char *home = getenv("HOME");
    if (strncmp(v, "~/", 2) == 0 && home) snprintf(out, cap, "%s%s%s", home, v + 1, suffix);
    else snprintf(out, cap, "%s%s", v, suffix);
    return true;
}

// The hub cache folder, as huggingface_hub's constants.py finds it.
static void hf_hub_cache(char *out, size_t cap) {
    if (env_path("HF_HUB_CACHE", "", out, cap) || env_path("HUGGINGFACE_HUB_CACHE", "", out, cap) ||
        env_path("HF_HOME", "/hub", out, cap) || env_path("XDG_CACHE_HOME", "/huggingface/hub", out, cap))
        return;
    const char *home = getenv("HOME");
    snprintf(out, cap, "%s/.cache/huggingface/hub", home ? home : "");
}

typedef struct {
    char looked[2048];  // the paths looked at, for the message of a miss
    char *found;        // (PATH_CAP) the file, once found
} search;

static void note(search *s, const char *shown) {
    size_t n = strlen(s->looked);
    snprintf(s->looked + n, sizeof s->looked - n, "%s%s", n ? ", " : "", shown);
}

static bool take(search *s, const char *path) {
    if (!is_file(path)) return false;
    snprintf(s->found, PATH_CAP, "%s", path);
    return true;
}

// REPO/snapshots/REV/FILE: the revision refs/main names, else the newest snapshot holding FILE.
static bool find_in_repo(search *s, const char *repo, const char *file) {
    char path[PATH_CAP], rev[256] = "";
    snprintf(path, sizeof path, "%s/refs/main", repo);
    FILE *ref = fopen(path, "r");
    if (ref && fgets(rev, sizeof rev, ref)) rev[strcspn(rev, "\r\n/")] = '\0';
    if (ref) fclose(ref);
    snprintf(path, sizeof path, "%s/snapshots/%s/%s", repo, rev, file);
    if (rev[0] && take(s, path)) return true;
    snprintf(path, sizeof path, "%s/snapshots/*/%s", repo, file);
    note(s, path);
    snprintf(path, sizeof path, "%s/snapshots", repo);
    DIR *dir = opendir(path);
    time_t newest = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        struct stat st;
        snprintf(path, sizeof path, "%s/snapshots/%s/%s", repo, e->d_name, file);
        if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode) && (!newest || st.st_mtime > newest))
            newest = st.st_mtime, take(s, path);
    }
    if (dir) closedir(dir);
    return newest != 0;
}

// A hub repository ORG/NAME in the cache: models--ORG--NAME, the safetensors file of later
// OpenCLIP releases first (Python's pickled state dicts are OrderedDicts, which libtorch cannot
// read: shim/torch_file.h), then the file the tag names.
static bool find_hf_hub(search *s, const char *id, const char *file) {
    char repo[PATH_CAP];
    hf_hub_cache(repo, sizeof repo);
    size_t n = strlen(repo);
    n += (size_t)snprintf(repo + n, sizeof repo - n, "/models--");
    for (const char *c = id; *c && n + 3 < sizeof repo; c++) {
        if (*c == '/') repo[n++] = '-';
        repo[n++] = *c == '/' ? '-' : *c;
    }
    repo[n] = '\0';
    return find_in_repo(s, repo, "open_clip_model.safetensors") || find_in_repo(s, repo, file);
}

// The weights of a tag in OpenCLIP's caches; -1 naming what was looked at and what OpenCLIP
// would download (url first, as v2.20.0's download_pretrained).
static int find_cached(const char *model, const char *tag, const char *url, const char *hf_hub, char *found) {
    search s = {.found = found};
    char path[PATH_CAP], id[512], file[512];
    const char *home = getenv("HOME"), *base = strrchr(url, '/'), *slash = strrchr(hf_hub, '/');
    // OpenCLIP's hf_hub is "ORG/NAME/FILE", or "ORG/NAME/" for its default file
    snprintf(id, sizeof id, "%.*s", slash ? (int)(slash - hf_hub) : (int)strlen(hf_hub), hf_hub);
    snprintf(file, sizeof file, "%s", slash && slash[1] ? slash + 1 : "open_clip_pytorch_model.bin");
    if (url[0]) {
        snprintf(path, sizeof path, "%s/.cache/clip/%s", home ? home : "", base ? base + 1 : url);
        note(&s, path);
        if (take(&s, path)) return 0;
    }
    if (hf_hub[0] && find_hf_hub(&s, id, file)) return 0;
    if (url[0])
        return err_set("--pretrained %s: the weights of %s are in no cache (looked at %s); OpenCLIP would download %s",
                       tag, model, s.looked, url);
    return err_set("--pretrained %s: the weights of %s are in no cache (looked at %s); OpenCLIP would download %s "
                   "of the Hugging Face hub repository %s", tag, model, s.looked, file, id);
}

static void read_triple(const cJSON *entry, const char *key, float *out, bool *has) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(entry, key);
    *has = cJSON_GetArraySize(a) == 3;
    for (int c = 0; *has && c < 3; c++) out[c] = (float)cJSON_GetArrayItem(a, c)->valuedouble;
}

static int from_tag(const char *model, const char *tag, const cJSON *entry, pretrained_source *out) {
    snprintf(out->tag, sizeof out->tag, "%s", tag);
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "url"));
    const char *hf_hub = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "hf_hub"));
    out->quick_gelu = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, "quick_gelu"));
    read_triple(entry, "mean", out->mean, &out->has_mean);
    read_triple(entry, "std", out->std, &out->has_std);
    return find_cached(model, tag, url ? url : "", hf_hub ? hf_hub : "", out->path);
}

static int unknown_tag(const char *model, const char *pretrained, const cJSON *tags) {
    char list[2048] = "";
    for (const cJSON *t = tags ? tags->child : NULL; t; t = t->next) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", t->string);
    }
    if (!model) return err_set("--pretrained %s: no such file (a pretrained tag needs --model)", pretrained);
    if (!tags) return err_set("--pretrained %s: no such file, and OpenCLIP has no pretrained tags for %s", pretrained, model);
    return err_set("--pretrained %s: no such file, nor a pretrained tag of %s (its tags: %s)", pretrained, model, list);
}

int pretrained_resolve(const char *model, const char *pretrained, pretrained_source *out) {
    memset(out, 0, sizeof *out);
    cJSON *table = load_table();
    if (!table) return -1;
    char tag[128];
    clean_tag(pretrained, tag, sizeof tag);
    const cJSON *tags = model ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(table, "models"), model) : NULL;
    const cJSON *entry = tags ? cJSON_GetObjectItemCaseSensitive(tags, tag) : NULL;
    int rc = 0;
    if (entry) rc = from_tag(model, tag, entry, out);
    else if (is_file(pretrained) || strpbrk(pretrained, "/.")) snprintf(out->path, sizeof out->path, "%s", pretrained);
    else rc = unknown_tag(model, pretrained, tags);
    cJSON_Delete(table);
    torch_file_kind kind;
    if (rc == 0 && is_file(out->path) && torch_file_sniff(out->path, &kind) == 0 && kind == TORCH_FILE_SCRIPT)
        out->quick_gelu = true;
    return rc;
}

void pretrained_apply(const pretrained_source *src, clip_config *cfg) {
    if (src->quick_gelu) cfg->quick_gelu = true;
    for (int c = 0; c < 3; c++) {
        if (src->has_mean) cfg->preprocess.mean[c] = src->mean[c];
        if (src->has_std) cfg->preprocess.std[c] = src->std[c];
    }
}
