#include "plot/plot.h"

#include <cairo.h>
#include <errno.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"

#define PLOT_MAX_SIDE 16384
#define MAX_TICKS 64
#define FONT_FACE "DejaVu Sans"

typedef struct {
    char *name;   // NULL: no legend entry
    double *x;    // (n)
    double *y;    // (n)
    int n;
    plot_style style;  // color resolved (>= 1)
} series;

struct plot_chart {
    char *title, *x_label, *y_label;
    series *series;
    int n_series;
    bool log_y;
    bool fixed_range, fixed_x;
    double range_lo, range_hi;
    double x_lo, x_hi;
    double *matrix;  // (rows, cols) when the chart is a heatmap, else NULL
    int rows, cols;
    char **row_labels, **col_labels;  // (rows), (cols) or NULL
    bool annotate;
};

typedef struct {
    double r, g, b;
} rgb;

// The matplotlib "tab10" colours: distinct, and readable on white.
static const rgb palette[] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812},
};
#define PALETTE_SIZE ((int)(sizeof palette / sizeof palette[0]))

// Samples of the viridis colour map at 0, 1/8, ..., 1: perceptually uniform, dark to bright.
static const rgb viridis[] = {
    {0.267, 0.005, 0.329}, {0.283, 0.141, 0.458}, {0.254, 0.265, 0.530},
    {0.207, 0.372, 0.553}, {0.164, 0.471, 0.558}, {0.128, 0.567, 0.551},
    {0.135, 0.659, 0.518}, {0.267, 0.749, 0.441}, {0.478, 0.821, 0.318},
    {0.741, 0.873, 0.150}, {0.993, 0.906, 0.144},
};
#define VIRIDIS_SIZE ((int)(sizeof viridis / sizeof viridis[0]))

static const rgb ink = {0.15, 0.15, 0.15};
static const rgb faint_ink = {0.35, 0.35, 0.35};
static const rgb grid_line = {0.90, 0.90, 0.90};
static const rgb frame_line = {0.70, 0.70, 0.70};
static const rgb missing_cell = {0.85, 0.85, 0.85};

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static double *dup_doubles(const double *v, size_t n) {
    double *out = xmalloc(n * sizeof *out);
    if (n) memcpy(out, v, n * sizeof *out);
    return out;
}

static char **dup_labels(const char *const *labels, int n) {
    if (!labels) return NULL;
    char **out = xcalloc((size_t)n, sizeof *out);
    for (int i = 0; i < n; i++) out[i] = xstrdup(labels[i] ? labels[i] : "");
    return out;
}

