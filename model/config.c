#include "model/config.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/args.h"
#include "common/datafiles.h"
#include "common/error.h"

typedef enum {
    KEY_INT,          // positive integer
    KEY_SIZE,         // positive integer, or a square [n, n] pair (OpenCLIP's to_2tuple)
    KEY_LAYERS,       // positive integer, or a list of 4 for a ModifiedResNet tower
    KEY_PATCH,        // KEY_SIZE, or null (ModifiedResNet towers have no patches)
    KEY_FLOAT,        // finite number
    KEY_BOOL,
    KEY_LOGIT_BIAS,   // number or null; sets init_logit_bias_set
    KEY_FIXED,        // known to OpenCLIP; clipc supports only the values in `accepted`
    KEY_IGNORED,      // known to OpenCLIP, without effect on the towers clipc builds
    KEY_SECTION,      // nested object (vision_cfg, text_cfg)
    KEY_CHANNELS,     // float[3]: a number for all three or a list of three (null: the default)
    KEY_FILTER,       // preprocess_cfg.interpolation (null: the default)
    KEY_RESIZE,       // preprocess_cfg.resize_mode (null: the default)
} key_kind;

typedef struct cfg_key cfg_key;
typedef struct {
    const cfg_key *keys;
    int n;
} cfg_section;

struct cfg_key {
    const char *name;
    key_kind kind;
    size_t offset;              // into clip_config, for the value kinds
    const char *accepted;       // KEY_FIXED: JSON texts separated by '|'
    const cfg_section *section; // KEY_SECTION
};

#define VALUE(kind, field) {#field, kind, offsetof(clip_config, field), NULL, NULL}
#define VISION(kind, field) {#field, kind, offsetof(clip_config, vision.field), NULL, NULL}
#define TEXT(kind, field) {#field, kind, offsetof(clip_config, text.field), NULL, NULL}
#define FIXED(name, accepted) {name, KEY_FIXED, 0, accepted, NULL}
#define IGNORED(name) {name, KEY_IGNORED, 0, NULL, NULL}

// Custom attention blocks of newer OpenCLIP releases, for either tower.
#define BLOCK_KEYS                                                                           \
    FIXED("block_type", "null|\"default\""), FIXED("qk_norm", "false"),                     \
        FIXED("scaled_cosine_attn", "false"), FIXED("scale_heads", "false"),                \
        FIXED("scale_attn_inner", "false"), FIXED("scale_attn", "false"),                   \
        FIXED("scale_fc", "false"), FIXED("ls_init_value", "null"),                         \
        FIXED("final_ln_after_pool", "false"), FIXED("output_tokens", "false"),             \
        FIXED("act_kwargs", "null"), FIXED("norm_kwargs", "null")

static const cfg_key vision_keys[] = {
    VISION(KEY_SIZE, image_size), VISION(KEY_LAYERS, layers), VISION(KEY_INT, width),
    VISION(KEY_INT, head_width), VISION(KEY_FLOAT, mlp_ratio), VISION(KEY_PATCH, patch_size),
    BLOCK_KEYS,
    VISION(KEY_FLOAT, patch_dropout), FIXED("attentional_pool", "false"), FIXED("no_ln_pre", "false"),
    FIXED("pos_embed_type", "\"learnable\""), FIXED("pool_type", "\"tok\""),
    FIXED("input_patchnorm", "false"), FIXED("global_average_pool", "false"),
    FIXED("timm_model_name", "null"),
    IGNORED("attn_pooler_queries"), IGNORED("attn_pooler_heads"), IGNORED("n_queries"),
    IGNORED("timm_model_pretrained"), IGNORED("timm_pool"), IGNORED("timm_proj"),
    IGNORED("timm_proj_bias"), IGNORED("timm_drop"), IGNORED("timm_drop_path"),
};

