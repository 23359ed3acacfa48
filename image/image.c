#include "image/image.h"

// jpeglib.h needs stdio.h, jerror.h needs jpeglib.h
#include <stdio.h>
#include <jpeglib.h>
#include <jerror.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include "common/error.h"

#define IMAGE_MAX_PIXELS (1 << 28)  // refuse larger images instead of allocating gigabytes
#define WEBP_MAX_SIDE 16383

image_format image_sniff(const uint8_t *d, size_t n) {
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return IMAGE_FORMAT_JPEG;
    if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) return IMAGE_FORMAT_PNG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return IMAGE_FORMAT_WEBP;
    return IMAGE_FORMAT_UNKNOWN;
}

void image_rgb_free(image_rgb *img) {
    free(img->rgb);
    img->rgb = NULL;
}

static int alloc_rgb(image_rgb *out, int w, int h) {
    if (w <= 0 || h <= 0 || (int64_t)w * h > IMAGE_MAX_PIXELS) return err_set("image of %dx%d is empty or too large", w, h);
    out->width = w;
    out->height = h;
    out->rgb = xmalloc((size_t)w * (size_t)h * 3);
    return 0;
}

// ---- JPEG ------------------------------------------------------------------------------------

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf escape;
    bool truncated;
} jpeg_error;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_error *e = (jpeg_error *)cinfo->err;
    char msg[JMSG_LENGTH_MAX];
    e->base.format_message(cinfo, msg);
    err_set("corrupt JPEG: %s", msg);
    longjmp(e->escape, 1);
}

// Warnings are not printed; running out of data is an error (as PIL treats truncated files).
static void jpeg_warning(j_common_ptr cinfo, int level) {
    jpeg_error *e = (jpeg_error *)cinfo->err;
    if (level < 0 && e->base.msg_code == JWRN_JPEG_EOF) e->truncated = true;
}

// Adobe CMYK JPEGs store inverted ink values.
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int w) {
    for (int x = 0; x < w; x++, cmyk += 4, rgb += 3)
        for (int c = 0; c < 3; c++) rgb[c] = (uint8_t)((cmyk[c] * cmyk[3] + 127) / 255);
}

static void jpeg_pick_scale(struct jpeg_decompress_struct *c, int min_short_side) {
    unsigned short_side = c->image_width < c->image_height ? c->image_width : c->image_height;
    c->scale_denom = 8;
    c->scale_num = 8;
    if (min_short_side <= 0) return;
    for (unsigned k = 1; k < 8; k++)
        if ((short_side * k + 7) / 8 >= (unsigned)min_short_side) {
            c->scale_num = k;
            return;
        }
}

static int jpeg_read_rows(struct jpeg_decompress_struct *c, image_rgb *out) {
    bool cmyk = c->out_color_space == JCS_CMYK;
    uint8_t *row = cmyk ? (*c->mem->alloc_sarray)((j_common_ptr)c, JPOOL_IMAGE, c->output_width * 4, 1)[0] : NULL;
    while (c->output_scanline < c->output_height) {
        uint8_t *dst = out->rgb + (size_t)c->output_scanline * (size_t)out->width * 3;
        JSAMPROW rows[1] = {cmyk ? row : dst};
        jpeg_read_scanlines(c, rows, 1);
        if (cmyk) cmyk_to_rgb(row, dst, out->width);
    }
    return 0;
}

