// plot/plot.h for a clipc configured without cairo or fontconfig (plot/CMakeLists.txt): charts
// are accepted and dropped, and every PNG write fails with one line saying that this build has no
// plotting, so `clipc plot` and `clipc eval --plots` say so instead of failing to build.
#include <stdlib.h>

#include "common/error.h"
#include "plot/plot.h"

struct plot_chart {
    int n_series;  // for the palette colour add_series returns
};

bool plot_built(void) { return false; }

plot_chart *plot_chart_init(const char *title, const char *x_label, const char *y_label) {
    (void)title, (void)x_label, (void)y_label;
    plot_chart *c = calloc(1, sizeof *c);
    if (!c) err_set("plot: out of memory");
    return c;
}

void plot_chart_free(plot_chart *c) { free(c); }

int plot_chart_add_series(plot_chart *c, const char *name, const double *x, const double *y, int n,
                          const plot_style *style) {
    (void)name, (void)x, (void)y, (void)n;
    c->n_series++;
    return style && style->color > 0 ? style->color : c->n_series;
}

void plot_chart_set_log_y(plot_chart *c, bool log_y) { (void)c, (void)log_y; }
void plot_chart_set_range(plot_chart *c, double lo, double hi) { (void)c, (void)lo, (void)hi; }
void plot_chart_set_x_range(plot_chart *c, double lo, double hi) { (void)c, (void)lo, (void)hi; }

void plot_chart_set_matrix(plot_chart *c, const double *values, int rows, int cols,
                           const char *const *row_labels, const char *const *col_labels, bool annotate) {
    (void)c, (void)values, (void)rows, (void)cols, (void)row_labels, (void)col_labels, (void)annotate;
}

static int refuse(const char *path) {
    return err_set("%s: this clipc was built without plotting (cairo or fontconfig not found when it was configured)",
                   path);
}

int plot_chart_write_png(const plot_chart *c, const char *path, int width, int height) {
    (void)c, (void)width, (void)height;
    return refuse(path);
}

int plot_grid_write_png(const plot_chart *const *charts, int n, int cols, const char *path, int width, int height) {
    (void)charts, (void)n, (void)cols, (void)width, (void)height;
    return refuse(path);
}

void plot_free_caches(void) {}
