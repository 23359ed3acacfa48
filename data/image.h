// image: decoding of JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp) files into RGB, WebP
// encoding with libwebp's area-averaging rescaler, and the loader's cropped and scaled WebP decode.
//
// Resizing is libwebp's own (WebPRescaler): shrinking averages each output pixel over the exact
// source area it covers (an antialiasing box filter, the quality of PIL's reducing resamplers),
// enlarging interpolates linearly. The loader asks the WebP decoder for the crop and the output size
// directly, so it never holds or converts a full-size RGB image.
#ifndef CLIPC_DATA_IMAGE_H
#define CLIPC_DATA_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height;
    uint8_t *rgb;  // (height, width, 3), malloc'ed
} image_rgb;

typedef struct {
    int left, top, width, height;
} image_rect;

typedef enum {
    IMAGE_FORMAT_UNKNOWN,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_WEBP,
} image_format;

image_format image_sniff(const uint8_t *data, size_t size);

// Decodes a JPEG, PNG or WebP file held in memory. A JPEG is decoded at the smallest DCT scale
// (k/8) whose shorter side is still at least min_short_side (0: full size). Alpha is composited
// onto white, grayscale and CMYK become RGB. Returns 0, or -1 with err_msg() naming the defect.
int image_decode(const uint8_t *data, size_t size, int min_short_side, image_rgb *out);
void image_rgb_free(image_rgb *img);

// The size an image of w x h takes when its shorter side is brought to at most max_short (never
// enlarged), or to exactly max_short when upscale is set, or to at least min_short (0: no minimum).
void image_target_size(int w, int h, int max_short, int min_short, bool upscale, int *out_w, int *out_h);

// Encodes img resized to out_w x out_h as WebP (lossy at quality 0-100, or lossless).
// Returns 0 with *bytes malloc'ed, or -1 with err_msg().
int image_encode_webp(const image_rgb *img, int out_w, int out_h, int quality, bool lossless, uint8_t **bytes,
                      size_t *size);

// Width and height from a WebP header. Returns 0 or -1.
int image_webp_size(const uint8_t *data, size_t size, int *width, int *height);

// Decodes the crop rectangle of a WebP image scaled to out_w x out_h into rgb (out_h, out_w, 3).
// libwebp starts crops on even pixels for YUV-coded images, so the crop may move left/up by one.
int image_webp_decode_region(const uint8_t *data, size_t size, image_rect crop, int out_w, int out_h,
                             uint8_t *rgb);

// The central square of a w x h image: the evaluation crop (resize of the shorter side, then centre crop).
image_rect image_center_square(int w, int h);

// The loader's evaluation transform of a whole JPEG, PNG or WebP file (clipc classify, clipc embed):
// the central square scaled to out_size x out_size into rgb (out_size, out_size, 3). A WebP file
// takes the loader's own path (image_webp_decode_region); JPEG and PNG are decoded, then cropped and
// scaled by the same libwebp rescaler. Returns 0, or -1 with err_msg() naming the defect.
int image_decode_eval(const uint8_t *data, size_t size, int out_size, uint8_t *rgb);

#endif
