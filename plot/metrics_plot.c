#include "plot/metrics_plot.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "plot/plot.h"

#define CHART_W 1000
#define CHART_H 600
#define OVERVIEW_W 1600
#define OVERVIEW_H 1000

typedef struct {
    double *v;
    int n, cap;
} dvec;

typedef enum {
    CURVE_LOSS,  // loss of a non-training line type, e.g. "val"
    CURVE_TOP1,
    CURVE_TOP5,
} curve_kind;

// One named curve other than the training ones, e.g. top-1 accuracy on one data set.
typedef struct {
    curve_kind kind;
    char *name;  // data set or line type
    dvec step, value;
} curve;

typedef struct {
    dvec step, loss, lr, logit_scale, speed;  // one entry per training line
    curve *curves;
    int n_curves;
} metrics;

static void dvec_push(dvec *d, double v) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->v = xrealloc(d->v, (size_t)d->cap * sizeof *d->v);
    }
    d->v[d->n++] = v;
}

static void metrics_free(metrics *m) {
    free(m->step.v), free(m->loss.v), free(m->lr.v), free(m->logit_scale.v), free(m->speed.v);
    for (int i = 0; i < m->n_curves; i++) {
        free(m->curves[i].name);
        free(m->curves[i].step.v);
        free(m->curves[i].value.v);
    }
    free(m->curves);
}

static void curve_push(metrics *m, curve_kind kind, const char *name, double step, double value) {
    curve *c = NULL;
    for (int i = 0; i < m->n_curves && !c; i++)
        if (m->curves[i].kind == kind && !strcmp(m->curves[i].name, name)) c = &m->curves[i];
    if (!c) {
        m->curves = xrealloc(m->curves, (size_t)(m->n_curves + 1) * sizeof *m->curves);
        c = &m->curves[m->n_curves++];
        *c = (curve){.kind = kind, .name = xstrdup(name)};
    }
    dvec_push(&c->step, step);
    dvec_push(&c->value, value);
}

// A numeric field, or NaN when absent or not a number (non-finite values may be logged as null).
static double number_field(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

static void report_warning(metrics_plot_report *rep, const char *path, long line, const char *why) {
    rep->n_malformed++;
    if (rep->n_warnings == METRICS_PLOT_MAX_WARNINGS) return;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s:%ld: %s, line skipped", path, line, why);
    rep->warnings[rep->n_warnings++] = xstrdup(buf);
}

// Records the known fields of a non-training line. Returns whether it carried any.
static bool add_other_line(metrics *m, const cJSON *obj, const char *type, double step) {
    const cJSON *dataset = cJSON_GetObjectItemCaseSensitive(obj, "dataset");
    const char *name = cJSON_IsString(dataset) ? dataset->valuestring : type;
    double loss = number_field(obj, "loss"), top1 = number_field(obj, "top1"),
           top5 = number_field(obj, "top5");
    if (!isnan(loss)) curve_push(m, CURVE_LOSS, type, step, loss);
    if (!isnan(top1)) curve_push(m, CURVE_TOP1, name, step, top1);
    if (!isnan(top5)) curve_push(m, CURVE_TOP5, name, step, top5);
    return !isnan(top1) || !isnan(top5);
}

// Parses one line. Returns NULL when it was used or ignored, else why it is malformed.
static const char *parse_line(metrics *m, metrics_plot_report *rep, const char *text) {
    cJSON *obj = cJSON_Parse(text);
    const char *why = NULL;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(obj, "type");
    double step = number_field(obj, "step");
    if (!obj) why = "invalid JSON";
    else if (!cJSON_IsObject(obj)) why = "not a JSON object";
    else if (!cJSON_IsString(type)) why = "no \"type\" string";
    else if (!strcmp(type->valuestring, "train")) {
        if (!isfinite(step)) why = "training line without a numeric \"step\"";
        else {
            dvec_push(&m->step, step);
            dvec_push(&m->loss, number_field(obj, "loss"));
            dvec_push(&m->lr, number_field(obj, "lr"));
            dvec_push(&m->logit_scale, number_field(obj, "logit_scale"));
            dvec_push(&m->speed, number_field(obj, "samples_per_s"));
            rep->n_train++;
        }
    } else if (isfinite(step)) {
        rep->n_eval += add_other_line(m, obj, type->valuestring, step);
    } else if (!strcmp(type->valuestring, "zeroshot")) {
        why = "zero-shot line without a numeric \"step\"";
    }
    cJSON_Delete(obj);
    return why;
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return false;
    return true;
}

static int read_metrics(const char *path, metrics *m, metrics_plot_report *rep) {
    FILE *f = fopen_checked(path, "r");
    if (!f) return -1;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (blank(line)) continue;
        const char *why = parse_line(m, rep, line);
        if (why) report_warning(rep, path, lineno, why);
    }
    int rc = ferror(f) ? err_errno(path) : 0;
    free(line);
    fclose(f);
    if (rc == 0 && rep->n_train == 0 && rep->n_eval == 0)
        rc = err_set("%s: no training or evaluation lines to plot", path);
    return rc;
}

