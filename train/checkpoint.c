#include "train/checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "model/safetensors.h"

#define STATE_SUFFIX ".state.safetensors"
#define WEIGHTS_SUFFIX ".safetensors"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// The stem of a checkpoint path: "dir/epoch_3" from any of the pair's names.
static void checkpoint_stem(const char *path, char *stem, size_t cap) {
    snprintf(stem, cap, "%s", path);
    if (ends_with(stem, STATE_SUFFIX)) stem[strlen(stem) - strlen(STATE_SUFFIX)] = '\0';
    else if (ends_with(stem, WEIGHTS_SUFFIX)) stem[strlen(stem) - strlen(WEIGHTS_SUFFIX)] = '\0';
}

static st_dtype st_dtype_of(tensor_dtype d) {
    switch (d) {
    case TENSOR_F32: return ST_DTYPE_F32;
    case TENSOR_F16: return ST_DTYPE_F16;
    case TENSOR_BF16: return ST_DTYPE_BF16;
    case TENSOR_F64: return ST_DTYPE_F64;
    case TENSOR_I64: return ST_DTYPE_I64;
    case TENSOR_I32: return ST_DTYPE_I32;
    case TENSOR_U8: return ST_DTYPE_U8;
    case TENSOR_BOOL: return ST_DTYPE_BOOL;
    }
    return ST_DTYPE_F32;
}

// Adds value under name, its bytes copied to the host into *buffer (freed by the caller).
static int add_tensor(st_writer *w, const char *name, const tensor *value, void **buffer) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(value, shape);
    tensor_dtype dt = tensor_get_dtype(value);
    size_t nbytes = (size_t)tensor_numel(value) * tensor_dtype_size(dt);
    *buffer = xmalloc(nbytes ? nbytes : 1);
    if (tensor_to_host(value, *buffer, nbytes) != 0) return -1;
    return st_writer_add(w, name, st_dtype_of(dt), shape, ndim, *buffer);
}

static int save_state(const char *path, const char *weights_name, const adamw *opt, const train_position *pos) {
    st_writer *w = st_writer_init();
    int n_opt = adamw_state_count(opt), n = n_opt + (pos->extra ? pos->extra->n : 0), rc = 0;
    void **buffers = xcalloc((size_t)n, sizeof(void *));
    for (int i = 0; i < n_opt && rc == 0; i++) {
        const char *name;
        tensor *value;
        if ((rc = adamw_state_get(opt, i, &name, &value)) != 0) break;
        rc = add_tensor(w, name, value, &buffers[i]);
        tensor_free(value);
    }
    for (int i = n_opt; i < n && rc == 0; i++) {
        const param *p = &pos->extra->items[i - n_opt];
        char name[128];
        snprintf(name, sizeof name, "param.%s", p->name);
        rc = add_tensor(w, name, p->value, &buffers[i]);
    }
    int64_t scalar_shape[1] = {0}, loader_shape[1] = {(int64_t)pos->loader_state_size};
    if (rc == 0) rc = st_writer_add(w, "train.step", ST_DTYPE_I64, scalar_shape, 0, &pos->step);
    if (rc == 0) rc = st_writer_add(w, "train.epoch", ST_DTYPE_I64, scalar_shape, 0, &pos->epoch);
    if (rc == 0) rc = st_writer_add(w, "train.loader_state", ST_DTYPE_U8, loader_shape, 1, pos->loader_state);
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, pos->step);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.weights", weights_name);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.step", step);
    if (rc == 0) rc = st_writer_write(w, path);
    for (int i = 0; i < n; i++) free(buffers[i]);
    free(buffers);
    st_writer_free(w);
    return rc;
}

int checkpoint_save(const char *dir, const char *stem, const clip_model *m, const adamw *opt,
                    const train_position *pos) {
    char weights[4096], state[4096], weights_name[512], step[32];
    snprintf(weights, sizeof weights, "%s/%s" WEIGHTS_SUFFIX, dir, stem);
    snprintf(state, sizeof state, "%s/%s" STATE_SUFFIX, dir, stem);
    snprintf(weights_name, sizeof weights_name, "%s" WEIGHTS_SUFFIX, stem);
    snprintf(step, sizeof step, "%" PRId64, pos->step);
    const char *meta[] = {"clipc.step", step, NULL};
    if (clip_model_save(m, weights, meta) != 0) return err_prefix("saving checkpoint %s", weights);
    if (save_state(state, weights_name, opt, pos) != 0) return err_prefix("saving checkpoint %s", state);
    return 0;
}

static int64_t read_i64(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_DTYPE_I64 || t->numel != 1) return err_set("%s: missing or malformed '%s'", st_path(f), name), -1;
    return *(const int64_t *)t->data;
}