static void free_labels(char **labels, int n) {
    if (!labels) return;
    for (int i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

// Chart construction ------------------------------------------------------------------------------

plot_chart *plot_chart_init(const char *title, const char *x_label, const char *y_label) {
    plot_chart *c = xcalloc(1, sizeof *c);
    c->title = dup_or_null(title);
    c->x_label = dup_or_null(x_label);
    c->y_label = dup_or_null(y_label);
    return c;
}

void plot_chart_free(plot_chart *c) {
    if (!c) return;
    for (int i = 0; i < c->n_series; i++) {
        free(c->series[i].name);
        free(c->series[i].x);
        free(c->series[i].y);
    }
    free(c->series);
    free(c->matrix);
    free_labels(c->row_labels, c->rows);
    free_labels(c->col_labels, c->cols);
    free(c->title);
    free(c->x_label);
    free(c->y_label);
    free(c);
}

static int next_free_color(const plot_chart *c) {
    for (int color = 1; color <= PALETTE_SIZE; color++) {
        bool used = false;
        for (int i = 0; i < c->n_series; i++) used |= c->series[i].style.color == color;
        if (!used) return color;
    }
    return c->n_series % PALETTE_SIZE + 1;
}

int plot_chart_add_series(plot_chart *c, const char *name, const double *x, const double *y, int n,
                          const plot_style *style) {
    if (n < 0) n = 0;
    c->series = xrealloc(c->series, (size_t)(c->n_series + 1) * sizeof *c->series);
    series *s = &c->series[c->n_series];
    s->name = dup_or_null(name);
    s->x = dup_doubles(x, (size_t)n);
    s->y = dup_doubles(y, (size_t)n);
    s->n = n;
    s->style = style ? *style : (plot_style){0};
    if (s->style.width <= 0) s->style.width = 2;
    if (s->style.opacity <= 0 || s->style.opacity > 1) s->style.opacity = 1;
    if (s->style.color < 1) s->style.color = next_free_color(c);
    s->style.color = (s->style.color - 1) % PALETTE_SIZE + 1;
    c->n_series++;
    return s->style.color;
}

void plot_chart_set_log_y(plot_chart *c, bool log_y) { c->log_y = log_y; }

void plot_chart_set_range(plot_chart *c, double lo, double hi) {
    c->fixed_range = isfinite(lo) && isfinite(hi) && lo < hi;
    c->range_lo = lo;
    c->range_hi = hi;
}

void plot_chart_set_x_range(plot_chart *c, double lo, double hi) {
    c->fixed_x = isfinite(lo) && isfinite(hi) && lo < hi;
    c->x_lo = lo;
    c->x_hi = hi;
}

void plot_chart_set_matrix(plot_chart *c, const double *values, int rows, int cols,
                           const char *const *row_labels, const char *const *col_labels,
                           bool annotate) {
    free(c->matrix);
    free_labels(c->row_labels, c->rows);
    free_labels(c->col_labels, c->cols);
    if (rows < 0 || cols < 0) rows = cols = 0;
    c->matrix = dup_doubles(values, (size_t)rows * (size_t)cols);
    c->rows = rows;
    c->cols = cols;
    c->row_labels = dup_labels(row_labels, rows);
    c->col_labels = dup_labels(col_labels, cols);
    c->annotate = annotate;
}

// Numbers and ticks -------------------------------------------------------------------------------

typedef struct {
    double v[MAX_TICKS];
    int n;
    double step;  // spacing of linear ticks; 0 for log ticks
} ticks;

static double nice_step(double span, int target) {
    double raw = span / (target > 1 ? target : 1);
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nice = f < 1.5 ? 1 : f < 2.25 ? 2 : f < 3.5 ? 2.5 : f < 7.5 ? 5 : 10;
    return nice * mag;
}

static void ticks_linear(double lo, double hi, int target, ticks *t) {
    t->n = 0;
    t->step = nice_step(hi - lo, target);
    if (!(t->step > 0) || !isfinite(t->step)) return;
    for (double k = ceil(lo / t->step - 1e-9); t->n < MAX_TICKS; k++) {
        double v = k * t->step;
        if (v > hi + t->step * 1e-9) break;
        t->v[t->n++] = fabs(v) < t->step * 1e-9 ? 0 : v;
    }
}

// Ticks at powers of ten (every k-th decade when there are many), with 2x and 5x multiples when the
// axis spans few decades. l0, l1 are log10 of the axis ends.
static void ticks_log(double l0, double l1, int target, ticks *t) {
    t->n = 0;
    t->step = 0;
    int d0 = (int)ceil(l0 - 1e-9), d1 = (int)floor(l1 + 1e-9);
    int every = (d1 - d0) / (target > 1 ? target : 1) + 1;
    bool multiples = l1 - l0 < 3;
    for (int d = (int)floor(l0); d <= d1 && t->n < MAX_TICKS - 3; d++) {
        static const double mults[] = {1, 2, 5};
        for (int m = 0; m < (multiples ? 3 : 1); m++) {
            double v = mults[m] * pow(10, d), lv = log10(v);
            if (lv < l0 - 1e-9 || lv > l1 + 1e-9) continue;
            if (m == 0 && (d - d0) % every) continue;
            t->v[t->n++] = v;
        }
    }
    if (t->n < 2) ticks_linear(pow(10, l0), pow(10, l1), target, t);
}

// Decimal places that show step exactly (0.25 -> 2, 5 -> 0).
static int step_decimals(double step) {
    for (int d = 0; d < 10; d++) {
        double scaled = step * pow(10, d);
        if (fabs(scaled - nearbyint(scaled)) < 1e-6 * scaled) return d;
    }
    return 10;
}

// A label for one value, alone: "0.5", "200", "1e-5", "2e+6".
static void format_alone(double v, char *out, size_t cap) {
    double a = fabs(v);
    if (a == 0 || (a >= 1e-3 && a < 1e4)) {
        snprintf(out, cap, "%g", v);
        return;
    }
    int e = (int)floor(log10(a));
    snprintf(out, cap, "%.3ge%d", v / pow(10, e), e);
}

// A tick label: "0.25", "15k", "2.5M", "0.5e-4". step is the tick spacing (0: format v alone) and
// max_abs the largest magnitude on the axis, so all labels of an axis share one style.
static void format_number(double v, double step, double max_abs, char *out, size_t cap) {
    if (v == 0 || step <= 0) {
        format_alone(v, out, cap);
    } else if (max_abs >= 1e4 && max_abs < 1e15) {
        double scale = max_abs >= 1e6 ? 1e6 : 1e3;
        snprintf(out, cap, "%.*f%s", step_decimals(step / scale), v / scale,
                 scale == 1e6 ? "M" : "k");
    } else if (max_abs < 1e-3 || max_abs >= 1e15) {
        int e = (int)floor(log10(max_abs));
        snprintf(out, cap, "%.*fe%d", step_decimals(step / pow(10, e)), v / pow(10, e), e);
    } else {
        snprintf(out, cap, "%.*f", step_decimals(step), v);
    }
}

static double ticks_max_abs(const ticks *t) {
    double m = 0;
    for (int i = 0; i < t->n; i++) m = fmax(m, fabs(t->v[i]));
    return m;
}

// Text --------------------------------------------------------------------------------------------

static void set_font(cairo_t *cr, double size, bool bold) {
    cairo_select_font_face(cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static void set_color(cairo_t *cr, rgb c, double alpha) {
    cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

static double text_width(cairo_t *cr, const char *s) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

// Height of capital letters in the current font: the visual height used to centre labels.
static double cap_height(cairo_t *cr) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, "H", &te);
    return -te.y_bearing;
}

// Draws s with its anchor (ax, ay) at (x, y): ax 0/0.5/1 = left/centre/right edge, ay 0/0.5/1 =
// top/middle/baseline of capital letters.
static void draw_text(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
    cairo_move_to(cr, x - ax * text_width(cr, s), y + (1 - ay) * cap_height(cr));
    cairo_show_text(cr, s);
}

static void draw_text_vertical(cairo_t *cr, const char *s, double x, double y, double ax,
                               double ay) {
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, s, 0, 0, ax, ay);
    cairo_restore(cr);
}

// Copies s into out, cut at a UTF-8 character boundary and ended with "…" when wider than max_w.
static void fit_text(cairo_t *cr, const char *s, double max_w, char *out, size_t cap) {
    snprintf(out, cap, "%s", s);
    if (text_width(cr, out) <= max_w) return;
    size_t len = strlen(out);
    while (len > 0) {
        do len--;
        while (len > 0 && ((unsigned char)out[len] & 0xC0) == 0x80);
        if (len + 4 > cap) continue;
        memcpy(out + len, "\xE2\x80\xA6", 4);
        if (text_width(cr, out) <= max_w) return;
    }
    snprintf(out, cap, "\xE2\x80\xA6");
}

// Layout ------------------------------------------------------------------------------------------

typedef struct {
    double x, y, w, h;
} rect;

// Font size for a panel: readable at 600 px, not oversized in large images.
static double panel_font_size(rect panel) {
    double s = fmin(panel.w, panel.h) / 38;
    return s < 9 ? 9 : s > 15 ? 15 : s;
}

// Draws the title and axis labels around the panel and returns the space left inside them.
static rect draw_titles(cairo_t *cr, const plot_chart *c, rect panel, double fs) {
    rect r = {panel.x + fs * 0.8, panel.y + fs * 0.8, panel.w - fs * 1.8, panel.h - fs * 1.6};
    set_color(cr, ink, 1);
    if (c->title && *c->title) {
        set_font(cr, fs * 1.25, true);
        char buf[256];
        fit_text(cr, c->title, r.w, buf, sizeof buf);
        draw_text(cr, buf, panel.x + panel.w / 2, r.y, 0.5, 0);
        r.y += fs * 2.2;
        r.h -= fs * 2.2;
    }
    set_font(cr, fs, false);
    if (c->x_label && *c->x_label) {
        draw_text(cr, c->x_label, r.x + r.w / 2, r.y + r.h, 0.5, 1);
        r.h -= fs * 1.8;
    }
    if (c->y_label && *c->y_label) {
        draw_text_vertical(cr, c->y_label, r.x, r.y + r.h / 2, 0.5, 0);
        r.x += fs * 1.8;
        r.w -= fs * 1.8;
    }
    return r;
}

static void draw_no_data(cairo_t *cr, rect area, double fs) {
    set_font(cr, fs * 1.1, false);
    set_color(cr, faint_ink, 1);
    draw_text(cr, "no data", area.x + area.w / 2, area.y + area.h / 2, 0.5, 0.5);
}

// Line charts -------------------------------------------------------------------------------------

typedef struct {
    double x0, x1;  // x axis ends
    double y0, y1;  // y axis ends (log10 of the values on a log axis)
    bool log_y;
    rect area;      // the plotting area in pixels
    double inset;   // pixels between the area's frame and the axis ends, so lines and dots at
                    // the ends stay visible
} axes;

static bool point_ok(const axes *a, double x, double y) {
    return isfinite(x) && isfinite(y) && (!a->log_y || y > 0);
}

static double to_px_x(const axes *a, double x) {
    return a->area.x + a->inset + (x - a->x0) / (a->x1 - a->x0) * (a->area.w - 2 * a->inset);
}

static double to_px_y(const axes *a, double y) {
    double v = a->log_y ? log10(y) : y;
    return a->area.y + a->area.h - a->inset -
           (v - a->y0) / (a->y1 - a->y0) * (a->area.h - 2 * a->inset);
}

// Widens [*lo, *hi] by frac of its span, or around a single value.
static void pad_range(double *lo, double *hi, double frac) {
    double span = *hi - *lo;
    if (span <= 0) span = *lo != 0 ? fabs(*lo) * 0.2 : 2, frac = 0.5;
    *lo -= span * frac;
    *hi += span * frac;
}

// Moves the ends of [*lo, *hi] out to the nearest round values when these are close (steps 1..2999
// become 0..3000), so the axis ends on a tick.
static void snap_to_round(double *lo, double *hi) {
    double span = *hi - *lo, step = nice_step(span, 10);
    double rlo = floor(*lo / step) * step, rhi = ceil(*hi / step) * step;
    if (*lo - rlo <= 0.02 * span) *lo = rlo;
    if (rhi - *hi <= 0.02 * span) *hi = rhi;
}

// Fills the axis ranges from the data (or the fixed range). Returns the number of valid points.
static long data_ranges(const plot_chart *c, axes *a) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    long n = 0;
    for (int i = 0; i < c->n_series; i++)
        for (int k = 0; k < c->series[i].n; k++) {
            double x = c->series[i].x[k], y = c->series[i].y[k];
            if (!point_ok(a, x, y)) continue;
            double v = a->log_y ? log10(y) : y;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, v), yhi = fmax(yhi, v);
            n++;
        }
    if (!n) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    else if (xlo == xhi) pad_range(&xlo, &xhi, 0);
    if (c->fixed_x) xlo = c->x_lo, xhi = c->x_hi;
    snap_to_round(&xlo, &xhi);
    bool nonnegative = ylo >= 0;
    if (c->fixed_range && (!a->log_y || c->range_lo > 0)) {
        ylo = a->log_y ? log10(c->range_lo) : c->range_lo;
        yhi = a->log_y ? log10(c->range_hi) : c->range_hi;
    } else if (n) {
        pad_range(&ylo, &yhi, 0.05);
        if (!a->log_y && nonnegative && ylo < 0) ylo = 0;
    }
    a->x0 = xlo, a->x1 = xhi, a->y0 = ylo, a->y1 = yhi;
    return n;
}

