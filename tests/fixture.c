#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/error.h"
#include "model/safetensors.h"

tensor *fixture_tensor(const char *path, const char *name) {
    st_file *f = st_open(path);
    if (!f) return NULL;
    const st_tensor *t = st_find(f, name);
    tensor *out = NULL;
    if (!t) err_set("%s: no tensor '%s'", path, name);
    else if (t->dtype != ST_DTYPE_F32 && t->dtype != ST_DTYPE_I64)
        err_set("%s: '%s' is %s, not F32 or I64", path, name, st_dtype_name(t->dtype));
    else out = tensor_from_host(t->data, t->shape, t->ndim, t->dtype == ST_DTYPE_I64 ? TENSOR_I64 : TENSOR_F32, false);
    st_close(f);
    return out;
}

tensor *fixture_tensor_in(const char *dir, const char *file, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return fixture_tensor(path, name);
}

double fixture_max_diff(const char *path, const char *name, const tensor *got, double *max_abs) {
    tensor *want = fixture_tensor(path, name);
    *max_abs = 0;
    if (!want || !got || tensor_numel(want) != tensor_numel(got)) {
        tensor_free(want);
        return NAN;
    }
    size_t n = (size_t)tensor_numel(want);
    float *w = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    tensor *got_f32 = tensor_to_dtype(got, TENSOR_F32);
    double max_diff = NAN;
    if (tensor_to_host(want, w, n * sizeof(float)) == 0 && tensor_to_host(got_f32, g, n * sizeof(float)) == 0) {
        max_diff = 0;
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)g[i] - (double)w[i]);
            if (!(d <= max_diff)) max_diff = d;  // a NaN stays NaN
            if (fabs(w[i]) > *max_abs) *max_abs = fabs(w[i]);
        }
    }
    free(w);
    free(g);
    tensor_free(got_f32);
    tensor_free(want);
    return max_diff;
}
