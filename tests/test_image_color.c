// Tests the colour adjustments (image/image.h) against torchvision 0.14's functional adjust_* on
// a PIL image (Pillow 9.4, Debian's python3): the tables were computed once by
//   F.adjust_brightness/contrast/saturation/hue(Image.fromarray(picture), factor)
// on a fixed 7x5 picture (numpy RandomState(7), with a gray, a red and a blue pixel in front):
// darkening and brightening past 255, lowering and raising contrast, desaturating and
// oversaturating, hue shifts both ways and hue 0 (PIL's 8-bit HSV round trip, not the identity).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "image/image.h"

static const uint8_t picture[105] = {10, 10, 10, 255, 0, 0, 0, 0, 255, 185, 142, 23, 72, 89, 110, 42, 218, 136, 167, 230, 68, 176, 127, 135, 172, 0, 75, 55, 250, 6, 19, 188, 44, 191, 69, 56, 152, 183, 181, 112, 251, 189, 192, 34, 56, 201, 206, 38, 4, 238, 137, 87, 227, 195, 72, 83, 176, 1, 192, 144, 118, 159, 93, 172, 92, 252, 71, 23, 10, 233, 35, 192, 61, 135, 151, 92, 247, 224, 149, 100, 163, 225, 67, 123, 219, 225, 19, 155, 4, 19, 33, 123, 30, 185, 229, 73, 221, 209, 127, 159, 130, 83, 178, 146, 21};
static const uint8_t pil_brightness_0_6[105] = {6, 6, 6, 153, 0, 0, 0, 0, 153, 111, 85, 13, 43, 53, 66, 25, 130, 81, 100, 138, 40, 105, 76, 81, 103, 0, 45, 33, 150, 3, 11, 112, 26, 114, 41, 33, 91, 109, 108, 67, 150, 113, 115, 20, 33, 120, 123, 22, 2, 142, 82, 52, 136, 117, 43, 49, 105, 0, 115, 86, 70, 95, 55, 103, 55, 151, 42, 13, 6, 139, 21, 115, 36, 81, 90, 55, 148, 134, 89, 60, 97, 135, 40, 73, 131, 135, 11, 93, 2, 11, 19, 73, 18, 111, 137, 43, 132, 125, 76, 95, 78, 49, 106, 87, 12};
static const uint8_t pil_brightness_1_4[105] = {14, 14, 14, 255, 0, 0, 0, 0, 255, 255, 198, 32, 100, 124, 154, 58, 255, 190, 233, 255, 95, 246, 177, 189, 240, 0, 105, 77, 255, 8, 26, 255, 61, 255, 96, 78, 212, 255, 253, 156, 255, 255, 255, 47, 78, 255, 255, 53, 5, 255, 191, 121, 255, 255, 100, 116, 246, 1, 255, 201, 165, 222, 130, 240, 128, 255, 99, 32, 14, 255, 49, 255, 85, 189, 211, 128, 255, 255, 208, 140, 228, 255, 93, 172, 255, 255, 26, 217, 5, 26, 46, 172, 42, 255, 255, 102, 255, 255, 177, 222, 182, 116, 249, 204, 29};
static const uint8_t pil_contrast_0_7[105] = {45, 45, 45, 216, 38, 38, 38, 38, 216, 167, 137, 54, 88, 100, 115, 67, 191, 133, 155, 199, 86, 161, 127, 132, 158, 38, 90, 76, 213, 42, 51, 170, 69, 172, 86, 77, 144, 166, 165, 116, 214, 170, 172, 62, 77, 179, 182, 65, 41, 205, 134, 99, 197, 174, 88, 96, 161, 39, 172, 139, 121, 149, 103, 158, 102, 214, 88, 54, 45, 201, 62, 172, 81, 132, 144, 102, 211, 195, 142, 108, 152, 195, 85, 124, 191, 195, 51, 146, 41, 51, 61, 124, 59, 167, 198, 89, 193, 184, 127, 149, 129, 96, 163, 140, 53};
static const uint8_t pil_contrast_1_5[105] = {0, 0, 0, 255, 0, 0, 0, 0, 255, 213, 149, 0, 44, 69, 101, 0, 255, 140, 186, 255, 38, 200, 126, 138, 194, 0, 48, 18, 255, 0, 0, 218, 2, 222, 39, 20, 164, 210, 207, 104, 255, 219, 224, 0, 20, 237, 245, 0, 0, 255, 141, 66, 255, 228, 44, 60, 200, 0, 224, 152, 113, 174, 75, 194, 74, 255, 42, 0, 0, 255, 0, 224, 27, 138, 162, 74, 255, 255, 159, 86, 180, 255, 36, 120, 255, 255, 0, 168, 0, 0, 0, 120, 0, 213, 255, 45, 255, 249, 126, 174, 131, 60, 203, 155, 0};
static const uint8_t pil_saturation_0_3[105] = {10, 10, 10, 129, 53, 53, 20, 20, 96, 154, 141, 105, 81, 86, 93, 121, 174, 150, 185, 204, 155, 152, 138, 140, 93, 42, 64, 131, 189, 116, 90, 141, 97, 130, 93, 89, 167, 176, 176, 175, 216, 198, 116, 69, 75, 189, 191, 140, 111, 181, 151, 152, 194, 185, 84, 87, 115, 90, 147, 133, 132, 145, 125, 145, 121, 169, 46, 32, 28, 148, 88, 136, 98, 121, 125, 166, 212, 205, 130, 115, 134, 152, 104, 121, 205, 207, 145, 82, 36, 41, 69, 96, 68, 194, 207, 160, 208, 204, 180, 140, 132, 118, 152, 142, 105};
static const uint8_t pil_saturation_1_8[105] = {10, 10, 10, 255, 0, 0, 0, 0, 255, 220, 142, 0, 60, 91, 129, 0, 255, 120, 146, 255, 0, 202, 114, 128, 255, 0, 87, 0, 255, 0, 0, 241, 0, 255, 41, 17, 134, 190, 186, 40, 255, 178, 255, 0, 33, 213, 222, 0, 0, 255, 121, 11, 255, 206, 57, 77, 244, 0, 242, 156, 101, 175, 56, 202, 58, 255, 99, 12, 0, 255, 0, 255, 17, 151, 179, 7, 255, 244, 170, 82, 195, 255, 23, 124, 234, 245, 0, 238, 0, 0, 0, 153, 0, 174, 253, 0, 235, 213, 66, 179, 127, 43, 207, 150, 0};
static const uint8_t pil_hue_0_1[105] = {10, 10, 10, 255, 150, 0, 150, 0, 255, 134, 185, 23, 77, 72, 110, 43, 199, 218, 72, 230, 69, 176, 147, 128, 172, 20, 0, 7, 250, 98, 19, 188, 142, 191, 148, 56, 152, 167, 183, 112, 233, 251, 192, 101, 35, 106, 206, 39, 5, 202, 238, 87, 179, 227, 121, 72, 176, 2, 131, 192, 94, 159, 106, 252, 93, 239, 71, 59, 10, 233, 36, 77, 62, 83, 151, 92, 180, 247, 163, 100, 140, 225, 97, 67, 102, 225, 19, 155, 72, 4, 30, 123, 81, 96, 229, 74, 178, 221, 127, 144, 159, 84, 121, 178, 22};
static const uint8_t pil_hue_m0_23[105] = {10, 10, 10, 168, 0, 255, 0, 255, 162, 185, 23, 122, 72, 110, 78, 191, 218, 43, 230, 72, 69, 150, 128, 176, 32, 0, 172, 250, 110, 7, 188, 150, 19, 158, 56, 191, 166, 183, 152, 227, 251, 112, 112, 35, 192, 206, 39, 94, 191, 238, 5, 173, 227, 87, 72, 176, 126, 123, 192, 2, 159, 109, 94, 93, 231, 252, 63, 10, 71, 36, 68, 233, 78, 151, 62, 172, 247, 92, 100, 137, 163, 108, 67, 225, 225, 19, 87, 82, 4, 155, 123, 85, 30, 229, 74, 85, 221, 127, 171, 159, 84, 139, 178, 22, 110};
static const uint8_t pil_hue_0[105] = {10, 10, 10, 255, 0, 0, 0, 0, 255, 185, 141, 23, 72, 90, 110, 43, 218, 133, 167, 230, 69, 176, 128, 136, 172, 0, 77, 58, 250, 7, 19, 188, 43, 191, 69, 56, 152, 183, 180, 112, 251, 187, 192, 35, 57, 204, 206, 39, 5, 238, 136, 87, 227, 192, 72, 85, 176, 2, 192, 140, 120, 159, 94, 172, 93, 252, 71, 23, 10, 233, 36, 194, 62, 135, 151, 92, 247, 223, 149, 100, 163, 225, 67, 127, 223, 225, 19, 155, 4, 22, 35, 123, 30, 187, 229, 74, 221, 209, 127, 159, 130, 84, 178, 143, 22};