static void axis_ticks(const axes *a, ticks *tx, ticks *ty, double fs) {
    ticks_linear(a->x0, a->x1, (int)(a->area.w / (fs * 7)), tx);
    if (a->log_y) ticks_log(a->y0, a->y1, (int)(a->area.h / (fs * 3)), ty);
    else ticks_linear(a->y0, a->y1, (int)(a->area.h / (fs * 3.5)), ty);
}

static double widest_label(cairo_t *cr, const ticks *t) {
    double w = 0, max_abs = ticks_max_abs(t);
    char buf[32];
    for (int i = 0; i < t->n; i++) {
        format_number(t->v[i], t->step, max_abs, buf, sizeof buf);
        w = fmax(w, text_width(cr, buf));
    }
    return w;
}

// Grid lines and tick labels of both axes, and the frame around the plotting area.
static void draw_axes(cairo_t *cr, const axes *a, const ticks *tx, const ticks *ty, double fs) {
    char buf[32];
    cairo_set_line_width(cr, 1);
    set_font(cr, fs * 0.9, false);
    double mx = ticks_max_abs(tx), my = ticks_max_abs(ty);
    for (int i = 0; i < tx->n; i++) {
        double px = round(to_px_x(a, tx->v[i])) + 0.5;
        set_color(cr, grid_line, 1);
        cairo_move_to(cr, px, a->area.y);
        cairo_line_to(cr, px, a->area.y + a->area.h);
        cairo_stroke(cr);
        set_color(cr, faint_ink, 1);
        format_number(tx->v[i], tx->step, mx, buf, sizeof buf);
        draw_text(cr, buf, px, a->area.y + a->area.h + fs * 0.6, 0.5, 0);
    }
    for (int i = 0; i < ty->n; i++) {
        double py = round(to_px_y(a, ty->v[i])) + 0.5;
        set_color(cr, grid_line, 1);
        cairo_move_to(cr, a->area.x, py);
        cairo_line_to(cr, a->area.x + a->area.w, py);
        cairo_stroke(cr);
        set_color(cr, faint_ink, 1);
        format_number(ty->v[i], ty->step, my, buf, sizeof buf);
        draw_text(cr, buf, a->area.x - fs * 0.5, py, 1, 0.5);
    }
    set_color(cr, frame_line, 1);
    cairo_rectangle(cr, round(a->area.x) + 0.5, round(a->area.y) + 0.5, round(a->area.w),
                    round(a->area.h));
    cairo_stroke(cr);
}

