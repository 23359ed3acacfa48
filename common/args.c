#include "common/args.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *row = xmalloc((lb + 1) * sizeof(int));
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int best = diag + cost;
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}

const char *args_nearest(const char *word, const char *const *candidates, int n) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(word, candidates[i]);
        if (d < best_d) best_d = d, best = candidates[i];
    }
    int limit = (int)strlen(word) / 2 + 1;
    return best_d <= limit ? best : NULL;
}

// Normalizes '_' to '-' so JSON keys may use either spelling.
static void canonical_name(const char *in, char *out, size_t cap) {
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) out[i] = in[i] == '_' ? '-' : in[i];
    out[i] = '\0';
}

static arg_spec *find_spec(arg_spec *specs, int n, const char *name) {
    char canon[128];
    canonical_name(name, canon, sizeof canon);
    for (int i = 0; i < n; i++)
        if (strcmp(specs[i].name, canon) == 0) return &specs[i];
    return NULL;
}

static int unknown_option(const arg_spec *specs, int n, const char *name, const char *where) {
    const char **names = xmalloc((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) names[i] = specs[i].name;
    const char *dashes = strncmp(name, "--", 2) == 0 ? "--" : "";
    char canon[128];
    canonical_name(name + strlen(dashes), canon, sizeof canon);
    const char *near = args_nearest(canon, names, n);
    free(names);
    if (near) return err_set("%sunknown option '%s' (did you mean '%s%s'?)", where, name, dashes, near);
    return err_set("%sunknown option '%s' (see --help)", where, name);
}

// "a b c" or "a,b,c" (3 numbers) or "a" (for all three) into out[3].
static int set_float3(const arg_spec *s, const char *value, const char *where, double *out) {
    double v[4];
    int n = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        char *end = NULL;
        errno = 0;
        double x = strtod(p, &end);
        if (n == 4 || errno || end == p || !isfinite(x) || (*end && *end != ' ' && *end != ','))
            return err_set("%soption '%s' expects 3 numbers (or 1 for all three), got '%s'", where, s->name, value);
        v[n++] = x;
        p = end;
    }
    if (n != 1 && n != 3)
        return err_set("%soption '%s' expects 3 numbers (or 1 for all three), got %d: '%s'", where, s->name, n, value);
    for (int i = 0; i < 3; i++) out[i] = v[n == 1 ? 0 : i];
    return 0;
}

static int set_value(arg_spec *s, const char *value, const char *where) {
    char *end = NULL;
    errno = 0;
    switch (s->type) {
    case ARG_STR:
        *(char **)s->dest = (char *)value;
        return 0;
    case ARG_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end)
            return err_set("%soption '%s' expects an integer, got '%s'", where, s->name, value);
        *(long *)s->dest = v;
        return 0;
    }
    case ARG_FLOAT: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            return err_set("%soption '%s' expects a number, got '%s'", where, s->name, value);
        *(double *)s->dest = v;
        return 0;
    }
    case ARG_FLAG:
        if (!strcmp(value, "true") || !strcmp(value, "1")) *(bool *)s->dest = true;
        else if (!strcmp(value, "false") || !strcmp(value, "0")) *(bool *)s->dest = false;
        else return err_set("%soption '%s' expects true or false, got '%s'", where, s->name, value);
        return 0;
    case ARG_FLOAT3:
        return set_float3(s, value, where, (double *)s->dest);
    }
    return err_set("%soption '%s' has an unknown type", where, s->name);
}

int args_parse(arg_spec *specs, int n_specs, int argc, char **argv, char **positional,
               int max_positional, int *n_positional) {
    int np = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (np >= max_positional) return err_set("unexpected argument '%s'", a);
            positional[np++] = argv[i];
            continue;
        }
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (len >= sizeof name) return err_set("option '%s' is too long", a);
        memcpy(name, a + 2, len);
        name[len] = '\0';
        arg_spec *s = find_spec(specs, n_specs, name);
        if (!s) return unknown_option(specs, n_specs, a, "");
        const char *value;
        if (eq) value = eq + 1;
        else if (s->type == ARG_FLAG) value = "true";
        else if (s->type == ARG_FLOAT3) value = NULL;
        else if (i + 1 < argc) value = argv[++i];
        else return err_set("option '--%s' needs a value", s->name);
        if (!value) {  // ARG_FLOAT3: the numbers that follow, up to the next option
            char joined[256] = "";
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 && strlen(joined) + strlen(argv[i + 1]) + 2 < sizeof joined)
                strcat(strcat(joined, " "), argv[++i]);
            if (!joined[0]) return err_set("option '--%s' needs 3 numbers (or 1 for all three)", s->name);
            if (set_value(s, joined + 1, "") != 0) return -1;
        } else if (set_value(s, value, "") != 0) return -1;
        s->seen = true;
    }
    if (n_positional) *n_positional = np;
    return 0;
}

