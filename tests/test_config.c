// Tests OpenCLIP model config parsing: every shipped config, OpenCLIP's defaults, unknown keys
// with suggestions, unsupported keys, invalid values, the hub layout with its preprocess_cfg, the
// JSON round trip (also through safetensors metadata), name lookup, and the fixture's config.json.
// Usage: test_config CONFIGS_DIR FIXTURES_DIR
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "model/config.h"
#include "model/safetensors.h"

static const char *configs_dir;
static const char *fixtures_dir;

static void load_named(const char *name, clip_config *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.json", configs_dir, name);
    if (clip_config_load(path, c)) fail_msg("%s", err_msg());
    assert_string_equal(c->name, name);
}

static void assert_same_config(const clip_config *a, const clip_config *b) {
    assert_int_equal(a->embed_dim, b->embed_dim);
    assert_int_equal(a->quick_gelu, b->quick_gelu);
    assert_true(a->init_logit_scale == b->init_logit_scale);
    assert_int_equal(a->init_logit_bias_set, b->init_logit_bias_set);
    if (a->init_logit_bias_set) assert_true(a->init_logit_bias == b->init_logit_bias);
    assert_int_equal(a->vision.image_size, b->vision.image_size);
    assert_int_equal(a->vision.layers, b->vision.layers);
    assert_int_equal(a->vision.width, b->vision.width);
    assert_int_equal(a->vision.head_width, b->vision.head_width);
    assert_int_equal(a->vision.patch_size, b->vision.patch_size);
    assert_memory_equal(a->vision.resnet_layers, b->vision.resnet_layers, sizeof a->vision.resnet_layers);
    assert_true(a->vision.mlp_ratio == b->vision.mlp_ratio);
    assert_true(a->vision.patch_dropout == b->vision.patch_dropout);
    assert_int_equal(a->text.context_length, b->text.context_length);
    assert_int_equal(a->text.vocab_size, b->text.vocab_size);
    assert_int_equal(a->text.width, b->text.width);
    assert_int_equal(a->text.heads, b->text.heads);
    assert_int_equal(a->text.layers, b->text.layers);
    assert_memory_equal(a->preprocess.mean, b->preprocess.mean, sizeof a->preprocess.mean);
    assert_memory_equal(a->preprocess.std, b->preprocess.std, sizeof a->preprocess.std);
    assert_int_equal(a->preprocess.filter, b->preprocess.filter);
    assert_int_equal(a->preprocess.resize_mode, b->preprocess.resize_mode);
}

static void assert_round_trips(const clip_config *c) {
    char *json = clip_config_to_json(c);
    clip_config back;
    if (clip_config_parse(json, c->name, &back)) fail_msg("%s\n%s", err_msg(), json);
    free(json);
    assert_same_config(c, &back);
    assert_string_equal(back.name, c->name);
}

static void test_every_shipped_config(void **state) {
    (void)state;
    DIR *d = opendir(configs_dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".json")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(len - 5), e->d_name);
        clip_config c;
        load_named(name, &c);
        assert_round_trips(&c);
        n++;
    }
    closedir(d);
    assert_true(n >= 13);
}