static void dot(cairo_t *cr, double x, double y, double radius) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, radius, 0, 2 * M_PI);
    cairo_fill(cr);
}

// Builds a polyline as a cairo path. With `reduce`, consecutive points in one pixel column become
// the column's first, lowest, highest and last points: the same picture, with at most four points
// per column however long the series (stroking 10^5 points is slow).
typedef struct {
    cairo_t *cr;
    bool reduce;
    bool pen_down;  // the next point continues the line
    bool open;      // a column is being collected
    double col;     // its pixel column
    double x_first, y_first, y_lo, y_hi, x_last, y_last;
} path_reducer;

static void path_point(path_reducer *r, double x, double y) {
    if (r->pen_down) cairo_line_to(r->cr, x, y);
    else cairo_move_to(r->cr, x, y);
    r->pen_down = true;
}

static void path_flush(path_reducer *r) {
    if (!r->open) return;
    path_point(r, r->x_first, r->y_first);
    path_point(r, r->col, r->y_lo);
    path_point(r, r->col, r->y_hi);
    path_point(r, r->x_last, r->y_last);
    r->open = false;
}

static void path_add(path_reducer *r, double x, double y) {
    if (!r->reduce) {
        path_point(r, x, y);
        return;
    }
    double col = floor(x) + 0.5;
    if (r->open && col == r->col) {
        r->y_lo = fmin(r->y_lo, y), r->y_hi = fmax(r->y_hi, y);
        r->x_last = x, r->y_last = y;
        return;
    }
    path_flush(r);
    *r = (path_reducer){r->cr, true, r->pen_down, true, col, x, y, y, y, x, y};
}