// Exponential moving average with the start-up bias removed (as TensorBoard's smoothing), over
// about n/50 points. Non-finite values are skipped and stay gaps.
static double *smooth_ema(const double *y, int n) {
    double span = fmin(fmax(n / 50.0, 1), 200), w = 1 - 2 / (span + 1);
    double *out = xmalloc((size_t)(n ? n : 1) * sizeof *out);
    double ema = 0, weight = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            out[i] = NAN;
            continue;
        }
        ema = w * ema + (1 - w) * y[i];
        weight = w * weight + (1 - w);
        out[i] = ema / weight;
    }
    return out;
}

static plot_chart *loss_chart(const metrics *m) {
    plot_chart *c = plot_chart_init("Training loss", "step", "loss");
    double *smooth = smooth_ema(m->loss.v, m->loss.n);
    int color = plot_chart_add_series(c, "loss", m->step.v, m->loss.v, m->step.n,
                                      &(plot_style){.width = 1, .opacity = 0.35});
    plot_chart_add_series(c, "smoothed (EMA)", m->step.v, smooth, m->step.n,
                          &(plot_style){.width = 2.2, .color = color});
    free(smooth);
    for (int i = 0; i < m->n_curves; i++) {
        const curve *k = &m->curves[i];
        if (k->kind != CURVE_LOSS) continue;
        char name[256];
        snprintf(name, sizeof name, "%s loss", k->name);
        plot_chart_add_series(c, name, k->step.v, k->value.v, k->step.n,
                              &(plot_style){.markers = true});
    }
    return c;
}

static plot_chart *training_chart(const metrics *m, const char *title, const char *y_label,
                                  const dvec *y, int color) {
    plot_chart *c = plot_chart_init(title, "step", y_label);
    plot_chart_add_series(c, NULL, m->step.v, y->v, m->step.n, &(plot_style){.color = color});
    return c;
}

static bool has_accuracy(const metrics *m) {
    for (int i = 0; i < m->n_curves; i++)
        if (m->curves[i].kind != CURVE_LOSS) return true;
    return false;
}

// Top-1 (solid) and top-5 (dashed, same colour) accuracy per data set, on [0, 1] when fractions.
static plot_chart *accuracy_chart(const metrics *m) {
    plot_chart *c = plot_chart_init("Zero-shot accuracy", "step", "accuracy");
    bool fractions = true;
    for (int i = 0; i < m->n_curves; i++) {
        const curve *k = &m->curves[i];
        if (k->kind != CURVE_TOP1) continue;
        char name[256];
        snprintf(name, sizeof name, "%s top-1", k->name);
        int color = plot_chart_add_series(c, name, k->step.v, k->value.v, k->step.n,
                                          &(plot_style){.markers = true});
        for (int j = 0; j < m->n_curves; j++) {
            const curve *t5 = &m->curves[j];
            if (t5->kind != CURVE_TOP5 || strcmp(t5->name, k->name)) continue;
            snprintf(name, sizeof name, "%s top-5", k->name);
            plot_chart_add_series(c, name, t5->step.v, t5->value.v, t5->step.n,
                                  &(plot_style){.color = color, .dashed = true, .markers = true});
        }
    }
    for (int i = 0; i < m->n_curves; i++)
        for (int k = 0; k < m->curves[i].value.n && m->curves[i].kind != CURVE_LOSS; k++)
            fractions &= !(m->curves[i].value.v[k] < 0 || m->curves[i].value.v[k] > 1);
    if (fractions) plot_chart_set_range(c, 0, 1);
    return c;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int make_dir(const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        return err_set("%s: exists and is not a folder", dir);
    }
    return err_set("%s: cannot create folder: %s", dir, strerror(errno));
}