static const cfg_key text_keys[] = {
    TEXT(KEY_INT, context_length), TEXT(KEY_INT, vocab_size), TEXT(KEY_INT, width),
    TEXT(KEY_INT, heads), TEXT(KEY_INT, layers),
    BLOCK_KEYS,
    FIXED("mlp_ratio", "4"), FIXED("hf_model_name", "null"), FIXED("hf_tokenizer_name", "null"),
    FIXED("tokenizer_mode", "null"), FIXED("tokenizer_kwargs", "null"),
    FIXED("embed_cls", "false"), FIXED("pad_id", "0"), FIXED("no_causal_mask", "false"),
    FIXED("attn_mask", "true"), FIXED("pool_type", "\"argmax\""), FIXED("proj_bias", "false"),
    FIXED("proj_type", "\"linear\""), FIXED("ln_post_emb", "false"),
    IGNORED("eos_id"), IGNORED("hf_model_pretrained"), IGNORED("hf_proj_type"),
    IGNORED("hf_pooler_type"),
};

static const cfg_section vision_section = {vision_keys, sizeof vision_keys / sizeof *vision_keys};
static const cfg_section text_section = {text_keys, sizeof text_keys / sizeof *text_keys};

static const cfg_key top_keys[] = {
    VALUE(KEY_INT, embed_dim), VALUE(KEY_BOOL, quick_gelu), VALUE(KEY_FLOAT, init_logit_scale),
    VALUE(KEY_LOGIT_BIAS, init_logit_bias),
    {"vision_cfg", KEY_SECTION, 0, NULL, &vision_section},
    {"text_cfg", KEY_SECTION, 0, NULL, &text_section},
    IGNORED("custom_text"),
    FIXED("cast_dtype", "null"), FIXED("nonscalar_logit_scale", "false"),
    FIXED("multimodal_cfg", "null"),
};
static const cfg_section top_section = {top_keys, sizeof top_keys / sizeof *top_keys};

// OpenCLIP's PreprocessCfg: "size" must be the image size (checked after parsing), "fill_color"
// only matters to resize_mode "longest".
static const cfg_key preprocess_keys[] = {
    {"mean", KEY_CHANNELS, offsetof(clip_config, preprocess.mean), NULL, NULL},
    {"std", KEY_CHANNELS, offsetof(clip_config, preprocess.std), NULL, NULL},
    {"interpolation", KEY_FILTER, offsetof(clip_config, preprocess.filter), NULL, NULL},
    {"resize_mode", KEY_RESIZE, offsetof(clip_config, preprocess.resize_mode), NULL, NULL},
    FIXED("mode", "null|\"RGB\""), IGNORED("size"), IGNORED("fill_color"),
};
static const cfg_section preprocess_section = {preprocess_keys, sizeof preprocess_keys / sizeof *preprocess_keys};

// The hub layout: open_clip_config.json.
static const cfg_key hub_keys[] = {
    {"model_cfg", KEY_SECTION, 0, NULL, &top_section},
    {"preprocess_cfg", KEY_SECTION, 0, NULL, &preprocess_section},
};
static const cfg_section hub_section = {hub_keys, sizeof hub_keys / sizeof *hub_keys};

static void config_set_defaults(clip_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->init_logit_scale = CLIP_CONFIG_DEFAULT_LOGIT_SCALE;
    cfg->vision.image_size = 224;
    cfg->vision.layers = 12;
    cfg->vision.width = 768;
    cfg->vision.head_width = 64;
    cfg->vision.mlp_ratio = 4.0;
    cfg->vision.patch_size = 16;
    cfg->text.context_length = 77;
    cfg->text.vocab_size = 49408;
    cfg->text.width = 512;
    cfg->text.heads = 8;
    cfg->text.layers = 12;
    cfg->preprocess = image_preprocess_openai();
}

// The error context of one key: "<source>: <section.>key".
typedef struct {
    const char *source;
    const char *prefix;  // "" or "vision_cfg." / "text_cfg."
    const char *key;
} key_where;

