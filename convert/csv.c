// The CSV/TSV source of `clipc shards`: a header row naming the columns, then one image path and
// caption a row (OpenCLIP's --csv-img-key / --csv-caption-key / --csv-separator). Fields may be
// quoted with '"' (a doubled quote inside stands for one), as pandas reads them.
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "convert/sources.h"

typedef struct {
    const char *p, *end;
    char sep;
    int line;
} csv_reader;

typedef struct {
    char **fields;
    int n, cap;
} csv_row;

static void row_push(csv_row *r, char *field) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 8;
        r->fields = xrealloc(r->fields, (size_t)r->cap * sizeof(char *));
    }
    r->fields[r->n++] = field;
}

static void row_clear(csv_row *r) {
    for (int i = 0; i < r->n; i++) free(r->fields[i]);
    r->n = 0;
}

// Reads one field; stops at the separator, the end of the line or the end of the text.
static int read_field(csv_reader *c, const char *path, char **out) {
    size_t cap = 64, n = 0;
    char *f = xmalloc(cap);
    bool quoted = c->p < c->end && *c->p == '"';
    int start_line = c->line;
    if (quoted) c->p++;
    for (; c->p < c->end; c->p++) {
        char ch = *c->p;
        if (quoted && ch == '"') {
            if (c->p + 1 < c->end && c->p[1] == '"') c->p++;
            else { quoted = false; continue; }
        } else if (!quoted && (ch == c->sep || ch == '\n' || ch == '\r')) {
            break;
        }
        if (quoted && ch == '\n') c->line++;
        if (n + 2 > cap) f = xrealloc(f, cap *= 2);
        f[n++] = ch;
    }
    f[n] = '\0';
    if (quoted) {
        free(f);
        return err_set("%s:%d: unterminated quoted field", path, start_line);
    }
    *out = f;
    return 0;
}

// Reads one row; returns 1, 0 at the end of the text, -1 on error. Blank lines are skipped.
static int read_row(csv_reader *c, const char *path, csv_row *row) {
    row_clear(row);
    while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) c->line += *c->p++ == '\n';
    if (c->p >= c->end) return 0;
    for (;;) {
        char *f = NULL;
        if (read_field(c, path, &f)) return -1;
        row_push(row, f);
        if (c->p < c->end && *c->p == c->sep) {
            c->p++;
            continue;
        }
        return 1;
    }
}

static char parse_separator(const char *s) {
    if (!strcmp(s, "\\t")) return '\t';
    return strlen(s) == 1 ? s[0] : 0;
}

static int find_column(const csv_row *header, const char *key, const char *path) {
    for (int i = 0; i < header->n; i++)
        if (!strcmp(header->fields[i], key)) return i;
    return err_set("%s: no column '%s' in the header (check --csv-img-key, --csv-caption-key, --csv-separator)",
                   path, key);
}

static int read_rows(const convert_options *o, csv_reader *c, int img_col, int cap_col, source_list *out) {
    csv_row row = {0};
    int rc;
    while ((rc = read_row(c, o->input, &row)) == 1) {
        int line = c->line;
        int need = (img_col > cap_col ? img_col : cap_col) + 1;
        if (row.n < need) {
            rc = err_set("%s:%d: %d fields, the header has more", o->input, line, row.n);
            break;
        }
        const char *img = row.fields[img_col];
        char *path = o->image_root && img[0] != '/' ? fs_join(o->image_root, img) : xstrdup(img);
        sources_add(out, path, row.fields[cap_col], img, -1);
        free(path);
    }
    row_clear(&row);
    free(row.fields);
    return rc;
}

int sources_read_csv(const convert_options *o, source_list *out) {
    char sep = parse_separator(o->csv_separator);
    if (!sep) return err_set("--csv-separator must be one character (or \\t), not '%s'", o->csv_separator);
    size_t size = 0;
    char *text = (char *)fs_read_all(o->input, &size);
    if (!text) return -1;
    csv_reader c = {text, text + size, sep, 1};
    csv_row header = {0};
    int rc = read_row(&c, o->input, &header);
    if (rc == 0) rc = err_set("%s: empty file (no header row)", o->input);
    int img_col = rc == 1 ? find_column(&header, o->csv_img_key, o->input) : -1;
    int cap_col = img_col >= 0 ? find_column(&header, o->csv_caption_key, o->input) : -1;
    rc = cap_col >= 0 ? read_rows(o, &c, img_col, cap_col, out) : -1;
    row_clear(&header);
    free(header.fields);
    free(text);
    return rc;
}