static int decode_jpeg(const uint8_t *data, size_t size, int min_short_side, image_rgb *out) {
    struct jpeg_decompress_struct c;
    jpeg_error e;
    c.err = jpeg_std_error(&e.base);
    e.base.error_exit = (void (*)(j_common_ptr))jpeg_fail;
    e.base.emit_message = jpeg_warning;
    e.truncated = false;
    out->rgb = NULL;
    if (setjmp(e.escape)) {
        jpeg_destroy_decompress(&c);
        image_rgb_free(out);
        return -1;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, data, (unsigned long)size);
    jpeg_read_header(&c, TRUE);
    bool cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_pick_scale(&c, min_short_side);
    jpeg_start_decompress(&c);
    if (alloc_rgb(out, (int)c.output_width, (int)c.output_height)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    jpeg_read_rows(&c, out);
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    if (e.truncated) {
        image_rgb_free(out);
        return err_set("truncated JPEG");
    }
    return 0;
}

// ---- PNG and WebP input ----------------------------------------------------------------------

static int decode_png(const uint8_t *data, size_t size, image_rgb *out) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, data, size)) return err_set("corrupt PNG: %s", img.message);
    img.format = PNG_FORMAT_RGB;
    if (alloc_rgb(out, (int)img.width, (int)img.height)) {
        png_image_free(&img);
        return -1;
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&img, &white, out->rgb, 0, NULL)) {
        err_set("corrupt PNG: %s", img.message);
        png_image_free(&img);
        image_rgb_free(out);
        return -1;
    }
    return 0;
}

static int decode_webp(const uint8_t *data, size_t size, image_rgb *out) {
    int w = 0, h = 0;
    if (image_webp_size(data, size, &w, &h) || alloc_rgb(out, w, h)) return -1;
    image_rect all = {0, 0, w, h};
    if (image_webp_decode_region(data, size, all, w, h, out->rgb)) {
        image_rgb_free(out);
        return -1;
    }
    return 0;
}

int image_decode(const uint8_t *data, size_t size, int min_short_side, image_rgb *out) {
    out->rgb = NULL;
    switch (image_sniff(data, size)) {
    case IMAGE_FORMAT_JPEG: return decode_jpeg(data, size, min_short_side, out);
    case IMAGE_FORMAT_PNG: return decode_png(data, size, out);
    case IMAGE_FORMAT_WEBP: return decode_webp(data, size, out);
    default: return err_set("not a JPEG, PNG or WebP file");
    }
}

// ---- sizes and WebP output -------------------------------------------------------------------

void image_target_size(int w, int h, int max_short, int min_short, bool upscale, int *out_w, int *out_h) {
    int short_side = w < h ? w : h;
    double scale = 1.0;
    if (max_short > 0 && (short_side > max_short || upscale)) scale = (double)max_short / short_side;
    if (min_short > 0 && short_side * scale < min_short) scale = (double)min_short / short_side;
    *out_w = w, *out_h = h;
    if (scale == 1.0) return;
    *out_w = (int)fmax(1.0, floor(w * scale + 0.5));
    *out_h = (int)fmax(1.0, floor(h * scale + 0.5));
}

static int encode_picture(WebPPicture *pic, int quality, bool lossless, uint8_t **bytes, size_t *size) {
    WebPConfig config;
    if (!WebPConfigPreset(&config, WEBP_PRESET_PHOTO, (float)quality)) return err_set("libwebp version mismatch");
    config.lossless = lossless;
    if (lossless) config.quality = 70;  // effort: libwebp's default for lossless
    WebPMemoryWriter writer;
    WebPMemoryWriterInit(&writer);
    pic->writer = WebPMemoryWrite;
    pic->custom_ptr = &writer;
    if (!WebPEncode(&config, pic)) {
        WebPMemoryWriterClear(&writer);
        return err_set("WebP encoding failed (libwebp error %d)", pic->error_code);
    }
    *bytes = writer.mem;
    *size = writer.size;
    return 0;
}

// An ARGB picture of img (freed with WebPPictureFree, also after a failure).
static int picture_import(WebPPicture *pic, const image_rgb *img) {
    if (!WebPPictureInit(pic)) return err_set("libwebp version mismatch");
    pic->use_argb = 1;
    pic->width = img->width;
    pic->height = img->height;
    if (!WebPPictureImportRGB(pic, img->rgb, img->width * 3)) return err_set("out of memory importing a picture");
    return 0;
}