static int read_positive_int(const cJSON *v, const key_where *at, int *out) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < 1 || d > INT_MAX)
        return err_set("%s: %s%s: expected a positive integer", at->source, at->prefix, at->key);
    *out = (int)d;
    return 0;
}

static int read_size(const cJSON *v, const key_where *at, int *out) {
    if (!cJSON_IsArray(v)) return read_positive_int(v, at, out);
    int h = 0, w = 0;
    if (cJSON_GetArraySize(v) != 2 || read_positive_int(cJSON_GetArrayItem(v, 0), at, &h) ||
        read_positive_int(cJSON_GetArrayItem(v, 1), at, &w))
        return err_set("%s: %s%s: expected a positive integer or an [n, n] pair", at->source,
                       at->prefix, at->key);
    if (h != w)
        return err_set("%s: %s%s: non-square sizes (%d x %d) are unsupported", at->source,
                       at->prefix, at->key, h, w);
    *out = h;
    return 0;
}

// vision_cfg.layers as a list: the 4 stages of a ModifiedResNet tower.
static int read_resnet_layers(const cJSON *v, const key_where *at, clip_config *cfg) {
    int n = cJSON_GetArraySize(v);
    if (n != 4)
        return err_set("%s: %s%s: a list of %d layer counts (a ModifiedResNet tower has 4 stages)", at->source,
                       at->prefix, at->key, n);
    for (int i = 0; i < 4; i++)
        if (read_positive_int(cJSON_GetArrayItem(v, i), at, &cfg->vision.resnet_layers[i])) return -1;
    cfg->vision.layers = 0;
    return 0;
}

static int read_number(const cJSON *v, const key_where *at, double *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return err_set("%s: %s%s: expected a number", at->source, at->prefix, at->key);
    *out = v->valuedouble;
    return 0;
}

static int read_channels(const cJSON *v, const key_where *at, float *out) {
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    for (int c = 0; c < 3; c++) {
        const cJSON *item = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, c) : v;
        if (n != 3 && cJSON_IsArray(v)) item = NULL;
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
            return err_set("%s: %s%s: expected a number or a list of 3 numbers", at->source, at->prefix, at->key);
        out[c] = (float)item->valuedouble;
    }
    return 0;
}

// The index of v's string among names; -1 with a message listing them otherwise.
static int read_name(const cJSON *v, const key_where *at, const char *const *names, int n, const char *unsupported) {
    char list[128] = "";
    for (int i = 0; i < n; i++) {
        if (cJSON_IsString(v) && !strcmp(v->valuestring, names[i])) return i;
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s\"%s\"", i ? ", " : "", names[i]);
    }
    if (cJSON_IsString(v) && unsupported && !strcmp(v->valuestring, unsupported))
        return err_set("%s: %s%s: unsupported by clipc (value \"%s\"; only %s)", at->source, at->prefix, at->key,
                       unsupported, list);
    return err_set("%s: %s%s: expected one of %s", at->source, at->prefix, at->key, list);
}

// "random" is bicubic in OpenCLIP's evaluation transform.
static int read_filter(const cJSON *v, const key_where *at, image_filter *out) {
    static const char *const names[] = {"bicubic", "bilinear", "random"};
    int i = read_name(v, at, names, 3, NULL);
    if (i < 0) return -1;
    *out = i == 1 ? IMAGE_FILTER_BILINEAR : IMAGE_FILTER_BICUBIC;
    return 0;
}

static int read_resize_mode(const cJSON *v, const key_where *at, image_resize_mode *out) {
    static const char *const names[] = {"shortest", "squash"};
    int i = read_name(v, at, names, 2, "longest");
    if (i < 0) return -1;
    *out = i == 1 ? IMAGE_RESIZE_SQUASH : IMAGE_RESIZE_SHORTEST;
    return 0;
}