int args_apply_json(arg_spec *specs, int n_specs, const char *json_text, const char *source_name) {
    char where[512];
    snprintf(where, sizeof where, "%s: ", source_name);
    cJSON *root = cJSON_Parse(json_text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set("%snot a JSON object", where);
    }
    int rc = 0;
    for (cJSON *item = root->child; item && rc == 0; item = item->next) {
        arg_spec *s = find_spec(specs, n_specs, item->string);
        if (!s) {
            rc = unknown_option(specs, n_specs, item->string, where);
            break;
        }
        if (s->seen) continue;
        char buf[256];
        const char *value = NULL;
        if (s->type == ARG_FLOAT3 && cJSON_IsArray(item)) {  // [a, b, c] as "a b c" (set_float3 checks it)
            buf[0] = '\0';
            for (cJSON *x = item->child; x; x = x->next)
                if (cJSON_IsNumber(x)) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%.17g ", x->valuedouble);
                else snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "? ");
            value = buf;
        } else if (cJSON_IsString(item)) value = item->valuestring;
        else if (cJSON_IsBool(item)) value = cJSON_IsTrue(item) ? "true" : "false";
        else if (cJSON_IsNumber(item)) {
            if (s->type == ARG_INT) snprintf(buf, sizeof buf, "%.0f", item->valuedouble);
            else snprintf(buf, sizeof buf, "%.17g", item->valuedouble);
            value = buf;
        } else {
            rc = err_set("%skey '%s' must be a string, number or boolean", where, item->string);
            break;
        }
        // String options keep pointing at their value after the JSON tree is freed.
        if (s->type == ARG_STR) value = xstrdup(value);
        rc = set_value(s, value, where);
        s->seen = rc == 0;
    }
    cJSON_Delete(root);
    return rc;
}

void args_print(const arg_spec *specs, int n_specs, FILE *f, bool json) {
    cJSON *obj = json ? cJSON_CreateObject() : NULL;
    for (int i = 0; i < n_specs; i++) {
        const arg_spec *s = &specs[i];
        switch (s->type) {
        case ARG_STR: {
            const char *v = *(char **)s->dest;
            if (json) cJSON_AddItemToObject(obj, s->name, v ? cJSON_CreateString(v) : cJSON_CreateNull());
            else fprintf(f, "  %-22s %s\n", s->name, v ? v : "(none)");
            break;
        }
        case ARG_INT:
            if (json) cJSON_AddNumberToObject(obj, s->name, (double)*(long *)s->dest);
            else fprintf(f, "  %-22s %ld\n", s->name, *(long *)s->dest);
            break;
        case ARG_FLOAT:
            if (json) cJSON_AddNumberToObject(obj, s->name, *(double *)s->dest);
            else fprintf(f, "  %-22s %g\n", s->name, *(double *)s->dest);
            break;
        case ARG_FLAG:
            if (json) cJSON_AddBoolToObject(obj, s->name, *(bool *)s->dest);
            else fprintf(f, "  %-22s %s\n", s->name, *(bool *)s->dest ? "true" : "false");
            break;
        case ARG_FLOAT3: {
            const double *v = s->dest;
            if (json && !isnan(v[0])) cJSON_AddItemToObject(obj, s->name, cJSON_CreateDoubleArray(v, 3));
            else if (!json && isnan(v[0])) fprintf(f, "  %-22s (none)\n", s->name);
            else if (!json) fprintf(f, "  %-22s %g %g %g\n", s->name, v[0], v[1], v[2]);
            break;
        }
        }
    }
    if (json) {
        char *text = cJSON_Print(obj);
        fprintf(f, "%s\n", text);
        free(text);
        cJSON_Delete(obj);
    }
}

int args_parse_command(const char *cmd, const char *usage, arg_spec *specs, int n_specs, int argc, char **argv,
                       char **positional, int max_positional, int *n_positional) {
    int rc = args_parse(specs, n_specs, argc, argv, positional, max_positional, n_positional);
    if (rc == 1) {
        args_print_help(specs, n_specs, usage);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "clipc %s: %s\n", cmd, err_msg());
        return 2;
    }
    return -1;
}

void args_print_help(const arg_spec *specs, int n_specs, const char *usage) {
    printf("usage: %s\n\noptions:\n", usage);
    for (int i = 0; i < n_specs; i++) {
        const char *kind = specs[i].type == ARG_INT ? " N" : specs[i].type == ARG_FLOAT ? " X"
                           : specs[i].type == ARG_STR ? " S" : specs[i].type == ARG_FLOAT3 ? " X X X" : "";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", specs[i].name, kind);
        printf("  %-28s %s\n", left, specs[i].help);
    }
}

int args_split_list(const char *list, char ***items) {
    int n = 0, cap = 4;
    *items = xmalloc((size_t)cap * sizeof(char *));
    for (const char *p = list;;) {
        const char *end = strstr(p, "::");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == cap) *items = xrealloc(*items, (size_t)(cap *= 2) * sizeof(char *));
        (*items)[n] = xmalloc(len + 1);
        memcpy((*items)[n], p, len);
        (*items)[n++][len] = '\0';
        if (!end) return n;
        p = end + 2;
    }
}

void args_free_list(char **items, int n) {
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
}

int args_list_item(const char *option, const char *list, int i, int n, char **out) {
    char **items = NULL;
    int count = args_split_list(list, &items), rc = 0;
    if (count != 1 && count != n) rc = err_set("--%s: %d entries for %d (give one, or one for each)", option, count, n);
    else *out = xstrdup(items[count == 1 ? 0 : i]);
    args_free_list(items, count);
    return rc;
}