static void test_shipped_values(void **state) {
    (void)state;
    clip_config b32, b32q, b16, l14, l14q, tiny;
    load_named("ViT-B-32", &b32);
    load_named("ViT-B-32-quickgelu", &b32q);
    load_named("ViT-B-16", &b16);
    load_named("ViT-L-14", &l14);
    load_named("ViT-L-14-quickgelu", &l14q);
    load_named("clip-tiny", &tiny);
    assert_int_equal(b32.embed_dim, 512);
    assert_false(b32.quick_gelu);
    assert_int_equal(b32.vision.patch_size, 32);
    assert_int_equal(b32.vision.head_width, 64);  // OpenCLIP's default: 12 heads of width 64
    assert_true(b32.vision.mlp_ratio == 4.0);
    assert_int_equal(b32.text.heads, 8);
    assert_true(b32q.quick_gelu);
    b32q.quick_gelu = false;
    assert_same_config(&b32, &b32q);
    assert_int_equal(b16.vision.patch_size, 16);
    assert_int_equal(l14.vision.width, 1024);
    assert_int_equal(l14.vision.layers, 24);
    assert_int_equal(l14.vision.patch_size, 14);
    assert_int_equal(l14.text.width, 768);
    assert_int_equal(l14.embed_dim, 768);
    assert_true(l14q.quick_gelu);
    assert_int_equal(tiny.vision.image_size, 32);
    assert_int_equal(tiny.vision.patch_size, 4);
    assert_int_equal(tiny.vision.width, 128);
    assert_int_equal(tiny.vision.layers, 4);
    assert_int_equal(tiny.vision.head_width, 32);
    assert_int_equal(tiny.text.width, 128);
    assert_int_equal(tiny.text.heads, 4);
    assert_int_equal(tiny.text.layers, 4);
    assert_int_equal(tiny.embed_dim, 128);
}

// OpenCLIP's ModifiedResNet configs: layers a list, patch_size null, heads width * 32 / 64.
static void test_resnet_configs(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int layers[4], width, image_size, embed_dim;
    } rn[] = {{"RN50", {3, 4, 6, 3}, 64, 224, 1024},     {"RN101", {3, 4, 23, 3}, 64, 224, 512},
              {"RN50x4", {4, 6, 10, 6}, 80, 288, 640},   {"RN50x16", {6, 8, 18, 8}, 96, 384, 768},
              {"RN50x64", {3, 15, 36, 10}, 128, 448, 1024}};
    for (size_t i = 0; i < sizeof rn / sizeof *rn; i++) {
        clip_config c;
        load_named(rn[i].name, &c);
        assert_true(clip_config_is_resnet(&c));
        assert_memory_equal(c.vision.resnet_layers, rn[i].layers, sizeof rn[i].layers);
        assert_int_equal(c.vision.width, rn[i].width);
        assert_int_equal(c.vision.image_size, rn[i].image_size);
        assert_int_equal(c.embed_dim, rn[i].embed_dim);
        assert_int_equal(c.vision.patch_size, 0);
        char *json = clip_config_to_json(&c);
        assert_non_null(strstr(json, "\"patch_size\":\tnull"));
        free(json);
    }
}

// OpenCLIP's large configs (v2.20.0's model_configs): head widths, fractional MLP ratios (the MLP
// width is int(width * mlp_ratio), 6144 and 8192 as in OpenCLIP), text widths and heads.
static void test_large_configs(void **state) {
    (void)state;
    clip_config l336, h14, g14, bigg;
    load_named("ViT-L-14-336", &l336);
    load_named("ViT-H-14", &h14);
    load_named("ViT-g-14", &g14);
    load_named("ViT-bigG-14", &bigg);
    assert_int_equal(l336.vision.image_size, 336);
    assert_int_equal(l336.vision.patch_size, 14);
    assert_int_equal(h14.vision.width, 1280);
    assert_int_equal(h14.vision.head_width, 80);
    assert_int_equal(h14.vision.layers, 32);
    assert_int_equal(h14.text.width, 1024);
    assert_int_equal(h14.text.heads, 16);
    assert_int_equal(h14.embed_dim, 1024);
    assert_int_equal(g14.vision.head_width, 88);
    assert_true(g14.vision.mlp_ratio == 4.3637);
    assert_int_equal((int)(g14.vision.width * g14.vision.mlp_ratio), 6144);
    assert_int_equal(bigg.vision.width, 1664);
    assert_int_equal(bigg.vision.layers, 48);
    assert_int_equal(bigg.vision.head_width, 104);
    assert_int_equal((int)(bigg.vision.width * bigg.vision.mlp_ratio), 8192);
    assert_int_equal(bigg.text.width, 1280);
    assert_int_equal(bigg.text.heads, 20);
    assert_int_equal(bigg.text.layers, 32);
    assert_int_equal(bigg.embed_dim, 1280);
}

