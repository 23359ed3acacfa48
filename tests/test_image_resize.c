// Tests the evaluation resize and transform (image/image.h): image_resize_pil against outputs of
// PIL's Image.resize on a fixed 11x7 picture (Pillow 9.4.0, Debian's python3-pil; computed once with
// Image.fromarray(picture).resize((w, h), Image.BICUBIC or Image.BILINEAR)), covering shrinking,
// enlarging, both filters, one side unchanged and the clipping of bicubic overshoot; then
// properties that hold exactly: a region is the same block of the whole result, a constant image
// stays constant, torchvision's resize sizes and centre-crop offsets (halves rounded to even),
// squash, and errors.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "image/image.h"

static const uint8_t pil_bicubic_4x3[36] = {
    96, 89, 21, 139, 85, 74, 110, 85, 105, 111, 89, 52, 113, 86, 80, 112, 85, 132, 131, 85, 118, 116, 85, 93,
    124, 83, 86, 115, 85, 120, 118, 85, 136, 121, 82, 110,
};
static const uint8_t pil_bicubic_13x9[351] = {
    0, 255, 0, 23, 43, 0, 56, 0, 0, 87, 136, 0, 117, 212, 0, 151, 0, 0, 193, 0, 0, 239, 252, 0,
    59, 70, 0, 3, 0, 0, 50, 108, 0, 83, 229, 0, 111, 0, 0, 55, 82, 0, 81, 182, 13, 127, 64, 29,
    166, 31, 43, 202, 123, 58, 207, 179, 75, 67, 0, 106, 101, 75, 122, 69, 179, 136, 72, 86, 163, 116, 20, 104,
    161, 109, 0, 189, 191, 21, 144, 0, 0, 181, 135, 31, 125, 154, 67, 104, 60, 109, 149, 23, 158, 157, 168, 174,
    43, 124, 99, 71, 0, 146, 129, 122, 184, 179, 159, 238, 155, 76, 158, 102, 5, 3, 136, 163, 51, 157, 49, 0,
    200, 0, 48, 70, 154, 108, 5, 165, 139, 52, 33, 172, 90, 6, 199, 136, 228, 54, 170, 73, 62, 163, 0, 115,
    193, 129, 190, 130, 182, 136, 4, 38, 11, 44, 0, 78, 16, 255, 0, 44, 51, 64, 77, 0, 159, 108, 130, 98,
    139, 206, 13, 171, 0, 108, 202, 0, 179, 247, 241, 24, 77, 76, 62, 25, 0, 161, 71, 103, 126, 104, 221, 21,
    132, 0, 105, 82, 49, 0, 108, 207, 79, 157, 76, 208, 211, 12, 161, 166, 108, 93, 25, 213, 188, 61, 0, 80,
    95, 44, 155, 88, 199, 64, 101, 103, 111, 145, 4, 117, 193, 88, 31, 220, 228, 132, 175, 0, 0, 214, 101, 107,
    131, 166, 127, 100, 84, 137, 102, 11, 151, 39, 136, 128, 74, 163, 152, 119, 0, 153, 165, 91, 159, 211, 163, 162,
    172, 103, 96, 89, 0, 41, 128, 124, 159, 151, 82, 0, 192, 1, 134, 89, 129, 81, 38, 160, 74, 87, 61, 125,
    134, 5, 105, 164, 191, 188, 121, 100, 74, 142, 10, 203, 188, 108, 197, 138, 170, 76, 35, 67, 51, 75, 0, 189,
    25, 255, 0, 52, 53, 146, 94, 0, 138, 130, 129, 36, 160, 216, 48, 194, 0, 190, 223, 0, 97, 16, 251, 15,
    9, 80, 148, 48, 0, 163, 84, 99, 68, 126, 231, 60, 153, 0, 212,
};
static const uint8_t pil_bilinear_3x9[81] = {
    61, 95, 0, 141, 81, 0, 75, 95, 0, 122, 95, 32, 123, 81, 97, 121, 95, 79, 134, 82, 69, 113, 86, 137,
    129, 82, 112, 104, 72, 92, 121, 90, 121, 106, 72, 101, 78, 95, 78, 158, 81, 98, 92, 95, 89, 132, 95, 115,
    98, 81, 123, 146, 95, 95, 137, 79, 104, 107, 88, 142, 142, 79, 114, 118, 76, 88, 127, 89, 135, 114, 76, 122,
    95, 95, 91, 125, 81, 102, 87, 95, 113,
};
static const uint8_t pil_bicubic_11x4[132] = {
    46, 131, 0, 83, 117, 12, 113, 7, 23, 150, 131, 45, 187, 117, 56, 107, 7, 61, 144, 131, 82, 49, 117, 94,
    86, 7, 105, 116, 131, 2, 153, 117, 14, 119, 71, 0, 156, 48, 60, 56, 136, 127, 93, 71, 110, 135, 48, 177,
    119, 136, 99, 156, 71, 85, 122, 48, 149, 159, 136, 216, 59, 71, 10, 96, 48, 71, 100, 71, 0, 137, 136, 114,
    126, 48, 184, 163, 71, 84, 57, 136, 145, 100, 48, 130, 147, 71, 120, 103, 136, 91, 140, 48, 162, 129, 71, 20,
    166, 136, 133, 112, 131, 0, 149, 7, 162, 69, 117, 66, 106, 131, 90, 136, 7, 135, 173, 117, 149, 69, 131, 63,
    115, 7, 218, 152, 117, 122, 72, 131, 28, 109, 7, 190,
};

