// Tests plot/plot_none.c, the plot/plot.h of a clipc configured without cairo: plot_built() says
// so, charts are accepted (line series and heatmaps alike) and every PNG write fails with one line
// naming the file and the missing plotting, writing nothing.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "plot/plot.h"

static void test_not_built(void **state) {
    (void)state;
    assert_false(plot_built());
}

static void test_writes_refused(void **state) {
    (void)state;
    plot_chart *c = plot_chart_init("loss", "step", "loss");
    assert_non_null(c);
    const double x[3] = {1, 2, 3}, y[3] = {3, 2, 1}, m[4] = {1, 0, 0, 1};
    assert_int_equal(plot_chart_add_series(c, "loss", x, y, 3, NULL), 1);
    assert_int_equal(plot_chart_add_series(c, "again", x, y, 3, &(plot_style){.color = 1}), 1);
    assert_int_equal(plot_chart_add_series(c, "third", x, y, 3, NULL), 3);
    plot_chart_set_log_y(c, true);
    plot_chart_set_range(c, 0, 1);
    plot_chart_set_x_range(c, 0, 3);
    plot_chart_set_matrix(c, m, 2, 2, NULL, NULL, true);

    const char *path = "/tmp/clipc-test-plot-none.png";
    unlink(path);
    assert_int_equal(plot_chart_write_png(c, path, 100, 100), -1);
    assert_non_null(strstr(err_msg(), "clipc-test-plot-none.png: this clipc was built without plotting"));
    const plot_chart *grid[2] = {c, c};
    assert_int_equal(plot_grid_write_png(grid, 2, 2, path, 200, 100), -1);
    assert_non_null(strstr(err_msg(), "built without plotting (cairo or fontconfig not found"));
    assert_int_equal(access(path, F_OK), -1);
    plot_chart_free(c);
    plot_free_caches();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_built),
        cmocka_unit_test(test_writes_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