static bool value_is_accepted(const cJSON *v, const char *accepted) {
    char buf[64];
    for (const char *p = accepted; *p;) {
        size_t len = strcspn(p, "|");
        CLIPC_ASSERT(len < sizeof buf);
        memcpy(buf, p, len);
        buf[len] = '\0';
        cJSON *alt = cJSON_Parse(buf);
        CLIPC_ASSERT(alt);
        bool same = cJSON_Compare(v, alt, true);
        cJSON_Delete(alt);
        if (same) return true;
        p += len + (p[len] == '|');
    }
    return false;
}

static int read_fixed(const cJSON *v, const cfg_key *k, const key_where *at) {
    if (value_is_accepted(v, k->accepted)) return 0;
    char *shown = cJSON_PrintUnformatted(v);
    char accepted[64];
    snprintf(accepted, sizeof accepted, "%s", k->accepted);
    for (char *c = accepted; *c; c++)
        if (*c == '|') *c = '/';
    err_set("%s: %s%s: unsupported by clipc (value %.40s; only %s is supported)", at->source,
            at->prefix, at->key, shown ? shown : "?", accepted);
    free(shown);
    return -1;
}

static int read_section(const cJSON *obj, const cfg_section *sec, const char *source,
                        const char *prefix, clip_config *cfg);

static int read_key(const cJSON *v, const cfg_key *k, const key_where *at, clip_config *cfg) {
    void *field = (char *)cfg + k->offset;
    switch (k->kind) {
    case KEY_INT:
        return read_positive_int(v, at, field);
    case KEY_SIZE:
        return read_size(v, at, field);
    case KEY_LAYERS:
        return cJSON_IsArray(v) ? read_resnet_layers(v, at, cfg) : read_positive_int(v, at, field);
    case KEY_PATCH:
        if (cJSON_IsNull(v)) return *(int *)field = 0, 0;
        return read_size(v, at, field);
    case KEY_FLOAT:
        return read_number(v, at, field);
    case KEY_BOOL:
        if (!cJSON_IsBool(v))
            return err_set("%s: %s%s: expected true or false", at->source, at->prefix, at->key);
        *(bool *)field = cJSON_IsTrue(v);
        return 0;
    case KEY_LOGIT_BIAS:
        cfg->init_logit_bias_set = !cJSON_IsNull(v);
        return cfg->init_logit_bias_set ? read_number(v, at, field) : 0;
    case KEY_FIXED:
        return read_fixed(v, k, at);
    case KEY_IGNORED:
        return 0;
    case KEY_CHANNELS:
        return cJSON_IsNull(v) ? 0 : read_channels(v, at, field);
    case KEY_FILTER:
        return cJSON_IsNull(v) ? 0 : read_filter(v, at, field);
    case KEY_RESIZE:
        return cJSON_IsNull(v) ? 0 : read_resize_mode(v, at, field);
    case KEY_SECTION: {
        if (!cJSON_IsObject(v))
            return err_set("%s: %s%s: expected an object", at->source, at->prefix, at->key);
        char sub[64];
        snprintf(sub, sizeof sub, "%s%s.", at->prefix, at->key);
        return read_section(v, k->section, at->source, sub, cfg);
    }
    }
    return 0;
}

static const cfg_key *section_find(const cfg_section *sec, const char *name) {
    for (int i = 0; i < sec->n; i++)
        if (strcmp(sec->keys[i].name, name) == 0) return &sec->keys[i];
    return NULL;
}

static int unknown_key(const cfg_section *sec, const key_where *at) {
    const char *names[64];
    CLIPC_ASSERT(sec->n <= 64);
    for (int i = 0; i < sec->n; i++) names[i] = sec->keys[i].name;
    const char *near = args_nearest(at->key, names, sec->n);
    if (near)
        return err_set("%s: %s%s: unknown key (did you mean '%s'?)", at->source, at->prefix,
                       at->key, near);
    return err_set("%s: %s%s: unknown key", at->source, at->prefix, at->key);
}