static void test_defaults(void **state) {
    (void)state;
    clip_config c;
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}",
                                       "dir/Minimal.json", &c), 0);
    assert_string_equal(c.name, "Minimal");
    char source[300] = "dir/";  // a base name of 256 bytes: refused, not cut
    memset(source + 4, 'n', 256);
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}", source, &c), -1);
    assert_non_null(strstr(err_msg(), "over 255 bytes"));
    source[259] = '\0';  // 255 bytes fit
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}", source, &c), 0);
    assert_int_equal(strlen(c.name), 255);
    assert_int_equal(c.embed_dim, 8);
    assert_false(c.quick_gelu);
    assert_false(c.init_logit_bias_set);
    assert_true(fabs(c.init_logit_scale - log(1 / 0.07)) < 1e-15);
    assert_int_equal(c.vision.image_size, 224);
    assert_int_equal(c.vision.layers, 12);
    assert_int_equal(c.vision.width, 768);
    assert_int_equal(c.vision.head_width, 64);
    assert_int_equal(c.vision.patch_size, 16);
    assert_true(c.vision.mlp_ratio == 4.0);
    assert_int_equal(c.text.context_length, 77);
    assert_int_equal(c.text.vocab_size, 49408);
    assert_int_equal(c.text.width, 512);
    assert_int_equal(c.text.heads, 8);
    assert_int_equal(c.text.layers, 12);
    image_preprocess openai = image_preprocess_openai();
    assert_memory_equal(&c.preprocess, &openai, sizeof openai);
    assert_true(c.preprocess.mean[0] == 0.48145466f && c.preprocess.std[2] == 0.27577711f);
    char *json = clip_config_to_json(&c);
    assert_null(strstr(json, "init_logit"));  // defaults stay implicit, as in OpenCLIP's files
    assert_null(strstr(json, "preprocess_cfg"));  // a plain model config, loadable by create_model
    free(json);
}

// OpenCLIP's hub layout (open_clip_config.json): the model under "model_cfg", the evaluation
// transform under "preprocess_cfg"; written back in that layout when the transform is not the default.
static void test_preprocess_cfg(void **state) {
    (void)state;
    clip_config c;
    const char *hub = "{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {\"image_size\": 64, \"patch_size\": 16}, "
                      "\"text_cfg\": {}}, \"preprocess_cfg\": {\"mean\": [0.5, 0.25, 0.125], \"std\": 0.5, "
                      "\"interpolation\": \"bilinear\", \"resize_mode\": \"squash\", \"size\": [64, 64], "
                      "\"mode\": \"RGB\", \"fill_color\": 0}}";
    if (clip_config_parse(hub, "hub/open_clip_config.json", &c)) fail_msg("%s", err_msg());
    assert_string_equal(c.name, "open_clip_config");
    assert_int_equal(c.embed_dim, 8);
    assert_int_equal(c.vision.image_size, 64);
    assert_true(c.preprocess.mean[0] == 0.5f && c.preprocess.mean[1] == 0.25f && c.preprocess.mean[2] == 0.125f);
    for (int i = 0; i < 3; i++) assert_true(c.preprocess.std[i] == 0.5f);  // one number for all channels
    assert_int_equal(c.preprocess.filter, IMAGE_FILTER_BILINEAR);
    assert_int_equal(c.preprocess.resize_mode, IMAGE_RESIZE_SQUASH);
    char *json = clip_config_to_json(&c);
    assert_non_null(strstr(json, "\"model_cfg\""));
    assert_non_null(strstr(json, "\"squash\""));
    free(json);
    assert_round_trips(&c);
    // null values and "random" (bicubic at evaluation) keep OpenCLIP's defaults; no preprocess_cfg too.
    const char *nulls = "{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}, "
                        "\"preprocess_cfg\": {\"mean\": null, \"std\": null, \"interpolation\": \"random\", "
                        "\"resize_mode\": null, \"size\": null}}";
    if (clip_config_parse(nulls, "n.json", &c)) fail_msg("%s", err_msg());
    image_preprocess openai = image_preprocess_openai();
    assert_memory_equal(&c.preprocess, &openai, sizeof openai);
    assert_int_equal(clip_config_parse("{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}}",
                                       "m.json", &c), 0);
    assert_memory_equal(&c.preprocess, &openai, sizeof openai);
}

