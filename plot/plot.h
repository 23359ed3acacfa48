// plot: small PNG charts drawn with cairo: line charts of named series (linear or log y axis,
// "nice" tick values), heatmaps with row/column labels and a colour bar (confusion matrices of up
// to a few hundred classes), and grids of several charts in one image.
//
// A chart is built once and drawn on demand, alone (plot_chart_write_png) or as one panel of a grid
// (plot_grid_write_png). Non-finite points (and points <= 0 on a log axis) leave gaps in a line;
// a chart with no data draws its axes and says "no data". PNGs are written atomically: to a
// temporary file in the same folder, then renamed over the target.
#ifndef CLIPC_PLOT_PLOT_H
#define CLIPC_PLOT_PLOT_H

#include <stdbool.h>

typedef struct plot_chart plot_chart;

// false when clipc was configured without cairo or fontconfig (plot/plot_none.c): charts are then
// accepted and dropped, and every PNG write fails saying so.
bool plot_built(void);

typedef struct {
    double width;    // line width in pixels; 0: 2
    double opacity;  // 0..1; 0: opaque
    int color;       // 1-based index into the palette; 0: the next colour not used yet
    bool dashed;
    bool markers;    // a dot on every point (for sparse series such as periodic evaluations)
} plot_style;

plot_chart *plot_chart_init(const char *title, const char *x_label, const char *y_label);
void plot_chart_free(plot_chart *c);

// Adds a line series; x and y (n points) are copied. name may be NULL (no legend entry); style
// may be NULL (defaults). Returns the palette colour used (1-based), to reuse for related series.
int plot_chart_add_series(plot_chart *c, const char *name, const double *x, const double *y, int n,
                          const plot_style *style);
void plot_chart_set_log_y(plot_chart *c, bool log_y);
// Fixes the y axis of a line chart, or the colour scale of a heatmap, to [lo, hi] instead of the
// range of the data (lo < hi).
void plot_chart_set_range(plot_chart *c, double lo, double hi);
// Fixes the x axis of a line chart to [lo, hi] (e.g. to align panels of one run). On every x axis,
// ends within 2% of the span from a round value are moved out to it.
void plot_chart_set_x_range(plot_chart *c, double lo, double hi);

// Makes the chart a heatmap of values (rows, cols), row-major, copied. Row i is drawn top to
// bottom; labels may be NULL (indices are shown). Labels shrink, then thin out, when cells are
// small; cells are annotated with their value when annotate is set and they are large enough.
void plot_chart_set_matrix(plot_chart *c, const double *values, int rows, int cols,
                           const char *const *row_labels, const char *const *col_labels,
                           bool annotate);

// Draws the chart into a width x height PNG. Returns 0, or -1 with err_msg() naming path.
int plot_chart_write_png(const plot_chart *c, const char *path, int width, int height);

// Draws n charts as panels of a grid with `cols` columns (rows as needed), row by row.
int plot_grid_write_png(const plot_chart *const *charts, int n, int cols, const char *path,
                        int width, int height);

// Frees the font caches cairo and fontconfig keep for the whole process, so leak checkers see a
// clean exit. Call at most once, at the end, with no drawing in progress or to follow.
void plot_free_caches(void);

#endif
