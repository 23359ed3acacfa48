// Colour adjustments of torchvision's ColorJitter on PIL images (image/image.h).
#include <math.h>

#include "image/image.h"

// PIL's Image.blend(degenerate, image, factor) of one byte: float arithmetic, truncated toward
// zero; clipped to 0..255 (only reachable when factor > 1 or < 0).
static uint8_t blend(uint8_t degenerate, uint8_t value, float factor) {
    float v = (float)degenerate + factor * (float)((int)value - (int)degenerate);
    if (v <= 0.0f) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)v;
}

// PIL's convert("L") of one pixel.
static uint8_t gray(const uint8_t *p) {
    return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

void image_adjust_brightness(uint8_t *rgb, size_t n, float factor) {
    for (size_t i = 0; i < 3 * n; i++) rgb[i] = blend(0, rgb[i], factor);
}

void image_adjust_contrast(uint8_t *rgb, size_t n, float factor) {
    if (n == 0) return;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += gray(rgb + 3 * i);
    uint8_t mean = (uint8_t)(int)(sum / (double)n + 0.5);  // ImageStat's mean, int(mean + 0.5)
    for (size_t i = 0; i < 3 * n; i++) rgb[i] = blend(mean, rgb[i], factor);
}

void image_adjust_saturation(uint8_t *rgb, size_t n, float factor) {
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i, g = gray(p);
        for (int c = 0; c < 3; c++) p[c] = blend(g, p[c], factor);
    }
}

static uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

// Pillow's rgb2hsv (Convert.c, following colorsys.py).
static void rgb_to_hsv(const uint8_t *in, uint8_t *out) {
    uint8_t r = in[0], g = in[1], b = in[2];
    uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b), minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
    out[2] = maxc;
    if (minc == maxc) {
        out[0] = out[1] = 0;
        return;
    }
    float cr = (float)(maxc - minc), s = cr / (float)maxc;
    float rc = (float)(maxc - r) / cr, gc = (float)(maxc - g) / cr, bc = (float)(maxc - b) / cr, h;
    if (r == maxc) h = bc - gc;
    else if (g == maxc) h = (float)(2.0 + rc - bc);
    else h = (float)(4.0 + gc - rc);
    h = (float)fmod(h / 6.0 + 1.0, 1.0);
    out[0] = clip8((int)(h * 255.0));
    out[1] = clip8((int)(s * 255.0));
}

// Pillow's hsv2rgb.
static void hsv_to_rgb(const uint8_t *in, uint8_t *out) {
    uint8_t h = in[0], s = in[1], v = in[2];
    if (s == 0) {
        out[0] = out[1] = out[2] = v;
        return;
    }
    int i = (int)floor((float)h * 6.0 / 255.0);
    float f = (float)((float)h * 6.0 / 255.0 - (float)i), fs = (float)((float)s / 255.0);
    uint8_t p = clip8((int)round((float)v * (1.0 - fs))), q = clip8((int)round((float)v * (1.0 - fs * f)));
    uint8_t t = clip8((int)round((float)v * (1.0 - fs * (1.0 - f))));
    const uint8_t table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    for (int c = 0; c < 3; c++) out[c] = table[i % 6][c];
}

void image_adjust_hue(uint8_t *rgb, size_t n, float hue) {
    uint8_t shift = (uint8_t)(int)(hue * 255.0f);  // numpy's uint8(hue * 255): truncated, wrapped
    for (size_t i = 0; i < n; i++) {
        uint8_t hsv[3];
        rgb_to_hsv(rgb + 3 * i, hsv);
        hsv[0] = (uint8_t)(hsv[0] + shift);
        hsv_to_rgb(hsv, rgb + 3 * i);
    }
}
