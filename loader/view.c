// The random view of a training sample and OpenCLIP's --aug-cfg (loader/loader.h).
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"
#include "common/rng.h"
#include "loader/loader.h"

static int round_int(double x) { return (int)floor(x + 0.5); }

// torchvision's RandomResizedCrop.get_params, with the loader's generator.
static image_rect random_resized_crop(const loader_config *c, int w, int h, rng *r) {
    double area = (double)w * h, log_lo = log(c->ratio_min), log_hi = log(c->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (c->scale_min + (c->scale_max - c->scale_min) * rng_uniform(r));
        double aspect = exp(log_lo + (log_hi - log_lo) * rng_uniform(r));
        int cw = round_int(sqrt(target * aspect)), ch = round_int(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            int top = (int)rng_below(r, (uint64_t)(h - ch + 1));
            int left = (int)rng_below(r, (uint64_t)(w - cw + 1));
            return (image_rect){left, top, cw, ch};
        }
    }
    double in_ratio = (double)w / h;
    int cw = w, ch = h;
    if (in_ratio < c->ratio_min) ch = round_int(w / c->ratio_min);
    else if (in_ratio > c->ratio_max) cw = round_int(h * c->ratio_max);
    return (image_rect){(w - cw) / 2, (h - ch) / 2, cw, ch};
}

void loader_view_draw(const loader_config *c, int w, int h, uint64_t key, loader_view *out) {
    rng r = {key};
    out->crop = random_resized_crop(c, w, h, &r);
    bool any = false;
    for (int i = 0; i < 4; i++) out->order[i] = (uint8_t)i, out->jitter[i] = NAN, any = any || c->color_jitter[i] > 0;
    if (!any) return;
    for (int i = 3; i > 0; i--) {  // a uniform permutation (Fisher-Yates)
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        uint8_t t = out->order[i];
        out->order[i] = out->order[j], out->order[j] = t;
    }
    for (int i = 0; i < 4; i++) {
        float x = c->color_jitter[i];
        if (!(x > 0)) continue;
        double lo = i == 3 ? -x : fmax(0.0, 1.0 - x), hi = i == 3 ? x : 1.0 + x;
        out->jitter[i] = (float)(lo + (hi - lo) * rng_uniform(&r));
    }
}

int loader_view_apply(const loader_view *v, const uint8_t *webp, size_t webp_size, int size, uint8_t *rgb) {
    if (image_webp_decode_region(webp, webp_size, v->crop, size, size, rgb) != 0) return -1;
    size_t n = (size_t)size * (size_t)size;
    for (int k = 0; k < 4; k++) {
        int i = v->order[k];
        float f = v->jitter[i];
        if (isnan(f)) continue;
        if (i == 0) image_adjust_brightness(rgb, n, f);
        else if (i == 1) image_adjust_contrast(rgb, n, f);
        else if (i == 2) image_adjust_saturation(rgb, n, f);
        else image_adjust_hue(rgb, n, f);
    }
    return 0;
}

// ---- --aug-cfg -------------------------------------------------------------------------------

// A Python literal number or tuple/list of numbers: "0.4", "(0.08,1.0)", "[0.5, 1]". Returns the
// count (at most cap), or -1.
static int parse_numbers(const char *text, double *out, int cap) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    char close = *p == '(' ? ')' : *p == '[' ? ']' : 0;
    if (close) p++;
    int n = 0;
    for (;;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || n == cap || !isfinite(x)) return -1;
        out[n++] = x;
        for (p = end; isspace((unsigned char)*p); p++) {}
        if (*p != ',') break;
        p++;
        while (isspace((unsigned char)*p)) p++;
        if (close && *p == close) break;  // a trailing comma
    }
    if (close && *p++ != close) return -1;
    while (isspace((unsigned char)*p)) p++;
    return *p ? -1 : n;
}

static int set_range(const char *key, const char *value, float *lo, float *hi) {
    double x[2];
    if (parse_numbers(value, x, 2) != 2 || !(x[0] > 0 && x[0] <= x[1]))
        return err_set("--aug-cfg %s=%s: expected a range (lo, hi) with 0 < lo <= hi", key, value);
    *lo = (float)x[0], *hi = (float)x[1];
    return 0;
}

static int set_jitter(const char *value, float *jitter) {
    double x[4] = {0};
    int n = parse_numbers(value, x, 4);
    if (n == 1) x[1] = x[2] = x[0];  // timm: one number is brightness, contrast and saturation
    if (n != 1 && n != 3 && n != 4)
        return err_set("--aug-cfg color_jitter=%s: expected a number or a 3- or 4-tuple (brightness, contrast, "
                       "saturation[, hue])", value);
    for (int i = 0; i < 4; i++)
        if (!(x[i] >= 0) || (i == 3 && x[i] > 0.5))
            return err_set("--aug-cfg color_jitter=%s: values must be >= 0 (hue <= 0.5)", value);
    for (int i = 0; i < 4; i++) jitter[i] = (float)x[i];
    return 0;
}

static int apply_key(loader_config *c, const char *key, const char *value) {
    static const char *const known[] = {"scale", "ratio", "color_jitter", "interpolation", "re_prob", "re_count", "use_timm"};
    if (!strcmp(key, "scale")) return set_range(key, value, &c->scale_min, &c->scale_max);
    if (!strcmp(key, "ratio")) return set_range(key, value, &c->ratio_min, &c->ratio_max);
    if (!strcmp(key, "color_jitter")) return set_jitter(value, c->color_jitter);
    for (int i = 3; i < 7; i++)
        if (!strcmp(key, known[i]))
            return err_set("--aug-cfg %s: a timm transform option (OpenCLIP applies it only through timm); clipc "
                           "supports scale, ratio and color_jitter", key);
    const char *near = args_nearest(key, known, 7);
    return err_set("--aug-cfg: unknown key '%s'%s%s%s (OpenCLIP v2.20.0's AugmentationCfg: scale, ratio, color_jitter, "
                   "interpolation, re_prob, re_count, use_timm)", key, near ? " (did you mean '" : "", near ? near : "",
                   near ? "'?)" : "");
}

// The end of the value starting at p: the next space outside brackets.
static const char *value_end(const char *p) {
    int depth = 0;
    for (; *p && (depth > 0 || !isspace((unsigned char)*p)); p++) depth += (*p == '(' || *p == '[') - (*p == ')' || *p == ']');
    return p;
}

int loader_aug_cfg_parse(loader_config *c, const char *kwargs) {
    for (const char *p = kwargs;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) return 0;
        const char *eq = strchr(p, '='), *end = eq ? value_end(eq + 1) : NULL;
        const char *space = p + strcspn(p, " \t\n");
        if (!eq || eq > space) return err_set("--aug-cfg: '%.*s' is not key=value", (int)(space - p), p);
        char key[64], value[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - p), p);
        snprintf(value, sizeof value, "%.*s", (int)(end - eq - 1), eq + 1);
        if (apply_key(c, key, value) != 0) return -1;
        p = end;
    }
}