// A gap: the line stops here and starts again at the next point.
static void path_break(path_reducer *r) {
    path_flush(r);
    r->pen_down = false;
}

static void draw_series(cairo_t *cr, const axes *a, const series *s) {
    const plot_style *st = &s->style;
    set_color(cr, palette[st->color - 1], st->opacity);
    cairo_set_line_width(cr, st->width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    double dash[] = {st->width * 3, st->width * 2.5};
    cairo_set_dash(cr, dash, st->dashed ? 2 : 0, 0);
    path_reducer r = {.cr = cr, .reduce = s->n > 2 * a->area.w};
    for (int k = 0; k < s->n; k++) {
        if (point_ok(a, s->x[k], s->y[k])) path_add(&r, to_px_x(a, s->x[k]), to_px_y(a, s->y[k]));
        else path_break(&r);
    }
    path_break(&r);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    // A point without valid neighbours draws no segment: mark it, as for series with markers.
    for (int k = 0; k < s->n; k++) {
        if (!point_ok(a, s->x[k], s->y[k])) continue;
        bool alone = (k == 0 || !point_ok(a, s->x[k - 1], s->y[k - 1])) &&
                     (k == s->n - 1 || !point_ok(a, s->x[k + 1], s->y[k + 1]));
        if (st->markers || alone)
            dot(cr, to_px_x(a, s->x[k]), to_px_y(a, s->y[k]), st->width * 1.2 + 1.5);
    }
}

static int points_inside(const plot_chart *c, const axes *a, rect box) {
    int n = 0;
    for (int i = 0; i < c->n_series; i++)
        for (int k = 0; k < c->series[i].n; k++) {
            const series *s = &c->series[i];
            if (!point_ok(a, s->x[k], s->y[k])) continue;
            double px = to_px_x(a, s->x[k]), py = to_px_y(a, s->y[k]);
            n += px >= box.x && px <= box.x + box.w && py >= box.y && py <= box.y + box.h;
        }
    return n;
}

// The corner of the plotting area where a box of size (w, h) hides the fewest points.
static rect legend_place(const plot_chart *c, const axes *a, double w, double h, double margin) {
    rect best = {0};
    int best_n = -1;
    for (int corner = 0; corner < 4; corner++) {  // top right, top left, bottom right, bottom left
        double x = corner % 2 ? a->area.x + margin : a->area.x + a->area.w - w - margin;
        double y = corner < 2 ? a->area.y + margin : a->area.y + a->area.h - h - margin;
        rect box = {x, y, w, h};
        int n = points_inside(c, a, box);
        if (best_n < 0 || n < best_n) best = box, best_n = n;
    }
    return best;
}

static void draw_legend_entry(cairo_t *cr, const series *s, double x, double y, double swatch,
                              double gap) {
    set_color(cr, palette[s->style.color - 1], fmax(s->style.opacity, 0.6));
    cairo_set_line_width(cr, fmax(s->style.width, 2));
    double dash[] = {4, 3};
    cairo_set_dash(cr, dash, s->style.dashed ? 2 : 0, 0);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + swatch, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    if (s->style.markers) dot(cr, x + swatch / 2, y, s->style.width * 1.2 + 1.5);
    set_color(cr, ink, 1);
    draw_text(cr, s->name, x + swatch + gap, y, 0, 0.5);
}

static void draw_legend(cairo_t *cr, const plot_chart *c, const axes *a, double fs) {
    int n = 0;
    double w = 0;
    set_font(cr, fs * 0.9, false);
    for (int i = 0; i < c->n_series; i++)
        if (c->series[i].name) n++, w = fmax(w, text_width(cr, c->series[i].name));
    if (n < 2) return;
    double line = fs * 1.5, swatch = fs * 2, pad = fs * 0.6;
    rect box = legend_place(c, a, w + swatch + 3 * pad, n * line + pad, fs * 0.5);
    cairo_rectangle(cr, box.x, box.y, box.w, box.h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    set_color(cr, frame_line, 1);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double y = box.y + pad / 2 + line / 2;
    for (int i = 0; i < c->n_series; i++) {
        if (!c->series[i].name) continue;
        draw_legend_entry(cr, &c->series[i], box.x + pad, y, swatch, pad);
        y += line;
    }
}

static void draw_line_chart(cairo_t *cr, const plot_chart *c, rect panel) {
    double fs = panel_font_size(panel);
    rect inner = draw_titles(cr, c, panel, fs);
    axes a = {.log_y = c->log_y, .inset = fs * 0.5};
    long n = data_ranges(c, &a);
    // The tick labels' size depends on the ticks, which depend on the area's size: estimate the
    // area with a typical label width, then lay out with the real one.
    set_font(cr, fs * 0.9, false);
    ticks tx, ty;
    a.area = (rect){inner.x + fs * 4, inner.y, inner.w - fs * 4, inner.h - fs * 1.8};
    axis_ticks(&a, &tx, &ty, fs);
    double label_w = widest_label(cr, &ty) + fs * 0.9;
    a.area = (rect){inner.x + label_w, inner.y, inner.w - label_w, inner.h - fs * 1.8};
    if (a.area.w < 10 || a.area.h < 10) return;
    axis_ticks(&a, &tx, &ty, fs);
    draw_axes(cr, &a, &tx, &ty, fs);
    cairo_save(cr);
    cairo_rectangle(cr, a.area.x, a.area.y, a.area.w, a.area.h);
    cairo_clip(cr);
    for (int i = 0; i < c->n_series; i++) draw_series(cr, &a, &c->series[i]);
    cairo_restore(cr);
    if (n) draw_legend(cr, c, &a, fs);
    else draw_no_data(cr, a.area, fs);
}

// Heatmaps ----------------------------------------------------------------------------------------

static rgb colormap(double t) {
    if (!(t > 0)) return viridis[0];
    if (t >= 1) return viridis[VIRIDIS_SIZE - 1];
    double pos = t * (VIRIDIS_SIZE - 1);
    int i = (int)pos;
    double f = pos - i;
    rgb a = viridis[i], b = viridis[i + 1];
    return (rgb){a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

static void matrix_range(const plot_chart *c, double *lo, double *hi, bool *integers) {
    *lo = INFINITY, *hi = -INFINITY, *integers = true;
    for (long i = 0; i < (long)c->rows * c->cols; i++) {
        double v = c->matrix[i];
        if (!isfinite(v)) continue;
        *lo = fmin(*lo, v), *hi = fmax(*hi, v);
        *integers &= v == nearbyint(v) && fabs(v) < 1e9;
    }
    if (c->fixed_range) *lo = c->range_lo, *hi = c->range_hi;
    if (!(*lo <= *hi)) *lo = 0, *hi = 1;
    if (*lo == *hi) pad_range(lo, hi, 0);
}

static void label_text(char *const *labels, int i, char *out, size_t cap) {
    if (labels) snprintf(out, cap, "%s", labels[i]);
    else snprintf(out, cap, "%d", i);
}

// How labels of an axis with n cells of size `cell` are drawn: font size and every how many cells.
typedef struct {
    double fs;
    int stride;
    double max_w;  // widest label allowed (px)
} label_plan;

// Below 8 px text is unreadable: then only every 2nd, 5th, 10th... label is drawn, at 8 px.
static label_plan plan_labels(double cell, double fs, double max_w) {
    label_plan p = {fmin(fs * 0.9, cell * 0.8), 1, max_w};
    const double min_fs = 8;
    if (p.fs < min_fs) {
        static const int strides[] = {2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000};
        int need = (int)ceil(min_fs * 1.25 / cell), i = 0;
        while (i < (int)(sizeof strides / sizeof strides[0]) - 1 && strides[i] < need) i++;
        p.stride = strides[i];
        p.fs = min_fs;
    }
    return p;
}

static double widest_matrix_label(cairo_t *cr, char *const *labels, int n, const label_plan *p) {
    char raw[256], fitted[256];
    double w = 0;
    set_font(cr, p->fs, false);
    for (int i = 0; i < n; i += p->stride) {
        label_text(labels, i, raw, sizeof raw);
        fit_text(cr, raw, p->max_w, fitted, sizeof fitted);
        w = fmax(w, text_width(cr, fitted));
    }
    return w;
}

typedef struct {
    rect cells;              // the matrix area
    double cell;             // side of a (square) cell
    label_plan rows, cols;
    bool cols_vertical;      // column labels rotated to fit narrow cells
    double lo, hi;           // colour scale
    bool integers;
} heatmap_layout;

// Square cells as large as fit beside the row labels, above the column labels and left of the
// colour bar (whose labels are measured as well). Two passes: labels shrink with the cells.
static heatmap_layout layout_heatmap(cairo_t *cr, const plot_chart *c, rect inner, double fs) {
    heatmap_layout L = {0};
    matrix_range(c, &L.lo, &L.hi, &L.integers);
    ticks t;
    ticks_linear(L.lo, L.hi, (int)(inner.h / (fs * 3)), &t);
    set_font(cr, fs * 0.9, false);
    double bar_w = fs * 1.2 + fs * 0.8 + widest_label(cr, &t) + fs;
    double left = fs * 3, bottom = fs * 2;
    for (int pass = 0; pass < 2; pass++) {
        double avail_w = inner.w - left - bar_w, avail_h = inner.h - bottom;
        L.cell = fmax(1, fmin(avail_w / c->cols, avail_h / c->rows));
        L.rows = plan_labels(L.cell, fs, inner.w * 0.25);
        L.cols = plan_labels(L.cell, fs, inner.h * 0.25);
        left = widest_matrix_label(cr, c->row_labels, c->rows, &L.rows) + fs * 0.6;
        double col_w = widest_matrix_label(cr, c->col_labels, c->cols, &L.cols);
        L.cols_vertical = col_w > L.cell * L.cols.stride * 0.9;
        bottom = (L.cols_vertical ? col_w : L.cols.fs) + fs * 0.8;
    }
    double used_w = L.cell * c->cols, used_h = L.cell * c->rows;
    double x = inner.x + left + (inner.w - left - bar_w - used_w) / 2;
    L.cells = (rect){x, inner.y + (inner.h - bottom - used_h) / 2, used_w, used_h};
    return L;
}

static double luminance(rgb c) { return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b; }

static void draw_cells(cairo_t *cr, const plot_chart *c, const heatmap_layout *L, double fs) {
    double ann_fs = fmin(fs * 0.9, L->cell * 0.32);
    bool annotate = c->annotate && ann_fs >= 7;
    set_font(cr, ann_fs, false);
    for (int i = 0; i < c->rows; i++)
        for (int j = 0; j < c->cols; j++) {
            double v = c->matrix[(long)i * c->cols + j];
            rgb col = isfinite(v) ? colormap((v - L->lo) / (L->hi - L->lo)) : missing_cell;
            double x = L->cells.x + j * L->cell, y = L->cells.y + i * L->cell;
            set_color(cr, col, 1);
            // Whole-pixel edges: antialiased edges of neighbouring cells would show seams.
            double x0 = round(x), y0 = round(y);
            cairo_rectangle(cr, x0, y0, round(x + L->cell) - x0, round(y + L->cell) - y0);
            cairo_fill(cr);
            if (!annotate || !isfinite(v)) continue;
            char buf[32];
            snprintf(buf, sizeof buf, L->integers ? "%.0f" : "%.2f", v);
            if (text_width(cr, buf) > L->cell * 0.92) continue;
            cairo_set_source_rgb(cr, luminance(col) > 0.5 ? 0.1 : 1, luminance(col) > 0.5 ? 0.1 : 1,
                                 luminance(col) > 0.5 ? 0.1 : 1);
            draw_text(cr, buf, x + L->cell / 2, y + L->cell / 2, 0.5, 0.5);
        }
}

static void draw_matrix_labels(cairo_t *cr, const plot_chart *c, const heatmap_layout *L,
                               double fs) {
    char raw[256], fitted[256];
    set_color(cr, faint_ink, 1);
    set_font(cr, L->rows.fs, false);
    for (int i = 0; i < c->rows; i += L->rows.stride) {
        label_text(c->row_labels, i, raw, sizeof raw);
        fit_text(cr, raw, L->rows.max_w, fitted, sizeof fitted);
        draw_text(cr, fitted, L->cells.x - fs * 0.4, L->cells.y + (i + 0.5) * L->cell, 1, 0.5);
    }
    set_font(cr, L->cols.fs, false);
    double y = L->cells.y + L->cells.h + fs * 0.4;
    for (int j = 0; j < c->cols; j += L->cols.stride) {
        label_text(c->col_labels, j, raw, sizeof raw);
        fit_text(cr, raw, L->cols.max_w, fitted, sizeof fitted);
        double x = L->cells.x + (j + 0.5) * L->cell;
        if (L->cols_vertical) draw_text_vertical(cr, fitted, x, y, 1, 0.5);
        else draw_text(cr, fitted, x, y, 0.5, 0);
    }
}

static void draw_color_bar(cairo_t *cr, const heatmap_layout *L, double fs) {
    rect bar = {L->cells.x + L->cells.w + fs * 1.2, L->cells.y, fs * 1.2, L->cells.h};
    cairo_pattern_t *grad = cairo_pattern_create_linear(0, bar.y + bar.h, 0, bar.y);
    for (int i = 0; i < VIRIDIS_SIZE; i++)
        cairo_pattern_add_color_stop_rgb(grad, (double)i / (VIRIDIS_SIZE - 1), viridis[i].r,
                                         viridis[i].g, viridis[i].b);
    cairo_rectangle(cr, bar.x, bar.y, bar.w, bar.h);
    cairo_set_source(cr, grad);
    cairo_fill(cr);
    cairo_pattern_destroy(grad);
    ticks t;
    ticks_linear(L->lo, L->hi, (int)(bar.h / (fs * 3)), &t);
    set_font(cr, fs * 0.9, false);
    set_color(cr, faint_ink, 1);
    cairo_set_line_width(cr, 1);
    char buf[32];
    for (int i = 0; i < t.n; i++) {
        double y = bar.y + bar.h - (t.v[i] - L->lo) / (L->hi - L->lo) * bar.h;
        cairo_move_to(cr, bar.x + bar.w, round(y) + 0.5);
        cairo_line_to(cr, bar.x + bar.w + fs * 0.3, round(y) + 0.5);
        cairo_stroke(cr);
        format_number(t.v[i], t.step, ticks_max_abs(&t), buf, sizeof buf);
        draw_text(cr, buf, bar.x + bar.w + fs * 0.5, y, 0, 0.5);
    }
}

static void draw_heatmap(cairo_t *cr, const plot_chart *c, rect panel) {
    double fs = panel_font_size(panel);
    rect inner = draw_titles(cr, c, panel, fs);
    if (c->rows == 0 || c->cols == 0) {
        draw_no_data(cr, inner, fs);
        return;
    }
    heatmap_layout L = layout_heatmap(cr, c, inner, fs);
    draw_cells(cr, c, &L, fs);
    draw_matrix_labels(cr, c, &L, fs);
    draw_color_bar(cr, &L, fs);
}

// Output ------------------------------------------------------------------------------------------

static cairo_status_t write_to_file(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static int write_png(const char *tmp, void *surface) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return err_set("cannot create temporary file: %s", strerror(errno));
    cairo_status_t st = cairo_surface_write_to_png_stream(surface, write_to_file, f);
    int saved = errno;
    if (fclose(f) != 0 && st == CAIRO_STATUS_SUCCESS) st = CAIRO_STATUS_WRITE_ERROR, saved = errno;
    if (st == CAIRO_STATUS_SUCCESS) return 0;
    return err_set("cannot write PNG: %s", st == CAIRO_STATUS_WRITE_ERROR ? strerror(saved) : cairo_status_to_string(st));
}

static void draw_chart(cairo_t *cr, const plot_chart *c, rect panel) {
    cairo_save(cr);
    cairo_rectangle(cr, panel.x, panel.y, panel.w, panel.h);
    cairo_clip(cr);
    if (c->matrix) draw_heatmap(cr, c, panel);
    else draw_line_chart(cr, c, panel);
    cairo_restore(cr);
}

int plot_grid_write_png(const plot_chart *const *charts, int n, int cols, const char *path,
                        int width, int height) {
    if (width < 1 || height < 1 || width > PLOT_MAX_SIDE || height > PLOT_MAX_SIDE)
        return err_set("%s: invalid image size %dx%d", path, width, height);
    if (n < 1 || cols < 1) return err_set("%s: nothing to draw", path);
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(surface);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    int rows = (n + cols - 1) / cols;
    double pw = (double)width / cols, ph = (double)height / rows;
    for (int i = 0; i < n; i++)
        draw_chart(cr, charts[i], (rect){(i % cols) * pw, (i / cols) * ph, pw, ph});
    cairo_surface_flush(surface);
    int rc =
        cairo_status(cr) == CAIRO_STATUS_SUCCESS
            ? atomic_file_write(path, write_png, surface)
            : err_set("%s: drawing failed: %s", path, cairo_status_to_string(cairo_status(cr)));
    cairo_destroy(cr);
    cairo_surface_destroy(surface);
    return rc;
}

int plot_chart_write_png(const plot_chart *c, const char *path, int width, int height) {
    return plot_grid_write_png(&c, 1, 1, path, width, height);
}

bool plot_built(void) { return true; }

void plot_free_caches(void) {
    cairo_debug_reset_static_data();
    FcFini();
}
