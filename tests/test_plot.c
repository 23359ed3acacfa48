// Tests the cairo charts (plot/plot.h) and the training-run plots (plot/metrics_plot.h): PNGs
// are read back and checked for their size and for curve colours where the data puts them; bad
// metrics lines are skipped and counted; missing inputs and unwritable outputs are errors naming
// the file, and leave no temporary files behind.
#include <cairo.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "plot/metrics_plot.h"
#include "plot/plot.h"
#include "tests/tmpdir.h"

// Pixels ------------------------------------------------------------------------------------------

typedef struct {
    cairo_surface_t *s;
    int w, h, stride;
    const uint8_t *data;
} image;

static image load_png(const char *path) {
    image im = {cairo_image_surface_create_from_png(path), 0, 0, 0, NULL};
    assert_int_equal(cairo_surface_status(im.s), CAIRO_STATUS_SUCCESS);
    im.w = cairo_image_surface_get_width(im.s);
    im.h = cairo_image_surface_get_height(im.s);
    im.stride = cairo_image_surface_get_stride(im.s);
    im.data = cairo_image_surface_get_data(im.s);
    return im;
}

static void rgb_at(const image *im, int x, int y, int *r, int *g, int *b) {
    uint32_t p;
    memcpy(&p, im->data + (size_t)y * im->stride + 4 * (size_t)x, 4);
    *r = (p >> 16) & 0xff, *g = (p >> 8) & 0xff, *b = p & 0xff;
}

static bool near_color(const image *im, int x, int y, uint32_t rgb) {
    int r, g, b;
    rgb_at(im, x, y, &r, &g, &b);
    return abs(r - (int)(rgb >> 16)) + abs(g - (int)((rgb >> 8) & 0xff)) +
               abs(b - (int)(rgb & 0xff)) <
           60;
}

// Statistics of the pixels of one colour left of x_end: count, the lowest such pixel (largest y) in
// the left and right quarters of the image (legends sit at the top), and the correlation of x and
// y.
typedef struct {
    long n;
    int left_bottom, right_bottom;
    double corr_xy;
} color_stats;

static color_stats stats_of(const image *im, uint32_t rgb, int x_end) {
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    color_stats st = {0, -1, -1, NAN};
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < x_end; x++) {
            if (!near_color(im, x, y, rgb)) continue;
            st.n++, sx += x, sy += y, sxx += (double)x * x, syy += (double)y * y,
                sxy += (double)x * y;
            if (x < im->w / 4) st.left_bottom = y;
            if (x > 3 * im->w / 4) st.right_bottom = y;
        }
    double n = (double)st.n, vx = sxx - sx * sx / n, vy = syy - sy * sy / n;
    if (st.n > 1 && vx > 0 && vy > 0) st.corr_xy = (sxy - sx * sy / n) / sqrt(vx * vy);
    return st;
}

static void expect_png_size(const char *path, int w, int h) {
    image im = load_png(path);
    assert_int_equal(im.w, w);
    assert_int_equal(im.h, h);
    cairo_surface_destroy(im.s);
}

#define BLUE 0x1f77b4u    // palette colour 1: loss, accuracy
#define GREEN 0x2ca02cu   // palette colour 3: learning rate
#define PURPLE 0x9467bdu  // palette colour 5: logit scale
#define YELLOW 0xfde725u  // top of the viridis colour map
#define DARK 0x440154u    // bottom of the viridis colour map

// Training runs -----------------------------------------------------------------------------------

enum { STEPS = 400, EVAL_EVERY = 50 };

// A run whose loss falls and logit scale rises, with optional zero-shot lines and, when bad is
// set, two malformed lines at lines 3 and 7 plus lines that must be ignored quietly.
static void write_run(const char *run_dir, bool zeroshot, bool bad) {
    mkdir(run_dir, 0777);
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int s = 1, line = 1; s <= STEPS; s++, line++) {
        double lr = s < 50 ? 5e-4 * s / 50 : 5e-4 * 0.5 * (1 + cos(M_PI * (s - 50) / (STEPS - 50)));
        double loss = 0.5 + 5 * exp(-s / 80.0) + 0.1 * sin(s * 1.7);
        fprintf(f,
                "{\"type\":\"train\",\"step\":%d,\"epoch\":0,\"samples\":%d,\"loss\":%.6f,"
                "\"lr\":%.8f,\"logit_scale\":%.4f,\"samples_per_s\":250.0,\"data_time\":0.01,"
                "\"batch_time\":0.5}\n",
                s, s * 256, loss, lr, 14.3 + 20.0 * s / STEPS);
        if (bad && line == 2) fprintf(f, "{\"type\":\"train\",\"step\":\n"), line++;
        if (bad && line == 6) fprintf(f, "[1, 2, 3]\n\n"), line += 2;
        if (bad && s == 10)
            fprintf(f, "{\"type\":\"nonfinite\",\"step\":10,\"loss\":null}\n"), line++;
        if (zeroshot && s % EVAL_EVERY == 0) {
            fprintf(f,
                    "{\"type\":\"zeroshot\",\"step\":%d,\"epoch\":0,\"dataset\":\"fashion-mnist\","
                    "\"top1\":%.3f,\"top5\":%.3f}\n",
                    s, 0.1 * s / EVAL_EVERY, 0.05 + 0.1 * s / EVAL_EVERY);
            line++;
        }
    }
    assert_int_equal(fclose(f), 0);
}