// Keys OpenCLIP knows, at the values clipc supports, and a SigLIP-style logit bias.
static void test_accepted_openclip_keys(void **state) {
    (void)state;
    const char *json =
        "{\"embed_dim\": 16, \"custom_text\": true, \"cast_dtype\": null,"
        " \"init_logit_scale\": 2.302585092994046, \"init_logit_bias\": -10,"
        " \"vision_cfg\": {\"image_size\": [32, 32], \"patch_size\": 8, \"width\": 64,"
        "   \"head_width\": 32, \"layers\": 1, \"mlp_ratio\": 2.5, \"timm_model_name\": null,"
        "   \"patch_dropout\": 0.0, \"pool_type\": \"tok\", \"ls_init_value\": null,"
        "   \"block_type\": \"default\", \"timm_pool\": \"avg\", \"attentional_pool\": false},"
        " \"text_cfg\": {\"width\": 32, \"heads\": 2, \"layers\": 1, \"pool_type\": \"argmax\","
        "   \"mlp_ratio\": 4, \"hf_model_name\": null, \"pad_id\": 0, \"proj_bias\": false}}";
    clip_config c;
    if (clip_config_parse(json, "siglipish.json", &c)) fail_msg("%s", err_msg());
    assert_int_equal(c.vision.image_size, 32);
    assert_true(c.vision.mlp_ratio == 2.5);
    assert_true(c.init_logit_bias_set);
    assert_true(c.init_logit_bias == -10);
    assert_true(c.init_logit_scale == 2.302585092994046);
    assert_round_trips(&c);
    assert_int_equal(clip_config_parse("{\"embed_dim\": 8, \"init_logit_bias\": null, "
                                       "\"vision_cfg\": {}, \"text_cfg\": {}}", "n.json", &c), 0);
    assert_false(c.init_logit_bias_set);
}

typedef struct {
    const char *json;
    const char *message;
} bad_config;

#define HUB(preprocess)                                                                                  \
    "{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}, \"preprocess_cfg\": {" preprocess "}}"
#define WRAP(vision, text) \
    "{\"embed_dim\": 8, \"vision_cfg\": {" vision "}, \"text_cfg\": {" text "}}"

