#include "data/image.h"

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

image_rect image_center_square(int w, int h) {
    int side = w < h ? w : h;
    return (image_rect){(w - side) / 2, (h - side) / 2, side, side};
}

// Crops img to the rectangle and scales it with libwebp's rescaler (WebPPictureRescale).
static int crop_and_scale(const image_rgb *img, image_rect crop, int out_size, uint8_t *rgb) {
    WebPPicture pic;
    int rc = picture_import(&pic, img);
    if (rc == 0 && !WebPPictureCrop(&pic, crop.left, crop.top, crop.width, crop.height))
        rc = err_set("cannot crop %dx%d", img->width, img->height);
    if (rc == 0 && !WebPPictureRescale(&pic, out_size, out_size))
        rc = err_set("cannot resize %dx%d to %dx%d", crop.width, crop.height, out_size, out_size);
    for (int y = 0; rc == 0 && y < out_size; y++)
        for (int x = 0; x < out_size; x++) {
            uint32_t argb = pic.argb[(size_t)y * (size_t)pic.argb_stride + (size_t)x];
            uint8_t *px = rgb + 3 * ((size_t)y * (size_t)out_size + (size_t)x);
            px[0] = (uint8_t)(argb >> 16), px[1] = (uint8_t)(argb >> 8), px[2] = (uint8_t)argb;
        }
    WebPPictureFree(&pic);
    return rc;
}

int image_decode_eval(const uint8_t *data, size_t size, int out_size, uint8_t *rgb) {
    int w = 0, h = 0;
    if (image_sniff(data, size) == IMAGE_FORMAT_WEBP) {
        if (image_webp_size(data, size, &w, &h)) return -1;
        return image_webp_decode_region(data, size, image_center_square(w, h), out_size, out_size, rgb);
    }
    image_rgb img;
    if (image_decode(data, size, out_size, &img)) return -1;
    int rc = crop_and_scale(&img, image_center_square(img.width, img.height), out_size, rgb);
    image_rgb_free(&img);
    return rc;
}