int image_encode_webp(const image_rgb *img, int out_w, int out_h, int quality, bool lossless, uint8_t **bytes,
                      size_t *size) {
    if (out_w > WEBP_MAX_SIDE || out_h > WEBP_MAX_SIDE)
        return err_set("%dx%d is larger than WebP allows (%d per side)", out_w, out_h, WEBP_MAX_SIDE);
    WebPPicture pic;
    int rc = picture_import(&pic, img);
    if (rc == 0 && (out_w != img->width || out_h != img->height) && !WebPPictureRescale(&pic, out_w, out_h))
        rc = err_set("cannot resize %dx%d to %dx%d", img->width, img->height, out_w, out_h);
    if (rc == 0) rc = encode_picture(&pic, quality, lossless, bytes, size);
    WebPPictureFree(&pic);
    return rc;
}

// ---- loader decode ---------------------------------------------------------------------------

int image_webp_size(const uint8_t *data, size_t size, int *width, int *height) {
    if (!WebPGetInfo(data, size, width, height)) return err_set("corrupt WebP header");
    return 0;
}

int image_webp_decode_region(const uint8_t *data, size_t size, image_rect crop, int out_w, int out_h,
                             uint8_t *rgb) {
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) return err_set("libwebp version mismatch");
    config.options.use_cropping = 1;
    config.options.crop_left = crop.left;
    config.options.crop_top = crop.top;
    config.options.crop_width = crop.width;
    config.options.crop_height = crop.height;
    config.options.use_scaling = out_w != crop.width || out_h != crop.height;
    config.options.scaled_width = out_w;
    config.options.scaled_height = out_h;
    config.output.colorspace = MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = rgb;
    config.output.u.RGBA.stride = out_w * 3;
    config.output.u.RGBA.size = (size_t)out_w * (size_t)out_h * 3;
    VP8StatusCode st = WebPDecode(data, size, &config);
    WebPFreeDecBuffer(&config.output);
    if (st != VP8_STATUS_OK) return err_set("corrupt WebP image (libwebp status %d)", (int)st);
    return 0;
}

// ---- PIL's resize (evaluation) ----------------------------------------------------------------

#define PIL_PRECISION_BITS 22  // Pillow's PRECISION_BITS (32 - 8 - 2)

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

// The coefficients of outputs first..first+n of a pass from in_size to out_size.
typedef struct {
    int ksize;
    int *start, *count;  // (n) the input range of each output
    int32_t *k;          // (n, ksize) fixed point, PIL_PRECISION_BITS
} pil_coeffs;

// Pillow's precompute_coeffs and normalize_coeffs_8bpc, with the same floating-point steps.
static void pil_coeffs_init(pil_coeffs *c, int in_size, int out_size, image_filter f, int first, int n) {
    double (*filter)(double) = f == IMAGE_FILTER_BILINEAR ? filter_bilinear : filter_bicubic;
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = (f == IMAGE_FILTER_BILINEAR ? 1.0 : 2.0) * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->start = xmalloc((size_t)n * sizeof(int));
    c->count = xmalloc((size_t)n * sizeof(int));
    c->k = xcalloc((size_t)n * (size_t)c->ksize, sizeof(int32_t));
    double *w = xmalloc((size_t)c->ksize * sizeof(double));
    for (int i = 0; i < n; i++) {
        double center = (first + i + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) ww += w[x] = filter((x + xmin - center + 0.5) * ss);
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            c->k[(size_t)i * (size_t)c->ksize + (size_t)x] =
                (int32_t)(v < 0 ? -0.5 + v * (1 << PIL_PRECISION_BITS) : 0.5 + v * (1 << PIL_PRECISION_BITS));
        }
        c->start[i] = xmin;
        c->count[i] = xmax;
    }
    free(w);
}

static void pil_coeffs_free(pil_coeffs *c) {
    free(c->start);
    free(c->count);
    free(c->k);
}

// One output value: the weighted sum of n inputs `stride` bytes apart, rounded and clipped to 8 bits.
static uint8_t pil_convolve(const uint8_t *in, size_t stride, const int32_t *k, int n) {
    int64_t ss = 1 << (PIL_PRECISION_BITS - 1);
    for (int i = 0; i < n; i++) ss += (int64_t)in[(size_t)i * stride] * k[i];
    if (ss >= (int64_t)256 << PIL_PRECISION_BITS) return 255;
    if (ss <= 0) return 0;
    return (uint8_t)(ss >> PIL_PRECISION_BITS);
}