static bool report_has_warning(const metrics_plot_report *rep, const char *needle) {
    for (int i = 0; i < rep->n_warnings; i++)
        if (strstr(rep->warnings[i], needle)) return true;
    return false;
}

static void test_run_plots(void **state) {
    (void)state;
    const char *run = tmpdir_path("run");
    write_run(run, true, true);
    metrics_plot_report rep;
    int rc = metrics_plot_run(run, NULL, &rep);
    assert_int_equal(rc, 0);
    assert_int_equal(rep.n_train, STEPS);
    assert_int_equal(rep.n_eval, STEPS / EVAL_EVERY);
    assert_int_equal(rep.n_malformed, 2);
    assert_true(report_has_warning(&rep, "metrics.jsonl:3: invalid JSON"));
    assert_true(report_has_warning(&rep, "metrics.jsonl:7: not a JSON object"));
    assert_int_equal(rep.n_written, 5);
    const char *names[] = {"loss.png", "lr.png", "logit_scale.png", "zeroshot.png", "overview.png"};
    for (int i = 0; i < 5; i++) {
        char want[600];
        snprintf(want, sizeof want, "%s/plots/%s", run, names[i]);
        assert_string_equal(rep.written[i], want);
        if (i < 4) expect_png_size(want, 1000, 600);
        else expect_png_size(want, 1600, 1000);
    }
    metrics_plot_report_free(&rep);
}

static color_stats png_color_stats(const char *run, const char *name, uint32_t rgb) {
    char path[600];
    snprintf(path, sizeof path, "%s/plots/%s", run, name);
    image im = load_png(path);
    color_stats st = stats_of(&im, rgb, im.w);
    cairo_surface_destroy(im.s);
    return st;
}

// The curves are where the data puts them: the falling loss is high on the left and low on the
// right, the rising logit scale the reverse, and each chart shows its own colour.
static void test_run_curves_drawn(void **state) {
    (void)state;
    const char *run = tmpdir_path("run-curves");
    write_run(run, true, false);
    metrics_plot_report rep;
    assert_int_equal(metrics_plot_run(run, NULL, &rep), 0);
    metrics_plot_report_free(&rep);
    color_stats loss = png_color_stats(run, "loss.png", BLUE);
    color_stats scale = png_color_stats(run, "logit_scale.png", PURPLE);
    color_stats acc = png_color_stats(run, "zeroshot.png", BLUE);
    assert_true(loss.n > 500);
    assert_true(loss.left_bottom < loss.right_bottom - 100);
    assert_true(scale.n > 500);
    assert_true(scale.left_bottom > scale.right_bottom + 100);
    assert_true(acc.n > 200);
    assert_true(acc.left_bottom > acc.right_bottom + 100);
    assert_true(png_color_stats(run, "lr.png", GREEN).n > 500);
    assert_int_equal(png_color_stats(run, "loss.png", GREEN).n, 0);
    color_stats all = png_color_stats(run, "overview.png", PURPLE);
    assert_true(all.n > 300);
}

// Without zero-shot lines there is no zeroshot.png, and --out puts the files elsewhere.
static void test_run_without_zeroshot(void **state) {
    (void)state;
    const char *run = tmpdir_path("run-no-eval");
    const char *out = tmpdir_path("elsewhere");
    write_run(run, false, false);
    metrics_plot_report rep;
    assert_int_equal(metrics_plot_run(run, out, &rep), 0);
    assert_int_equal(rep.n_eval, 0);
    assert_int_equal(rep.n_written, 4);
    for (int i = 0; i < rep.n_written; i++) {
        assert_ptr_equal(strstr(rep.written[i], out), rep.written[i]);
        assert_null(strstr(rep.written[i], "zeroshot"));
    }
    metrics_plot_report_free(&rep);
    char path[600];
    snprintf(path, sizeof path, "%s/overview.png", out);
    expect_png_size(path, 1600, 1000);
}

