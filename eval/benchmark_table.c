// The merged table of `clipc benchmark` (eval/benchmark.h): read back from the per-run JSON files.
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "eval/benchmark.h"

// CLIP_benchmark's metric names, the CSV's columns after the run's description.
static const char *const metric_columns[] = {
    "acc1", "acc5", "mean_per_class_recall",
    "image_retrieval_recall@1", "image_retrieval_recall@5", "image_retrieval_recall@10",
    "text_retrieval_recall@1", "text_retrieval_recall@5", "text_retrieval_recall@10",
};
#define N_METRICS (int)(sizeof metric_columns / sizeof metric_columns[0])

// The Markdown tables' metric columns, as indices into metric_columns.
static const int zeroshot_shown[] = {0, 1, 2};
static const int retrieval_shown[] = {6, 7, 8, 3, 4, 5};  // image->text R@1/5/10, then text->image

typedef struct {
    const benchmark_model *model;
    const benchmark_dataset *dataset;
    cJSON *json;
} table_row;

static double number_at(const cJSON *o, const char *object, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, object), key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

// The runs of the plan whose JSON exists, in plan order. Returns the count, or -1 naming a bad file.
static int load_rows(const benchmark_plan *p, table_row **rows) {
    *rows = xcalloc((size_t)(p->n_models * p->n_datasets), sizeof(table_row));
    int n = 0;
    for (int m = 0; m < p->n_models; m++)
        for (int d = 0; d < p->n_datasets; d++) {
            char *path = benchmark_run_path(p, m, d);
            char *text = access(path, F_OK) == 0 ? (char *)fs_read_all(path, NULL) : NULL;
            cJSON *json = text ? cJSON_Parse(text) : NULL;
            free(text);
            if (text && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(json, "metrics"))) {
                cJSON_Delete(json);
                for (int i = 0; i < n; i++) cJSON_Delete((*rows)[i].json);
                err_set("%s: not a benchmark result (no \"metrics\" object)", path);
                free(path);
                return -1;
            }
            if (json) (*rows)[n++] = (table_row){&p->models[m], &p->datasets[d], json};
            free(path);
        }
    return n;
}

// A CSV field, quoted when it holds a separator, a quote or a line break.
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_row(FILE *f, const table_row *r) {
    bool zeroshot = r->dataset->task == BENCHMARK_ZEROSHOT;
    csv_field(f, r->model->name), fputc(',', f);
    csv_field(f, r->model->pretrained), fputc(',', f);
    csv_field(f, r->dataset->name), fputc(',', f);
    fprintf(f, "%s,%.0f,", zeroshot ? "zeroshot_classification" : "zeroshot_retrieval",
            number_at(r->json, "details", zeroshot ? "n" : "n_images"));
    if (!zeroshot) fprintf(f, "%.0f", number_at(r->json, "details", "n_texts"));
    for (int k = 0; k < N_METRICS; k++) {
        double v = number_at(r->json, "metrics", metric_columns[k]);
        fputc(',', f);
        if (v >= 0) fprintf(f, "%.6f", v);
    }
    fputc('\n', f);
}

static char *make_csv(const table_row *rows, int n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs("model,pretrained,dataset,task,images,texts", f);
    for (int k = 0; k < N_METRICS; k++) fprintf(f, ",%s", metric_columns[k]);
    fputc('\n', f);
    for (int i = 0; i < n; i++) csv_row(f, &rows[i]);
    fclose(f);
    return text;
}

static void markdown_section(FILE *f, const table_row *rows, int n, benchmark_task task) {
    bool zeroshot = task == BENCHMARK_ZEROSHOT;
    int rows_of_task = 0;
    for (int i = 0; i < n; i++) rows_of_task += rows[i].dataset->task == task;
    if (!rows_of_task) return;
    fprintf(f, zeroshot ? "## Zero-shot classification (%%)\n\n| model | dataset | images | top-1 | top-5 | mean per-class recall |\n"
                          "|---|---|---:|---:|---:|---:|\n"
                        : "## Retrieval (%%)\n\n| model | dataset | images | texts | image->text R@1 | R@5 | R@10 "
                          "| text->image R@1 | R@5 | R@10 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    const int *shown_metrics = zeroshot ? zeroshot_shown : retrieval_shown;
    int n_shown = zeroshot ? (int)(sizeof zeroshot_shown / sizeof(int)) : (int)(sizeof retrieval_shown / sizeof(int));
    for (int i = 0; i < n; i++) {
        const table_row *r = &rows[i];
        if (r->dataset->task != task) continue;
        fprintf(f, "| %s | %s | %.0f |", r->model->name, r->dataset->name,
                number_at(r->json, "details", zeroshot ? "n" : "n_images"));
        if (!zeroshot) fprintf(f, " %.0f |", number_at(r->json, "details", "n_texts"));
        for (int k = 0; k < n_shown; k++)
            fprintf(f, " %.2f |", 100 * number_at(r->json, "metrics", metric_columns[shown_metrics[k]]));
        fputc('\n', f);
    }
    fputc('\n', f);
}

static char *make_markdown(const benchmark_plan *p, const table_row *rows, int n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    markdown_section(f, rows, n, BENCHMARK_ZEROSHOT);
    markdown_section(f, rows, n, BENCHMARK_RETRIEVAL);
    int planned = p->n_models * p->n_datasets;
    if (n < planned) fprintf(f, "%d of the %d runs have no results yet.\n", planned - n, planned);
    fclose(f);
    return text;
}

int benchmark_write_table(const benchmark_plan *p, char **markdown) {
    table_row *rows = NULL;
    int n = load_rows(p, &rows);
    if (n < 0) {
        free(rows);
        return -1;
    }
    char *csv = make_csv(rows, n), *md = make_markdown(p, rows, n);
    char *csv_path = fs_join(p->out_dir, "results.csv"), *md_path = fs_join(p->out_dir, "results.md");
    int rc = fs_mkdirs(p->out_dir) || atomic_file_write_bytes(csv_path, csv, strlen(csv)) ||
                     atomic_file_write_bytes(md_path, md, strlen(md)) ? -1 : n;
    for (int i = 0; i < n; i++) cJSON_Delete(rows[i].json);
    free(rows), free(csv), free(csv_path), free(md_path);
    if (rc < 0) free(md);
    else *markdown = md;
    return rc;
}