static int read_section(const cJSON *obj, const cfg_section *sec, const char *source,
                        const char *prefix, clip_config *cfg) {
    for (const cJSON *v = obj->child; v; v = v->next) {
        key_where at = {source, prefix, v->string};
        for (const cJSON *prev = obj->child; prev != v; prev = prev->next)
            if (strcmp(prev->string, v->string) == 0)
                return err_set("%s: %s%s: duplicate key", source, prefix, v->string);
        const cfg_key *k = section_find(sec, v->string);
        if (!k) return unknown_key(sec, &at);
        if (read_key(v, k, &at, cfg)) return -1;
    }
    return 0;
}

static int check_divisible(const char *source, const char *what, int a, const char *by, int b) {
    if (a % b == 0) return 0;
    return err_set("%s: %s (%d) is not divisible by %s (%d)", source, what, a, by, b);
}

// preprocess_cfg.size, when given, must be the image size; std must be positive.
static int preprocess_validate(const cJSON *pre, const clip_config *cfg, const char *source) {
    for (int c = 0; c < 3; c++)
        if (!(cfg->preprocess.std[c] > 0))
            return err_set("%s: preprocess_cfg.std: %g is not positive", source, cfg->preprocess.std[c]);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(pre, "size");
    if (!size || cJSON_IsNull(size)) return 0;
    key_where at = {source, "preprocess_cfg.", "size"};
    int n = 0;
    if (read_size(size, &at, &n)) return -1;
    if (n != cfg->vision.image_size)
        return err_set("%s: preprocess_cfg.size: %d differs from vision_cfg.image_size (%d)", source, n,
                       cfg->vision.image_size);
    return 0;
}

// A ModifiedResNet tower: 5 halvings of the image (stem conv, stem pool, 3 strided stages) and
// width * 32 channels in heads of head_width at the attention pool.
static int resnet_validate(const clip_config *cfg, const char *source) {
    return check_divisible(source, "vision_cfg.image_size", cfg->vision.image_size, "32 (ModifiedResNet)", 32) ||
           check_divisible(source, "vision_cfg.width * 32", cfg->vision.width * 32, "vision_cfg.head_width",
                           cfg->vision.head_width) ||
           check_divisible(source, "text_cfg.width", cfg->text.width, "text_cfg.heads", cfg->text.heads);
}

static int config_validate(const clip_config *cfg, const char *source) {
    if (clip_config_is_resnet(cfg)) return resnet_validate(cfg, source) ? -1 : 0;
    if (cfg->vision.patch_size == 0)
        return err_set("%s: vision_cfg.patch_size: null is only valid with a list of layers (ModifiedResNet)", source);
    if (check_divisible(source, "vision_cfg.image_size", cfg->vision.image_size,
                        "vision_cfg.patch_size", cfg->vision.patch_size) ||
        check_divisible(source, "vision_cfg.width", cfg->vision.width, "vision_cfg.head_width",
                        cfg->vision.head_width) ||
        check_divisible(source, "text_cfg.width", cfg->text.width, "text_cfg.heads",
                        cfg->text.heads))
        return -1;
    if (!(cfg->vision.patch_dropout >= 0 && cfg->vision.patch_dropout < 1))
        return err_set("%s: vision_cfg.patch_dropout: %g is not in [0, 1)", source, cfg->vision.patch_dropout);
    double mlp_width = cfg->vision.width * cfg->vision.mlp_ratio;
    if (!(mlp_width >= 1 && mlp_width <= INT_MAX))
        return err_set("%s: vision_cfg.mlp_ratio: %g gives an MLP width of %g (must be a "
                       "positive integer size)", source, cfg->vision.mlp_ratio, mlp_width);
    return 0;
}