static void test_run_missing_file(void **state) {
    (void)state;
    const char *run = tmpdir_path("no-such-run");
    metrics_plot_report rep;
    err_clear();
    assert_int_equal(metrics_plot_run(run, NULL, &rep), -1);
    assert_non_null(strstr(err_msg(), "no-such-run/metrics.jsonl"));
    assert_non_null(strstr(err_msg(), "No such file"));
    assert_int_equal(rep.n_written, 0);
    metrics_plot_report_free(&rep);
}

static void test_run_only_garbage(void **state) {
    (void)state;
    const char *run = tmpdir_path("garbage-run");
    mkdir(run, 0777);
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 20; i++) fprintf(f, "%s\n", i % 2 ? "not json" : "{\"step\":1}");
    fprintf(f, "{\"type\":\"train\",\"loss\":1}\n{\"type\":\"train\",\"step\":5,\"loss\"");
    fclose(f);
    metrics_plot_report rep;
    err_clear();
    assert_int_equal(metrics_plot_run(run, NULL, &rep), -1);
    assert_non_null(strstr(err_msg(), "metrics.jsonl: no training or evaluation lines"));
    assert_int_equal(rep.n_malformed, 22);
    assert_int_equal(rep.n_warnings, METRICS_PLOT_MAX_WARNINGS);
    assert_true(report_has_warning(&rep, ":2: invalid JSON"));
    assert_true(report_has_warning(&rep, ":1: no \"type\" string"));
    metrics_plot_report_free(&rep);
}

// Output folder that is a file: an error naming it, nothing written.
static void test_run_bad_out_dir(void **state) {
    (void)state;
    const char *run = tmpdir_path("run-bad-out");
    write_run(run, false, false);
    const char *file = tmpdir_path("a-file");
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    metrics_plot_report rep;
    assert_int_equal(metrics_plot_run(run, file, &rep), -1);
    assert_non_null(strstr(err_msg(), "a-file: exists and is not a folder"));
    assert_int_equal(rep.n_written, 0);
    metrics_plot_report_free(&rep);
}

// Charts ------------------------------------------------------------------------------------------

// A diagonal matrix draws bright cells from top left to bottom right on a dark background.
static void test_heatmap(void **state) {
    (void)state;
    enum { N = 10 };
    double m[N * N];
    const char *labels[N] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
    for (int i = 0; i < N * N; i++) m[i] = i % (N + 1) == 0 ? 100 : 0;
    plot_chart *c = plot_chart_init("Confusion matrix", "predicted", "true");
    plot_chart_set_matrix(c, m, N, N, labels, labels, true);
    const char *path = tmpdir_path("heatmap.png");
    assert_int_equal(plot_chart_write_png(c, path, 640, 560), 0);
    plot_chart_free(c);
    image im = load_png(path);
    assert_int_equal(im.w, 640);
    assert_int_equal(im.h, 560);
    // The colour bar, right of the cells, is left out.
    color_stats bright = stats_of(&im, YELLOW, im.w * 4 / 5),
                dark = stats_of(&im, DARK, im.w * 4 / 5);
    cairo_surface_destroy(im.s);
    assert_true(bright.n > 1000);
    assert_true(dark.n > 5 * bright.n);
    assert_true(bright.corr_xy > 0.95);
}

// 100 classes with unlabelled rows, a fixed colour range and a missing value still draw.
static void test_heatmap_dense(void **state) {
    (void)state;
    enum { N = 100 };
    double *m = calloc(N * N, sizeof *m);
    for (int i = 0; i < N; i++) m[i * N + (N - 1 - i)] = 1;  // anti-diagonal
    m[1] = NAN;
    plot_chart *c = plot_chart_init("100 classes", NULL, NULL);
    plot_chart_set_matrix(c, m, N, N, NULL, NULL, true);
    plot_chart_set_range(c, 0, 1);
    const char *path = tmpdir_path("dense.png");
    assert_int_equal(plot_chart_write_png(c, path, 600, 600), 0);
    plot_chart_free(c);
    free(m);
    image im = load_png(path);
    color_stats bright = stats_of(&im, YELLOW, im.w * 4 / 5);
    cairo_surface_destroy(im.s);
    assert_true(bright.n > 200);
    assert_true(bright.corr_xy < -0.95);
}