static const bad_config bad_configs[] = {
    // Unknown keys, with and without a suggestion.
    {WRAP("\"widht\": 64", ""), "x.json: vision_cfg.widht: unknown key (did you mean 'width'?)"},
    {WRAP("", "\"context_lenght\": 77"),
     "x.json: text_cfg.context_lenght: unknown key (did you mean 'context_length'?)"},
    {"{\"embed_dims\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: embed_dims: unknown key (did you mean 'embed_dim'?)"},
    {"{\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}, \"zzzzzzzzzzzz\": 1}",
     "x.json: zzzzzzzzzzzz: unknown key"},
    // Keys OpenCLIP knows at values clipc does not support.
    {WRAP("\"timm_model_name\": \"vit_base_patch16_224\"", ""),
     "x.json: vision_cfg.timm_model_name: unsupported by clipc"},
    {WRAP("\"ls_init_value\": 1e-5", ""), "x.json: vision_cfg.ls_init_value: unsupported"},
    {WRAP("\"patch_dropout\": 1", ""), "x.json: vision_cfg.patch_dropout: 1 is not in [0, 1)"},
    {WRAP("\"attentional_pool\": true", ""), "x.json: vision_cfg.attentional_pool: unsupported"},
    {WRAP("\"no_ln_pre\": true", ""), "x.json: vision_cfg.no_ln_pre: unsupported"},
    {WRAP("\"pool_type\": \"avg\"", ""),
     "x.json: vision_cfg.pool_type: unsupported by clipc (value \"avg\"; only \"tok\" is supported)"},
    {WRAP("\"final_ln_after_pool\": true", ""), "vision_cfg.final_ln_after_pool: unsupported"},
    {WRAP("\"output_tokens\": true", ""), "vision_cfg.output_tokens: unsupported"},
    {WRAP("\"layers\": [3, 4, 6]", ""),
     "x.json: vision_cfg.layers: a list of 3 layer counts (a ModifiedResNet tower has 4 stages)"},
    {WRAP("\"layers\": [3, 4, 0, 3]", ""), "x.json: vision_cfg.layers: expected a positive integer"},
    {WRAP("\"layers\": [3, 4, 6, 3], \"image_size\": 100", ""),
     "x.json: vision_cfg.image_size (100) is not divisible by 32 (ModifiedResNet)"},
    {WRAP("\"patch_size\": null", ""), "x.json: vision_cfg.patch_size: null is only valid with a list of layers"},
    {WRAP("\"image_size\": [224, 160]", ""), "vision_cfg.image_size: non-square sizes"},
    {WRAP("", "\"hf_model_name\": \"roberta-base\""), "text_cfg.hf_model_name: unsupported"},
    {WRAP("", "\"proj_bias\": true"), "text_cfg.proj_bias: unsupported"},
    {WRAP("", "\"pool_type\": \"last\""), "text_cfg.pool_type: unsupported"},
    {WRAP("", "\"embed_cls\": true"), "text_cfg.embed_cls: unsupported"},
    {WRAP("", "\"pad_id\": 1"), "text_cfg.pad_id: unsupported"},
    {WRAP("", "\"no_causal_mask\": true"), "text_cfg.no_causal_mask: unsupported"},
    {WRAP("", "\"norm_kwargs\": {\"eps\": 1e-6}"), "text_cfg.norm_kwargs: unsupported"},
    {WRAP("", "\"act_kwargs\": {}"), "text_cfg.act_kwargs: unsupported"},
    {WRAP("", "\"mlp_ratio\": 2"), "text_cfg.mlp_ratio: unsupported"},
    {WRAP("", "\"block_type\": \"custom\""),
     "text_cfg.block_type: unsupported by clipc (value \"custom\"; only null/\"default\" is"},
    {"{\"embed_dim\": 8, \"cast_dtype\": \"fp16\", \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: cast_dtype: unsupported"},
    {"{\"embed_dim\": 8, \"multimodal_cfg\": {}, \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: multimodal_cfg: unsupported"},
    // Invalid values.
    {WRAP("\"image_size\": 225", ""),
     "x.json: vision_cfg.image_size (225) is not divisible by vision_cfg.patch_size (16)"},
    {WRAP("\"width\": 100", ""),
     "x.json: vision_cfg.width (100) is not divisible by vision_cfg.head_width (64)"},
    {WRAP("", "\"width\": 100"), "x.json: text_cfg.width (100) is not divisible by text_cfg.heads (8)"},
    {WRAP("\"mlp_ratio\": 0", ""), "x.json: vision_cfg.mlp_ratio: 0 gives an MLP width of 0"},
    {WRAP("\"mlp_ratio\": \"4\"", ""), "x.json: vision_cfg.mlp_ratio: expected a number"},
    {WRAP("\"layers\": 2.5", ""), "x.json: vision_cfg.layers: expected a positive integer"},
    {WRAP("\"patch_size\": 0", ""), "x.json: vision_cfg.patch_size: expected a positive integer"},
    {WRAP("", "\"heads\": -2"), "x.json: text_cfg.heads: expected a positive integer"},
    {WRAP("", "\"vocab_size\": 1e12"), "x.json: text_cfg.vocab_size: expected a positive integer"},
    {"{\"embed_dim\": \"512\", \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: embed_dim: expected a positive integer"},
    {"{\"embed_dim\": 8, \"quick_gelu\": 1, \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: quick_gelu: expected true or false"},
    {"{\"embed_dim\": 8, \"vision_cfg\": [], \"text_cfg\": {}}", "x.json: vision_cfg: expected an object"},
    {"{\"vision_cfg\": {}, \"text_cfg\": {}}", "x.json: embed_dim: missing (required)"},
    {"{\"embed_dim\": 8, \"vision_cfg\": {}}", "x.json: text_cfg: missing (required)"},
    {"{\"embed_dim\": 8, \"embed_dim\": 9, \"vision_cfg\": {}, \"text_cfg\": {}}",
     "x.json: embed_dim: duplicate key"},
    {"[1]", "x.json: expected a JSON object"},
    {"{\n\"embed_dim\": 8,\n\"vision_cfg\": {,\n}", "x.json: invalid JSON at line 3"},
    {"{\"embed_dim\": 8} trailing", "x.json: invalid JSON"},
    {"", "x.json: invalid JSON at line 1"},
    // The evaluation transform (hub layout only).
    {"{\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}, \"preprocess_cfg\": {}}",
     "x.json: preprocess_cfg: unknown key"},
    {HUB("\"resize_mode\": \"longest\""),
     "x.json: preprocess_cfg.resize_mode: unsupported by clipc (value \"longest\"; only \"shortest\", \"squash\")"},
    {HUB("\"interpolation\": \"nearest\""),
     "x.json: preprocess_cfg.interpolation: expected one of \"bicubic\", \"bilinear\", \"random\""},
    {HUB("\"mean\": [0.5, 0.5]"), "x.json: preprocess_cfg.mean: expected a number or a list of 3 numbers"},
    {HUB("\"mean\": \"0.5\""), "x.json: preprocess_cfg.mean: expected a number or a list of 3 numbers"},
    {HUB("\"std\": [0.5, 0, 0.5]"), "x.json: preprocess_cfg.std: 0 is not positive"},
    {HUB("\"size\": 64"), "x.json: preprocess_cfg.size: 64 differs from vision_cfg.image_size (224)"},
    {HUB("\"mode\": \"L\""), "x.json: preprocess_cfg.mode: unsupported"},
    {HUB("\"meen\": 0.5"), "x.json: preprocess_cfg.meen: unknown key (did you mean 'mean'?)"},
    {"{\"model_cfg\": {\"vision_cfg\": {}, \"text_cfg\": {}}}", "x.json: model_cfg.embed_dim: missing (required)"},
    {"{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {\"widht\": 1}, \"text_cfg\": {}}}",
     "x.json: model_cfg.vision_cfg.widht: unknown key"},
    {"{\"model_cfg\": [], \"preprocess_cfg\": {}}", "x.json: model_cfg: expected an object"},
    {"{\"model_cfg\": {\"embed_dim\": 8, \"vision_cfg\": {}, \"text_cfg\": {}}, \"tokenizer\": 1}",
     "x.json: tokenizer: unknown key"},
};