static int config_set_name(clip_config *cfg, const char *source) {
    const char *slash = strrchr(source, '/');
    const char *base = slash ? slash + 1 : source;
    size_t len = strlen(base);
    if (len > 5 && strcmp(base + len - 5, ".json") == 0) len -= 5;
    if (len >= sizeof cfg->name)
        return err_set("%s: the config's name (the base name) is over %zu bytes", source, sizeof cfg->name - 1);
    memcpy(cfg->name, base, len);
    cfg->name[len] = '\0';
    return 0;
}

static int json_error_line(const char *json, const char *at) {
    int line = 1;
    for (const char *p = json; p < at && *p; p++) line += *p == '\n';
    return line;
}

int clip_config_parse(const char *json, const char *source, clip_config *cfg) {
    clip_config parsed;
    config_set_defaults(&parsed);
    if (config_set_name(&parsed, source) != 0) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, true);
    if (!root)
        return err_set("%s: invalid JSON at line %d", source,
                       json_error_line(json, end ? end : json));
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        err_set("%s: expected a JSON object", source);
    } else {
        // The hub layout holds the model config under "model_cfg".
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model_cfg");
        const char *prefix = model ? "model_cfg." : "";
        if (read_section(root, model ? &hub_section : &top_section, source, "", &parsed) == 0) {
            if (!model) model = root;
            const char *required[] = {"embed_dim", "vision_cfg", "text_cfg"};
            rc = 0;
            for (int i = 0; i < 3 && rc == 0; i++)
                if (!cJSON_GetObjectItemCaseSensitive(model, required[i]))
                    rc = err_set("%s: %s%s: missing (required)", source, prefix, required[i]);
            if (rc == 0) rc = config_validate(&parsed, source);
            if (rc == 0) rc = preprocess_validate(cJSON_GetObjectItemCaseSensitive(root, "preprocess_cfg"), &parsed, source);
        }
    }
    cJSON_Delete(root);
    if (rc == 0) *cfg = parsed;
    return rc;
}

static char *read_text_file(const char *path) {
    FILE *f = fopen_checked(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) buf = xrealloc(buf, cap *= 2);
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        err_errno(path);
        return NULL;
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        err_set("%s: not a text file (contains NUL bytes)", path);
        return NULL;
    }
    return buf;
}

int clip_config_load(const char *path, clip_config *cfg) {
    char *text = read_text_file(path);
    if (!text) return -1;
    int rc = clip_config_parse(text, path, cfg);
    free(text);
    return rc;
}

static bool preprocess_is_default(const image_preprocess *p) {
    image_preprocess d = image_preprocess_openai();
    bool same = p->filter == d.filter && p->resize_mode == d.resize_mode;
    for (int c = 0; c < 3; c++) same = same && p->mean[c] == d.mean[c] && p->std[c] == d.std[c];
    return same;
}

// {"model_cfg": model, "preprocess_cfg": {...}}: OpenCLIP's open_clip_config.json.
static cJSON *hub_wrap(cJSON *model, const image_preprocess *p) {
    cJSON *hub = cJSON_CreateObject(), *pre = cJSON_CreateObject();
    cJSON_AddItemToObject(hub, "model_cfg", model);
    cJSON_AddItemToObject(hub, "preprocess_cfg", pre);
    cJSON *mean = cJSON_AddArrayToObject(pre, "mean"), *std = cJSON_AddArrayToObject(pre, "std");
    for (int c = 0; c < 3; c++) {
        cJSON_AddItemToArray(mean, cJSON_CreateNumber(p->mean[c]));
        cJSON_AddItemToArray(std, cJSON_CreateNumber(p->std[c]));
    }
    cJSON_AddStringToObject(pre, "interpolation", p->filter == IMAGE_FILTER_BILINEAR ? "bilinear" : "bicubic");
    cJSON_AddStringToObject(pre, "resize_mode", p->resize_mode == IMAGE_RESIZE_SQUASH ? "squash" : "shortest");
    return hub;
}