#define N_PIXELS 35

static void check(void (*fn)(uint8_t *, size_t, float), float factor, const uint8_t *expected) {
    uint8_t rgb[3 * N_PIXELS];
    memcpy(rgb, picture, sizeof rgb);
    fn(rgb, N_PIXELS, factor);
    for (int i = 0; i < 3 * N_PIXELS; i++)
        if (rgb[i] != expected[i]) fail_msg("byte %d (pixel %d): %d, PIL gives %d", i, i / 3, rgb[i], expected[i]);
}

static void test_brightness(void **state) {
    (void)state;
    check(image_adjust_brightness, 0.6f, pil_brightness_0_6);
    check(image_adjust_brightness, 1.4f, pil_brightness_1_4);
}

static void test_contrast(void **state) {
    (void)state;
    check(image_adjust_contrast, 0.7f, pil_contrast_0_7);
    check(image_adjust_contrast, 1.5f, pil_contrast_1_5);
}

static void test_saturation(void **state) {
    (void)state;
    check(image_adjust_saturation, 0.3f, pil_saturation_0_3);
    check(image_adjust_saturation, 1.8f, pil_saturation_1_8);
}

static void test_hue(void **state) {
    (void)state;
    check(image_adjust_hue, 0.1f, pil_hue_0_1);
    check(image_adjust_hue, -0.23f, pil_hue_m0_23);
    check(image_adjust_hue, 0.0f, pil_hue_0);
}

// Factor 1 leaves brightness, contrast and saturation unchanged; a gray image has no saturation to change.
static void test_identities(void **state) {
    (void)state;
    check(image_adjust_brightness, 1.0f, picture);
    check(image_adjust_contrast, 1.0f, picture);
    check(image_adjust_saturation, 1.0f, picture);
    uint8_t gray[6] = {40, 40, 40, 200, 200, 200};
    image_adjust_saturation(gray, 2, 1.7f);
    image_adjust_hue(gray, 2, 0.3f);
    assert_int_equal(gray[0], 40);
    assert_int_equal(gray[5], 200);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_brightness), cmocka_unit_test(test_contrast), cmocka_unit_test(test_saturation),
        cmocka_unit_test(test_hue), cmocka_unit_test(test_identities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