// The picture the tables were computed from: a ramp, a 0/255 pattern (bicubic overshoots and is
// clipped) and a product pattern, one per channel.
static image_rgb reference_picture(void) {
    image_rgb img = {11, 7, xmalloc(11 * 7 * 3)};
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 11; x++) {
            uint8_t *p = img.rgb + 3 * (y * 11 + x);
            p[0] = (uint8_t)((x * 37 + y * 91) % 256);
            p[1] = (x + 2 * y) % 3 == 0 ? 255 : 0;
            p[2] = (uint8_t)((x * y * 29) % 256);
        }
    return img;
}

static uint8_t *resize_whole(const image_rgb *img, int w, int h, image_filter f) {
    uint8_t *out = xmalloc((size_t)w * (size_t)h * 3);
    if (image_resize_pil(img, w, h, f, (image_rect){0, 0, w, h}, out)) fail_msg("%s", err_msg());
    return out;
}

static void assert_same_bytes(const uint8_t *got, const uint8_t *want, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s: byte %zu (pixel %zu, channel %zu) is %d, PIL gives %d", what, i, i / 3, i % 3,
                                        got[i], want[i]);
}

static void test_matches_pil(void **state) {
    (void)state;
    image_rgb img = reference_picture();
    struct {
        const char *name;
        int w, h;
        image_filter f;
        const uint8_t *want;
    } cases[] = {
        {"bicubic 4x3", 4, 3, IMAGE_FILTER_BICUBIC, pil_bicubic_4x3},
        {"bicubic 13x9", 13, 9, IMAGE_FILTER_BICUBIC, pil_bicubic_13x9},
        {"bilinear 3x9", 3, 9, IMAGE_FILTER_BILINEAR, pil_bilinear_3x9},
        {"bicubic 11x4", 11, 4, IMAGE_FILTER_BICUBIC, pil_bicubic_11x4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t *got = resize_whole(&img, cases[i].w, cases[i].h, cases[i].f);
        assert_same_bytes(got, cases[i].want, (size_t)cases[i].w * (size_t)cases[i].h * 3, cases[i].name);
        free(got);
    }
    image_rgb_free(&img);
}

static void test_region_is_block_of_whole(void **state) {
    (void)state;
    image_rgb img = reference_picture();
    image_rect r = {3, 2, 7, 5};
    uint8_t block[7 * 5 * 3];
    assert_int_equal(image_resize_pil(&img, 13, 9, IMAGE_FILTER_BICUBIC, r, block), 0);
    for (int y = 0; y < r.height; y++)
        assert_memory_equal(block + y * r.width * 3, pil_bicubic_13x9 + ((r.top + y) * 13 + r.left) * 3, (size_t)r.width * 3);
    image_rgb_free(&img);
}

static void test_constant_stays_constant(void **state) {
    (void)state;
    image_rgb img = {37, 23, xmalloc(37 * 23 * 3)};
    for (int i = 0; i < 37 * 23; i++) img.rgb[3 * i] = 200, img.rgb[3 * i + 1] = 0, img.rgb[3 * i + 2] = 255;
    const int sizes[][2] = {{5, 3}, {80, 51}, {37, 9}, {1, 1}};
    for (int s = 0; s < 4; s++)
        for (int f = 0; f < 2; f++) {
            uint8_t *out = resize_whole(&img, sizes[s][0], sizes[s][1], f ? IMAGE_FILTER_BILINEAR : IMAGE_FILTER_BICUBIC);
            for (int i = 0; i < sizes[s][0] * sizes[s][1]; i++)
                if (out[3 * i] != 200 || out[3 * i + 1] != 0 || out[3 * i + 2] != 255)
                    fail_msg("%dx%d filter %d: pixel %d is (%d, %d, %d)", sizes[s][0], sizes[s][1], f, i, out[3 * i],
                             out[3 * i + 1], out[3 * i + 2]);
            free(out);
        }
    image_rgb_free(&img);
}

// An image whose shorter side is already S is only cropped; torchvision's CenterCrop offset is
// round(extra / 2) with halves to even: extra 1 -> 0, 3 -> 2, 5 -> 2, 7 -> 4.
static void test_center_crop_offsets(void **state) {
    (void)state;
    const int extra[] = {0, 1, 3, 5, 7}, offset[] = {0, 0, 2, 2, 4};
    image_preprocess p = image_preprocess_openai();
    for (int i = 0; i < 5; i++)
        for (int tall = 0; tall < 2; tall++) {
            int w = tall ? 8 : 8 + extra[i], h = tall ? 8 + extra[i] : 8;
            image_rgb img = {w, h, xmalloc((size_t)w * (size_t)h * 3)};
            for (int k = 0; k < w * h * 3; k++) img.rgb[k] = (uint8_t)(k * 7);
            uint8_t out[8 * 8 * 3];
            assert_int_equal(image_transform_eval(&img, &p, 8, out), 0);
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) {
                    int sx = tall ? x : x + offset[i], sy = tall ? y + offset[i] : y;
                    assert_memory_equal(out + (y * 8 + x) * 3, img.rgb + (sy * w + sx) * 3, 3);
                }
            image_rgb_free(&img);
        }
}