char *clip_config_to_json(const clip_config *cfg) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "embed_dim", cfg->embed_dim);
    cJSON_AddBoolToObject(root, "quick_gelu", cfg->quick_gelu);
    if (cfg->init_logit_scale != CLIP_CONFIG_DEFAULT_LOGIT_SCALE)
        cJSON_AddNumberToObject(root, "init_logit_scale", cfg->init_logit_scale);
    if (cfg->init_logit_bias_set)
        cJSON_AddNumberToObject(root, "init_logit_bias", cfg->init_logit_bias);
    cJSON *v = cJSON_AddObjectToObject(root, "vision_cfg");
    cJSON_AddNumberToObject(v, "image_size", cfg->vision.image_size);
    if (clip_config_is_resnet(cfg))
        cJSON_AddItemToObject(v, "layers", cJSON_CreateIntArray(cfg->vision.resnet_layers, 4));
    else
        cJSON_AddNumberToObject(v, "layers", cfg->vision.layers);
    cJSON_AddNumberToObject(v, "width", cfg->vision.width);
    cJSON_AddNumberToObject(v, "head_width", cfg->vision.head_width);
    cJSON_AddNumberToObject(v, "mlp_ratio", cfg->vision.mlp_ratio);
    if (clip_config_is_resnet(cfg))
        cJSON_AddNullToObject(v, "patch_size");
    else
        cJSON_AddNumberToObject(v, "patch_size", cfg->vision.patch_size);
    if (cfg->vision.patch_dropout > 0) cJSON_AddNumberToObject(v, "patch_dropout", cfg->vision.patch_dropout);
    cJSON *t = cJSON_AddObjectToObject(root, "text_cfg");
    cJSON_AddNumberToObject(t, "context_length", cfg->text.context_length);
    cJSON_AddNumberToObject(t, "vocab_size", cfg->text.vocab_size);
    cJSON_AddNumberToObject(t, "width", cfg->text.width);
    cJSON_AddNumberToObject(t, "heads", cfg->text.heads);
    cJSON_AddNumberToObject(t, "layers", cfg->text.layers);
    if (!preprocess_is_default(&cfg->preprocess)) root = hub_wrap(root, &cfg->preprocess);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    CLIPC_ASSERT(json);
    return json;
}

static bool has_json_suffix(const char *s) {
    size_t len = strlen(s);
    return len >= 5 && strcmp(s + len - 5, ".json") == 0;
}

// "unknown model 'X'" with the nearest "<name>.json" of dir as a suggestion.
static int unknown_model(const char *name, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return err_set("unknown model '%s' (no %s/%s.json)", name, dir, name);
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!has_json_suffix(e->d_name)) continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n] = xstrdup(e->d_name);
        names[n++][strlen(e->d_name) - 5] = '\0';
    }
    closedir(d);
    const char *near = args_nearest(name, (const char *const *)names, n);
    if (near)
        err_set("unknown model '%s' (no %s/%s.json; did you mean '%s'?)", name, dir, name, near);
    else
        err_set("unknown model '%s' (no %s/%s.json)", name, dir, name);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return -1;
}

int clip_config_find(const char *name_or_path, const char *configs_dir, char *out_path,
                     size_t cap) {
    char shipped[4096];
    const char *dir = configs_dir;
    if (!dir && datafile_path("models", shipped, sizeof shipped) != 0) return -1;
    if (!dir) dir = shipped;
    bool is_path = strchr(name_or_path, '/') || has_json_suffix(name_or_path);
    int len = is_path ? snprintf(out_path, cap, "%s", name_or_path)
                      : snprintf(out_path, cap, "%s/%s.json", dir, name_or_path);
    if (len < 0 || (size_t)len >= cap) return err_set("%s: path too long", name_or_path);
    if (access(out_path, R_OK) == 0) return 0;
    if (is_path) return err_errno(out_path);
    return unknown_model(name_or_path, dir);
}