// The horizontal pass over input rows y0..y1 into tmp (y1 - y0, r.width, 3); a copy of the region's
// columns when the width does not change.
static void pil_pass_horizontal(const image_rgb *img, int out_w, image_filter f, image_rect r, int y0, int y1,
                                uint8_t *tmp) {
    pil_coeffs c = {0};
    bool resample = out_w != img->width;
    if (resample) pil_coeffs_init(&c, img->width, out_w, f, r.left, r.width);
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = img->rgb + (size_t)y * (size_t)img->width * 3;
        uint8_t *dst = tmp + (size_t)(y - y0) * (size_t)r.width * 3;
        for (int x = 0; x < r.width; x++)
            for (int ch = 0; ch < 3; ch++)
                dst[3 * x + ch] = resample ? pil_convolve(row + 3 * (size_t)c.start[x] + ch, 3,
                                                          c.k + (size_t)x * (size_t)c.ksize, c.count[x])
                                           : row[3 * (size_t)(r.left + x) + ch];
    }
    if (resample) pil_coeffs_free(&c);
}

int image_resize_pil(const image_rgb *img, int out_w, int out_h, image_filter f, image_rect r, uint8_t *rgb) {
    if (out_w < 1 || out_h < 1 || r.width < 1 || r.height < 1 || r.left < 0 || r.top < 0 ||
        r.left + r.width > out_w || r.top + r.height > out_h)
        return err_set("cannot take %dx%d at (%d, %d) from %dx%d resized to %dx%d", r.width, r.height, r.left, r.top,
                       img->width, img->height, out_w, out_h);
    pil_coeffs c = {0};
    bool resample = out_h != img->height;
    int y0 = r.top, y1 = r.top + r.height;  // the input rows the vertical pass reads
    if (resample) {
        pil_coeffs_init(&c, img->height, out_h, f, r.top, r.height);
        y0 = c.start[0];
        y1 = c.start[r.height - 1] + c.count[r.height - 1];
    }
    size_t row = (size_t)r.width * 3;
    uint8_t *tmp = xmalloc((size_t)(y1 - y0) * row);
    pil_pass_horizontal(img, out_w, f, r, y0, y1, tmp);
    for (int y = 0; y < r.height; y++)
        for (size_t x = 0; x < row; x++)
            rgb[(size_t)y * row + x] = resample ? pil_convolve(tmp + (size_t)(c.start[y] - y0) * row + x, row,
                                                                c.k + (size_t)y * (size_t)c.ksize, c.count[y])
                                                : tmp[(size_t)y * row + x];
    if (resample) pil_coeffs_free(&c);
    free(tmp);
    return 0;
}

// Python's round(d / 2.0) for d >= 0: halves go to the even neighbour (torchvision's CenterCrop).
static int half_round_even(int d) {
    int m = d / 2;
    return d % 2 == 0 || m % 2 == 0 ? m : m + 1;
}

int image_transform_eval(const image_rgb *img, const image_preprocess *p, int size, uint8_t *rgb) {
    int w = img->width, h = img->height, rw = size, rh = size;
    image_rect crop = {0, 0, size, size};
    if (p->resize_mode == IMAGE_RESIZE_SHORTEST) {
        if (w <= h) rh = (int)((double)size * h / w);
        else rw = (int)((double)size * w / h);
        crop.left = half_round_even(rw - size);
        crop.top = half_round_even(rh - size);
    }
    return image_resize_pil(img, rw, rh, p->filter, crop, rgb);
}

int image_decode_eval(const uint8_t *data, size_t size, const image_preprocess *p, int out_size, uint8_t *rgb) {
    image_rgb img;
    if (image_decode(data, size, 0, &img)) return -1;
    int rc = image_transform_eval(&img, p, out_size, rgb);
    image_rgb_free(&img);
    return rc;
}