// Empty, all-NaN, single-point and log-scale charts draw, in one grid; a lone point is visible.
static void test_line_edge_cases(void **state) {
    (void)state;
    double x[] = {1, 2, 3, 4, 5}, nan5[] = {NAN, NAN, NAN, NAN, NAN};
    double logy[] = {1e-3, -1, 0.1, INFINITY, 10};
    plot_chart *empty = plot_chart_init("empty", "x", "y");
    plot_chart *nans = plot_chart_init("nan", "x", "y");
    plot_chart_add_series(nans, "nan", x, nan5, 5, NULL);
    plot_chart_add_series(nans, "nothing", NULL, NULL, 0, NULL);
    plot_chart *single = plot_chart_init("single point", NULL, NULL);
    double one_x = 7, one_y = 3;
    plot_chart_add_series(single, NULL, &one_x, &one_y, 1, &(plot_style){.color = 3});
    plot_chart *log = plot_chart_init("log", "x", "y");
    plot_chart_add_series(log, NULL, x, logy, 5, NULL);
    plot_chart_set_log_y(log, true);
    const plot_chart *all[] = {empty, nans, single, log};
    const char *path = tmpdir_path("edge.png");
    assert_int_equal(plot_grid_write_png(all, 4, 2, path, 800, 600), 0);
    const char *lone = tmpdir_path("lone.png");
    assert_int_equal(plot_chart_write_png(single, lone, 300, 200), 0);
    for (int i = 0; i < 4; i++) plot_chart_free((plot_chart *)all[i]);
    expect_png_size(path, 800, 600);
    image im = load_png(lone);
    color_stats dot = stats_of(&im, GREEN, im.w);
    cairo_surface_destroy(im.s);
    assert_true(dot.n > 10);
}

// A long series is drawn as its envelope: 10^5 points alternating 0 and 1 fill the plotting area,
// except where a run of NaN leaves a gap in the middle.
static void test_long_series(void **state) {
    (void)state;
    enum { N = 100000 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int k = 0; k < N; k++) x[k] = k, y[k] = k > 45000 && k < 55000 ? NAN : k % 2;
    plot_chart *c = plot_chart_init(NULL, NULL, NULL);
    plot_chart_add_series(c, NULL, x, y, N, &(plot_style){.color = 3});
    free(x);
    free(y);
    const char *path = tmpdir_path("long.png");
    assert_int_equal(plot_chart_write_png(c, path, 400, 300), 0);
    plot_chart_free(c);
    image im = load_png(path);
    color_stats filled = stats_of(&im, GREEN, im.w);
    long centre = 0;
    for (int y0 = 0; y0 < im.h; y0++) centre += near_color(&im, im.w / 2 + 10, y0, GREEN);
    cairo_surface_destroy(im.s);
    assert_true(filled.n > im.w * im.h / 2);
    assert_int_equal(centre, 0);
}

static void test_write_errors(void **state) {
    (void)state;
    plot_chart *c = plot_chart_init("t", NULL, NULL);
    double x[] = {0, 1}, y[] = {0, 1};
    plot_chart_add_series(c, NULL, x, y, 2, NULL);
    const char *no_dir = tmpdir_path("missing-dir/out.png");
    assert_int_equal(plot_chart_write_png(c, no_dir, 100, 100), -1);
    assert_non_null(strstr(err_msg(), "missing-dir/out.png: cannot create temporary file"));
    const char *dir = tmpdir_path("a-directory.png");
    mkdir(dir, 0777);
    assert_int_equal(plot_chart_write_png(c, dir, 100, 100), -1);
    assert_non_null(strstr(err_msg(), "a-directory.png: cannot rename the temporary file over it"));
    assert_int_equal(tmpdir_count_leftovers(), 0);
    assert_int_equal(plot_chart_write_png(c, tmpdir_path("zero.png"), 0, 100), -1);
    assert_non_null(strstr(err_msg(), "zero.png: invalid image size 0x100"));
    plot_chart_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_plots),
        cmocka_unit_test(test_run_curves_drawn),
        cmocka_unit_test(test_run_without_zeroshot),
        cmocka_unit_test(test_run_missing_file),
        cmocka_unit_test(test_run_only_garbage),
        cmocka_unit_test(test_run_bad_out_dir),
        cmocka_unit_test(test_heatmap),
        cmocka_unit_test(test_heatmap_dense),
        cmocka_unit_test(test_line_edge_cases),
        cmocka_unit_test(test_long_series),
        cmocka_unit_test(test_write_errors),
    };
    int failed = cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
    plot_free_caches();
    return failed;
}