// The "param.<name>" entries into pos->extra: exactly its parameters, with their shapes.
static int load_extra(const st_file *f, param_list *extra) {
    int found = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (strncmp(t->name, "param.", 6) != 0) continue;
        param *p = extra ? param_list_find(extra, t->name + 6) : NULL;
        if (!p) return err_set("%s: holds parameter '%s', which this run does not have", st_path(f), t->name + 6);
        if (t->dtype != ST_DTYPE_F32 || t->numel != tensor_numel(p->value))
            return err_set("%s: '%s' is not F32 with %lld elements", st_path(f), t->name, (long long)tensor_numel(p->value));
        if (tensor_copy_from_host(p->value, t->data, t->nbytes) != 0) return err_prefix("%s", st_path(f));
        found++;
    }
    if (extra && found != extra->n)
        return err_set("%s: holds %d of this run's %d parameters outside the model (%s, ...)", st_path(f), found, extra->n,
                       extra->items[0].name);
    return 0;
}

static int load_state(const st_file *f, adamw *opt, train_position *pos) {
    if ((pos->step = read_i64(f, "train.step")) < 0 || (pos->epoch = read_i64(f, "train.epoch")) < 0) return -1;
    const st_tensor *ls = st_find(f, "train.loader_state");
    if (!ls || ls->dtype != ST_DTYPE_U8) return err_set("%s: missing or malformed 'train.loader_state'", st_path(f));
    int expected = adamw_state_count(opt), found = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        if (strncmp(t->name, "optimizer.", 10) != 0) continue;
        tensor_dtype dt = t->dtype == ST_DTYPE_I64 ? TENSOR_I64 : TENSOR_F32;
        if (t->dtype != ST_DTYPE_I64 && t->dtype != ST_DTYPE_F32)
            return err_set("%s: '%s' has dtype %s", st_path(f), t->name, st_dtype_name(t->dtype));
        tensor *value = tensor_from_host(t->data, t->shape, t->ndim, dt, false);
        int rc = adamw_state_set(opt, t->name, value);
        tensor_free(value);
        if (rc != 0) return err_prefix("%s", st_path(f));
        found++;
    }
    if (found != expected)
        return err_set("%s: holds %d optimizer entries, the model's optimizer has %d (another model or frozen towers?)",
                       st_path(f), found, expected);
    if (load_extra(f, pos->extra) != 0) return -1;
    pos->loader_state_size = ls->nbytes;
    pos->loader_state = xmalloc(ls->nbytes ? ls->nbytes : 1);
    memcpy(pos->loader_state, ls->data, ls->nbytes);
    return 0;
}

int checkpoint_load(const char *path, clip_model *m, adamw *opt, train_position *pos) {
    char stem[4096], weights[4200], state[4200];
    checkpoint_stem(path, stem, sizeof stem);
    snprintf(weights, sizeof weights, "%s" WEIGHTS_SUFFIX, stem);
    snprintf(state, sizeof state, "%s" STATE_SUFFIX, stem);
    st_file *sf = st_open(state);
    if (!sf) return -1;
    const char *state_step = st_metadata(sf, "clipc.step");
    st_file *wf = st_open(weights);
    int rc = wf ? 0 : -1;
    if (rc == 0) {
        const char *weights_step = st_metadata(wf, "clipc.step");
        if (!state_step || !weights_step || strcmp(state_step, weights_step) != 0)
            rc = err_set("%s: mismatched checkpoint: state is from step %s, weights from step %s", state,
                         state_step ? state_step : "?", weights_step ? weights_step : "?");
        st_close(wf);
    }
    if (rc == 0) rc = clip_model_load(m, weights);
    if (rc == 0) rc = load_state(sf, opt, pos);
    st_close(sf);
    return rc;
}

// Step of a checkpoint from its state file's metadata; -1 when unreadable.
static int64_t checkpoint_step(const char *state_path) {
    st_file *f = st_open(state_path);
    if (!f) return -1;
    const char *s = st_metadata(f, "clipc.step");
    int64_t step = s ? strtoll(s, NULL, 10) : -1;
    st_close(f);
    return step;
}

int checkpoint_find_latest(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d) return err_errno(dir);
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, STATE_SUFFIX)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int64_t step = checkpoint_step(path);
        if (step > best) best = step, snprintf(out, cap, "%s", path);
    }
    closedir(d);
    return best >= 0 ? 0 : err_set("%s: no checkpoint to resume from", dir);
}

typedef struct {
    char stem[512];
    int64_t step;
} numbered;

static int by_step(const void *a, const void *b) {
    int64_t x = ((const numbered *)a)->step, y = ((const numbered *)b)->step;
    return (x < y) - (x > y);  // newest first
}

void checkpoint_prune(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d || keep <= 0) {
        if (d) closedir(d);
        return;
    }
    numbered *list = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, STATE_SUFFIX) || strstr(e->d_name, "latest")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        list = xrealloc(list, (size_t)(n + 1) * sizeof *list);
        checkpoint_stem(path, list[n].stem, sizeof list[n].stem);
        list[n++].step = checkpoint_step(path);
    }
    closedir(d);
    qsort(list, (size_t)n, sizeof *list, by_step);
    for (int i = keep; i < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s" STATE_SUFFIX, list[i].stem);
        unlink(path);  // state first: a weights file alone is never taken for a checkpoint
        snprintf(path, sizeof path, "%s" WEIGHTS_SUFFIX, list[i].stem);
        unlink(path);
    }
    free(list);
}