static void test_bad_configs(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof bad_configs / sizeof *bad_configs; i++) {
        clip_config c = {.embed_dim = -7};
        err_clear();
        int rc = clip_config_parse(bad_configs[i].json, "x.json", &c);
        if (rc != -1 || !strstr(err_msg(), bad_configs[i].message))
            fail_msg("%s\n  expected '%s'\n  got %d '%s'", bad_configs[i].json,
                     bad_configs[i].message, rc, err_msg());
        assert_int_equal(c.embed_dim, -7);  // untouched on failure
    }
}

static void test_load_errors(void **state) {
    (void)state;
    clip_config c;
    assert_int_equal(clip_config_load("no/such/config.json", &c), -1);
    assert_non_null(strstr(err_msg(), "no/such/config.json: No such file"));
    char path[1024];
    snprintf(path, sizeof path, "%s/weights.safetensors", fixtures_dir);
    assert_int_equal(clip_config_load(path, &c), -1);
    assert_non_null(strstr(err_msg(), path));
}

static void test_find(void **state) {
    (void)state;
    char out[1024], expect[1024];
    assert_int_equal(clip_config_find("ViT-B-32", configs_dir, out, sizeof out), 0);
    snprintf(expect, sizeof expect, "%s/ViT-B-32.json", configs_dir);
    assert_string_equal(out, expect);
    assert_int_equal(clip_config_find(expect, "elsewhere", out, sizeof out), 0);
    assert_string_equal(out, expect);
    assert_int_equal(clip_config_find("ViT-B-32-quickgel", configs_dir, out, sizeof out), -1);
    assert_non_null(strstr(err_msg(), "unknown model 'ViT-B-32-quickgel'"));
    assert_non_null(strstr(err_msg(), "did you mean 'ViT-B-32-quickgelu'?"));
    assert_int_equal(clip_config_find("Totally-Different-Model-Name", configs_dir, out, sizeof out), -1);
    assert_null(strstr(err_msg(), "did you mean"));
    assert_int_equal(clip_config_find("missing/ViT-B-32.json", configs_dir, out, sizeof out), -1);
    assert_non_null(strstr(err_msg(), "missing/ViT-B-32.json: No such file"));
    assert_int_equal(clip_config_find("ViT-B-32", configs_dir, out, 8), -1);
    assert_non_null(strstr(err_msg(), "path too long"));
    assert_int_equal(clip_config_find("ViT-B-32", "/nonexistent-dir", out, sizeof out), -1);
    assert_non_null(strstr(err_msg(), "unknown model 'ViT-B-32'"));
}

