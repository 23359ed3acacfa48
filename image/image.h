// image: decoding of JPEG (libjpeg-turbo), PNG (libpng) and WebP (libwebp) files into RGB, WebP
// encoding with libwebp's area-averaging rescaler, the training loader's cropped and scaled WebP
// decode, and OpenCLIP's evaluation transform (PIL's resize, then torchvision's centre crop).
//
// Two resizers, for two purposes:
// - libwebp's own (WebPRescaler), for storing shards and for training's random resized crops:
//   shrinking averages each output pixel over the exact source area it covers (an antialiasing box
//   filter), enlarging interpolates linearly. The loader asks the WebP decoder for the crop and the
//   output size directly, so it never holds a full-size RGB image.
// - PIL's (image_resize_pil), for evaluation: Pillow's separable convolution (Resample.c), the
//   filter's support widened by the downscale factor (antialiasing), bicubic a = -0.5 or bilinear,
//   coefficients in 22-bit fixed point, each pass rounded and clipped to 8 bits, horizontal pass
//   first. It gives PIL's Image.resize(size, BICUBIC) exactly (Pillow 9.4, reducing_gap None).
#ifndef CLIPC_IMAGE_IMAGE_H
#define CLIPC_IMAGE_IMAGE_H

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

// The evaluation transform of a model (OpenCLIP's PreprocessCfg: mean, std, interpolation, resize_mode).
typedef enum {
    IMAGE_FILTER_BICUBIC,   // PIL's BICUBIC (a = -0.5, support 2)
    IMAGE_FILTER_BILINEAR,  // PIL's BILINEAR (triangle, support 1)
} image_filter;

typedef enum {
    IMAGE_RESIZE_SHORTEST,  // shorter side to S (the longer in proportion), then centre crop S x S
    IMAGE_RESIZE_SQUASH,    // straight to S x S, aspect ratio not kept
} image_resize_mode;

typedef struct {
    float mean[3], std[3];  // per channel, on values in [0, 1]: (x / 255 - mean) / std
    image_filter filter;
    image_resize_mode resize_mode;
} image_preprocess;

// OpenAI's CLIP values (OpenCLIP's OPENAI_DATASET_MEAN / _STD), bicubic, shortest: OpenCLIP's default.
static inline image_preprocess image_preprocess_openai(void) {
    return (image_preprocess){.mean = {0.48145466f, 0.4578275f, 0.40821073f},
                              .std = {0.26862954f, 0.26130258f, 0.27577711f},
                              .filter = IMAGE_FILTER_BICUBIC,
                              .resize_mode = IMAGE_RESIZE_SHORTEST};
}

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

// PIL's img.resize((out_w, out_h), filter), of which only the rectangle `region` of the result is
// computed, into rgb (region.height, region.width, 3). A side whose size does not change is not
// resampled (as in PIL). Returns 0, or -1 with err_msg() for an empty size or a region outside.
int image_resize_pil(const image_rgb *img, int out_w, int out_h, image_filter filter, image_rect region,
                     uint8_t *rgb);

// OpenCLIP's evaluation transform, up to the normalization, into rgb (size, size, 3): for
// IMAGE_RESIZE_SHORTEST torchvision's Resize(size) (the shorter side to size, the longer to
// int(size * long / short)) then CenterCrop(size) (offsets round((extra) / 2), halves to even);
// for IMAGE_RESIZE_SQUASH Resize((size, size)).
int image_transform_eval(const image_rgb *img, const image_preprocess *p, int size, uint8_t *rgb);

// image_transform_eval of a JPEG, PNG or WebP file decoded at full size (the evaluation loader,
// clipc classify, clipc embed). Returns 0, or -1 with err_msg() naming the defect.
int image_decode_eval(const uint8_t *data, size_t size, const image_preprocess *p, int out_size, uint8_t *rgb);

// ---- colour (torchvision's ColorJitter on PIL images: PIL's ImageEnhance and HSV) ----------------
// In place on n RGB pixels (n * 3 bytes), as torchvision 0.14's functional adjust_* on a PIL image
// (Pillow 9.4): brightness, contrast and saturation blend with a degenerate image as PIL's
// Image.blend does (float arithmetic, truncated, clipped when the factor is above 1): with black,
// with the mean gray level (PIL's L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, its mean
// rounded), with the image's own gray levels. Hue converts to PIL's 8-bit HSV, adds
// uint8(hue * 255) to H (wrapping), and converts back; hue in [-0.5, 0.5].
void image_adjust_brightness(uint8_t *rgb, size_t n, float factor);
void image_adjust_contrast(uint8_t *rgb, size_t n, float factor);
void image_adjust_saturation(uint8_t *rgb, size_t n, float factor);
void image_adjust_hue(uint8_t *rgb, size_t n, float hue);

#endif