static int write_one(const plot_chart *const *charts, int n, int cols, const char *dir,
                     const char *name, int w, int h, metrics_plot_report *rep) {
    char *path = join_path(dir, name);
    if (plot_grid_write_png(charts, n, cols, path, w, h) != 0) {
        free(path);
        return -1;
    }
    rep->written[rep->n_written++] = path;
    return 0;
}

static void widen_range(const dvec *d, double *lo, double *hi) {
    for (int i = 0; i < d->n; i++)
        if (isfinite(d->v[i])) *lo = fmin(*lo, d->v[i]), *hi = fmax(*hi, d->v[i]);
}

// All charts share the steps of the whole run on their x axis, so the panels line up.
static void align_steps(const metrics *m, plot_chart *const *charts, int n) {
    double lo = INFINITY, hi = -INFINITY;
    widen_range(&m->step, &lo, &hi);
    for (int i = 0; i < m->n_curves; i++) widen_range(&m->curves[i].step, &lo, &hi);
    for (int i = 0; i < n; i++)
        if (charts[i]) plot_chart_set_x_range(charts[i], lo, hi);
}

static int draw_all(const metrics *m, const char *out_dir, metrics_plot_report *rep) {
    enum { LOSS, LR, SCALE, ACC, SPEED, N_CHARTS };
    plot_chart *ch[N_CHARTS] = {
        loss_chart(m),
        training_chart(m, "Learning rate", "learning rate", &m->lr, 3),
        training_chart(m, "Logit scale", "logit scale", &m->logit_scale, 5),
        has_accuracy(m) ? accuracy_chart(m) : NULL,
        training_chart(m, "Throughput", "samples / s", &m->speed, 6),
    };
    align_steps(m, ch, N_CHARTS);
    const struct {
        const char *file;
        const plot_chart *chart;  // NULL: not drawn
    } singles[] = {{"loss.png", ch[LOSS]}, {"lr.png", ch[LR]}, {"logit_scale.png", ch[SCALE]},
                   {"zeroshot.png", ch[ACC]}};
    int rc = 0;
    for (int i = 0; i < (int)(sizeof singles / sizeof singles[0]) && rc == 0; i++) {
        const plot_chart *const *one = &singles[i].chart;
        if (*one) rc = write_one(one, 1, 1, out_dir, singles[i].file, CHART_W, CHART_H, rep);
    }
    const plot_chart *overview[4] = {ch[LOSS], ch[LR], ch[SCALE], ch[ACC] ? ch[ACC] : ch[SPEED]};
    if (rc == 0)
        rc = write_one(overview, 4, 2, out_dir, "overview.png", OVERVIEW_W, OVERVIEW_H, rep);
    for (int i = 0; i < N_CHARTS; i++) plot_chart_free(ch[i]);
    return rc;
}

int metrics_plot_run(const char *run_dir, const char *out_dir, metrics_plot_report *rep) {
    *rep = (metrics_plot_report){0};
    metrics m = {0};
    char *path = join_path(run_dir, "metrics.jsonl");
    char *default_out = join_path(run_dir, "plots");
    const char *dir = out_dir ? out_dir : default_out;
    int rc = read_metrics(path, &m, rep);
    if (rc == 0) rc = make_dir(dir);
    if (rc == 0) rc = draw_all(&m, dir, rep);
    metrics_free(&m);
    free(path);
    free(default_out);
    return rc;
}

void metrics_plot_report_free(metrics_plot_report *rep) {
    for (int i = 0; i < rep->n_warnings; i++) free(rep->warnings[i]);
    for (int i = 0; i < rep->n_written; i++) free(rep->written[i]);
    *rep = (metrics_plot_report){0};
}