static void test_fixture_config(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", fixtures_dir);
    clip_config c;
    if (clip_config_load(path, &c)) fail_msg("%s", err_msg());
    assert_string_equal(c.name, "config");
    assert_true(c.embed_dim > 0);
    assert_int_equal(c.vision.image_size % c.vision.patch_size, 0);
    assert_round_trips(&c);
    // The fixture weights carry the same config in their metadata.
    snprintf(path, sizeof path, "%s/weights.safetensors", fixtures_dir);
    st_file *f = st_open(path);
    if (!f) fail_msg("%s", err_msg());
    clip_config from_meta;
    assert_int_equal(clip_config_parse(st_metadata(f, "config"), "config", &from_meta), 0);
    st_close(f);
    assert_same_config(&c, &from_meta);
}

// The convention of clipc's checkpoints: the config JSON under "clipc.config", "format": "pt".
static void test_config_in_safetensors_metadata(void **state) {
    (void)state;
    clip_config c;
    load_named("clip-tiny", &c);
    c.init_logit_bias_set = true;
    c.init_logit_bias = -10;
    char *json = clip_config_to_json(&c);
    st_writer *w = st_writer_init();
    st_writer_set_metadata(w, "format", "pt");
    st_writer_set_metadata(w, "clipc.config", json);
    free(json);
    char path[256];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/clipc-config-%ld.safetensors", tmp, (long)getpid());
    assert_int_equal(st_writer_write(w, path), 0);
    st_writer_free(w);
    st_file *f = st_open(path);
    assert_non_null(f);
    clip_config back;
    assert_int_equal(clip_config_parse(st_metadata(f, "clipc.config"), "clip-tiny", &back), 0);
    assert_string_equal(st_metadata(f, "format"), "pt");
    st_close(f);
    unlink(path);
    assert_same_config(&c, &back);
}

// vision_cfg.patch_dropout is read and written back (training drops patches: docs/training.md).
static void test_patch_dropout(void **state) {
    (void)state;
    clip_config c;
    if (clip_config_parse(WRAP("\"patch_dropout\": 0.5", ""), "x.json", &c)) fail_msg("%s", err_msg());
    assert_true(c.vision.patch_dropout == 0.5);
    assert_round_trips(&c);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIGS_DIR FIXTURES_DIR\n", argv[0]);
        return 2;
    }
    configs_dir = argv[1];
    fixtures_dir = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_shipped_config),
        cmocka_unit_test(test_shipped_values),
        cmocka_unit_test(test_resnet_configs),
        cmocka_unit_test(test_large_configs),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_preprocess_cfg),
        cmocka_unit_test(test_accepted_openclip_keys),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_patch_dropout),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_fixture_config),
        cmocka_unit_test(test_config_in_safetensors_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