// Shortest side: 64x48 at 24 is resized to int(24 * 64 / 48) = 32 x 24 and cropped at x = 4;
// 50x41 at 24 to int(24 * 50 / 41) = 29 x 24, cropped at round(2.5) = 2. Squash: 24 x 24, no crop.
static void test_resize_sizes(void **state) {
    (void)state;
    const int dims[][5] = {{64, 48, 32, 24, 4}, {50, 41, 29, 24, 2}, {41, 50, 24, 29, 2}};
    for (int i = 0; i < 3; i++) {
        int w = dims[i][0], h = dims[i][1];
        image_rgb img = {w, h, xmalloc((size_t)w * (size_t)h * 3)};
        for (int k = 0; k < w * h * 3; k++) img.rgb[k] = (uint8_t)((k * 13) ^ (k / 7));
        image_preprocess p = image_preprocess_openai();
        uint8_t got[24 * 24 * 3], want[24 * 24 * 3];
        assert_int_equal(image_transform_eval(&img, &p, 24, got), 0);
        bool wide = w > h;
        image_rect crop = {wide ? dims[i][4] : 0, wide ? 0 : dims[i][4], 24, 24};
        assert_int_equal(image_resize_pil(&img, dims[i][2], dims[i][3], IMAGE_FILTER_BICUBIC, crop, want), 0);
        assert_memory_equal(got, want, sizeof got);
        p.resize_mode = IMAGE_RESIZE_SQUASH, p.filter = IMAGE_FILTER_BILINEAR;
        assert_int_equal(image_transform_eval(&img, &p, 24, got), 0);
        assert_int_equal(image_resize_pil(&img, 24, 24, IMAGE_FILTER_BILINEAR, (image_rect){0, 0, 24, 24}, want), 0);
        assert_memory_equal(got, want, sizeof got);
        image_rgb_free(&img);
    }
}

static void test_errors(void **state) {
    (void)state;
    image_rgb img = reference_picture();
    uint8_t out[64 * 3];
    assert_int_equal(image_resize_pil(&img, 8, 8, IMAGE_FILTER_BICUBIC, (image_rect){4, 0, 5, 1}, out), -1);
    assert_non_null(strstr(err_msg(), "cannot take 5x1 at (4, 0)"));
    assert_int_equal(image_resize_pil(&img, 0, 8, IMAGE_FILTER_BICUBIC, (image_rect){0, 0, 1, 1}, out), -1);
    image_preprocess p = image_preprocess_openai();
    const uint8_t junk[] = "not an image at all";
    assert_int_equal(image_decode_eval(junk, sizeof junk, &p, 8, out), -1);
    assert_non_null(strstr(err_msg(), "not a JPEG, PNG or WebP"));
    image_rgb_free(&img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_pil),
        cmocka_unit_test(test_region_is_block_of_whole),
        cmocka_unit_test(test_constant_stays_constant),
        cmocka_unit_test(test_center_crop_offsets),
        cmocka_unit_test(test_resize_sizes),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
