#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fsutil.h"
#include "model/safetensors.h"

#define WRITING_PREFIX ".tmp-"  // being written
#define DELETING_PREFIX ".old-"  // being deleted

// ---- folders ---------------------------------------------------------------------------------

static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 ? fsync(fd) : -1;
    if (fd >= 0) close(fd);
    return rc == 0 ? 0 : err_set("%s: cannot sync the folder: %s", dir, strerror(errno));
}

// Deletes a checkpoint folder and the files in it (best effort: what remains is hidden or invalid).
static void remove_folder(const char *path) {
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char *file = fs_join(path, e->d_name);
            unlink(file);
            free(file);
        }
    if (d) closedir(d);
    rmdir(path);
}

// Hides a visible checkpoint folder with one rename, then deletes it: a kill part way never
// leaves a visible half-deleted checkpoint.
static void delete_checkpoint(const char *dir, const char *name) {
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/%s", dir, name);
    snprintf(to, sizeof to, "%s/" DELETING_PREFIX "%s-%ld", dir, name, (long)getpid());
    if (rename(from, to) == 0) remove_folder(to);
}

// True for ".tmp-<name>-<pid>" or ".old-<name>-<pid>" left by a process that no longer runs.
static bool is_stale(const char *name) {
    if (strncmp(name, WRITING_PREFIX, strlen(WRITING_PREFIX)) && strncmp(name, DELETING_PREFIX, strlen(DELETING_PREFIX)))
        return false;
    const char *dash = strrchr(name, '-');
    char *end = NULL;
    long pid = dash ? strtol(dash + 1, &end, 10) : 0;
    if (!end || *end || pid <= 0) return true;
    return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

// Removes what killed runs left behind: the hidden folders of dead processes.
static void remove_stale(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (is_stale(e->d_name)) {
            char *path = fs_join(dir, e->d_name);
            remove_folder(path);
            free(path);
        }
    if (d) closedir(d);
}

// Makes tmp visible as dir/name in one step. An existing dir/name is swapped with it atomically
// and then deleted; where the file system cannot swap (NFS), it is deleted first.
static int publish(const char *tmp, const char *dir, const char *name) {
    char target[4096];
    snprintf(target, sizeof target, "%s/%s", dir, name);
    if (rename(tmp, target) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY) return err_set("%s: cannot rename %s to it: %s", target, tmp, strerror(errno));
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, target, RENAME_EXCHANGE) == 0) {
            remove_folder(tmp);  // now the previous checkpoint
        } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
            delete_checkpoint(dir, name);
            if (rename(tmp, target) != 0) return err_set("%s: cannot rename %s to it: %s", target, tmp, strerror(errno));
        } else {
            return err_set("%s: cannot swap in %s: %s", target, tmp, strerror(errno));
        }
    }
    return sync_dir(dir);
}

// ---- writing ---------------------------------------------------------------------------------

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

static int save_state(const char *path, const char *step, const adamw *opt, const train_position *pos) {
    st_writer *w = st_writer_init();
    int n_opt = adamw_state_count(opt), n = n_opt + (pos->extra ? pos->extra->n : 0), rc = 0;
    void **buffers = xcalloc((size_t)(n ? n : 1), sizeof(void *));
    for (int i = 0; i < n_opt && rc == 0; i++) {
        const char *name;
        tensor *value;
        if ((rc = adamw_state_get(opt, i, &name, &value)) != 0) break;
        rc = add_tensor(w, name, value, &buffers[i]);
        tensor_free(value);
    }
    for (int i = n_opt; i < n && rc == 0; i++) {
        const param *p = &pos->extra->items[i - n_opt];
        size_t len = strlen("param.") + strlen(p->name) + 1;  // names have any length
        char *name = xmalloc(len);
        snprintf(name, len, "param.%s", p->name);
        rc = add_tensor(w, name, p->value, &buffers[i]);
        free(name);
    }
    int64_t scalar_shape[1] = {0}, loader_shape[1] = {(int64_t)pos->loader_state_size};
    if (rc == 0) rc = st_writer_add(w, "train.step", ST_DTYPE_I64, scalar_shape, 0, &pos->step);
    if (rc == 0) rc = st_writer_add(w, "train.epoch", ST_DTYPE_I64, scalar_shape, 0, &pos->epoch);
    if (rc == 0) rc = st_writer_add(w, "train.loader_state", ST_DTYPE_U8, loader_shape, 1, pos->loader_state);
    int64_t scaler_shape[1] = {2};
    double scaler[2] = {pos->scaler ? pos->scaler->scale : 0, pos->scaler ? (double)pos->scaler->growth_tracker : 0};
    if (rc == 0 && pos->scaler) rc = st_writer_add(w, "train.grad_scaler", ST_DTYPE_F64, scaler_shape, 1, scaler);
    if (rc == 0) rc = st_writer_set_metadata(w, "clipc.step", step);
    if (rc == 0) rc = st_writer_write(w, path);
    for (int i = 0; i < n; i++) free(buffers[i]);
    free(buffers);
    st_writer_free(w);
    return rc;
}

static int save_files(const char *folder, const clip_model *m, const adamw *opt, const train_position *pos) {
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, pos->step);
    const char *meta[] = {"clipc.step", step, NULL};
    char *weights = fs_join(folder, CHECKPOINT_WEIGHTS), *state = fs_join(folder, CHECKPOINT_STATE);
    int rc = clip_model_save(m, weights, meta);
    if (rc == 0) rc = save_state(state, step, opt, pos);
    free(weights);
    free(state);
    return rc;
}

int checkpoint_save(const char *dir, const char *name, const clip_model *m, const adamw *opt,
                    const train_position *pos) {
    remove_stale(dir);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/" WRITING_PREFIX "%s-%ld", dir, name, (long)getpid());
    if (mkdir(tmp, 0755) != 0) return err_set("saving checkpoint %s/%s: %s: %s", dir, name, tmp, strerror(errno));
    int rc = save_files(tmp, m, opt, pos);
    if (rc == 0) rc = publish(tmp, dir, name);
    if (rc != 0) {
        remove_folder(tmp);
        return err_prefix("saving checkpoint %s/%s", dir, name);
    }
    return 0;
}

// ---- reading ---------------------------------------------------------------------------------

// The checkpoint folder of a path: the path itself, or the folder of a file in it.
static int checkpoint_folder(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (access(path, F_OK) != 0) return err_errno(path);
    if (fs_is_dir(path)) {
        snprintf(out, cap, "%s", path);
    } else if (!strcmp(base, CHECKPOINT_WEIGHTS) || !strcmp(base, CHECKPOINT_STATE)) {
        char *dir = fs_dirname(path);
        snprintf(out, cap, "%s", dir);
        free(dir);
    } else {
        return err_set("%s: not a checkpoint (a folder holding " CHECKPOINT_WEIGHTS " and " CHECKPOINT_STATE ")", path);
    }
    return 0;
}

static int64_t read_i64(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->dtype != ST_DTYPE_I64 || t->numel != 1) return err_set("%s: missing or malformed '%s'", st_path(f), name), -1;
    return *(const int64_t *)t->data;
}

// Reads every byte of every tensor, so that a damaged file fails here rather than mid-load.
static uint64_t touch_tensors(const st_file *f) {
    uint64_t sum = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        const uint8_t *p = t->data;
        for (size_t k = 0; k < t->nbytes; k += 64) sum += p[k];
    }
    return sum;
}

// Both files' steps agree with each other and with the state's position.
static int64_t check_pair(const st_file *weights, const st_file *state) {
    const char *ws = st_metadata(weights, "clipc.step"), *ss = st_metadata(state, "clipc.step");
    if (!ws) return err_set("%s: no 'clipc.step' in the metadata (not a clipc checkpoint)", st_path(weights)), -1;
    if (!ss || strcmp(ws, ss) != 0)
        return err_set("%s: mismatched checkpoint: state is from step %s, weights from step %s", st_path(state),
                       ss ? ss : "?", ws), -1;
    int64_t step = read_i64(state, "train.step");
    if (step < 0 || read_i64(state, "train.epoch") < 0) return -1;
    const st_tensor *ls = st_find(state, "train.loader_state");
    if (!ls || ls->dtype != ST_DTYPE_U8) return err_set("%s: missing or malformed 'train.loader_state'", st_path(state)), -1;
    if (strtoll(ws, NULL, 10) != step)
        return err_set("%s: 'train.step' is %" PRId64 " but the metadata says step %s", st_path(state), step, ws), -1;
    return step;
}

int64_t checkpoint_check(const char *path, bool full) {
    char dir[4096];
    if (checkpoint_folder(path, dir, sizeof dir) != 0) return -1;
    char *wpath = fs_join(dir, CHECKPOINT_WEIGHTS), *spath = fs_join(dir, CHECKPOINT_STATE);
    st_file *w = st_open(wpath), *s = w ? st_open(spath) : NULL;
    int64_t step = w && s ? check_pair(w, s) : -1;
    if (step >= 0 && full) {
        volatile uint64_t sum = touch_tensors(w) + touch_tensors(s);
        (void)sum;
    }
    st_close(w);
    st_close(s);
    free(wpath);
    free(spath);
    return step;
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

// The loss scaler's state when the run has a scaler and the file one (a checkpoint of another
// precision leaves the scaler at its start, as OpenCLIP does).
static int load_scaler(const st_file *f, grad_scaler *scaler) {
    const st_tensor *t = st_find(f, "train.grad_scaler");
    if (!scaler || !t) return 0;
    double v[2] = {0, -1};
    if (t->dtype == ST_DTYPE_F64 && t->numel == 2) memcpy(v, t->data, sizeof v);
    if (!(v[0] > 0) || !(v[1] >= 0))
        return err_set("%s: malformed 'train.grad_scaler' (F64 scale > 0, growth tracker >= 0)", st_path(f));
    scaler->scale = v[0];
    scaler->growth_tracker = (int64_t)v[1];
    return 0;
}

static int load_state(const st_file *f, adamw *opt, train_position *pos) {
    pos->step = read_i64(f, "train.step");
    pos->epoch = read_i64(f, "train.epoch");
    const st_tensor *ls = st_find(f, "train.loader_state");
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
    if (load_scaler(f, pos->scaler) != 0) return -1;
    pos->loader_state_size = ls->nbytes;
    pos->loader_state = xmalloc(ls->nbytes ? ls->nbytes : 1);
    memcpy(pos->loader_state, ls->data, ls->nbytes);
    return 0;
}

// The run must normalize images as the checkpoint's run did (--image-mean/--image-std are saved in
// the weights' config): resuming with other values would silently change the data.
static int check_normalization(const st_file *w, const clip_model *m) {
    const char *json = st_metadata(w, "clipc.config");
    clip_config saved;
    if (!json || clip_config_parse(json, st_path(w), &saved) != 0) return json ? -1 : 0;
    const float *a = saved.preprocess.mean, *b = saved.preprocess.std, *x = m->cfg.preprocess.mean, *y = m->cfg.preprocess.std;
    if (!memcmp(a, x, sizeof saved.preprocess.mean) && !memcmp(b, y, sizeof saved.preprocess.std)) return 0;
    return err_set("%s: trained with image mean %g %g %g and std %g %g %g, but this run normalizes with mean %g %g %g and std "
                   "%g %g %g: pass the run's --image-mean and --image-std", st_path(w), a[0], a[1], a[2], b[0], b[1], b[2],
                   x[0], x[1], x[2], y[0], y[1], y[2]);
}

int checkpoint_load(const char *path, clip_model *m, adamw *opt, train_position *pos) {
    char dir[4096];
    if (checkpoint_folder(path, dir, sizeof dir) != 0) return -1;
    char *wpath = fs_join(dir, CHECKPOINT_WEIGHTS), *spath = fs_join(dir, CHECKPOINT_STATE);
    st_file *w = st_open(wpath), *s = w ? st_open(spath) : NULL;
    int rc = w && s && check_pair(w, s) >= 0 ? 0 : -1;
    if (rc == 0) rc = clip_model_load(m, wpath);
    if (rc == 0) rc = check_normalization(w, m);
    if (rc == 0) rc = load_state(s, opt, pos);
    st_close(w);
    st_close(s);
    free(wpath);
    free(spath);
    return rc;
}

// ---- listing ---------------------------------------------------------------------------------

typedef struct {
    char name[256];
    int64_t step;  // -1: fails the check
} entry;

// Newest first; equal steps by name, so that the choice never depends on readdir's order.
static int by_step(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->step != y->step) return (x->step < y->step) - (x->step > y->step);
    return strcmp(x->name, y->name);
}

// Adds err_msg(), which names the file at fault.
static void skipped_add(checkpoint_skipped *s) {
    if (!s) return;
    s->lines = xrealloc(s->lines, (size_t)(s->n + 1) * sizeof(char *));
    s->lines[s->n++] = xstrdup(err_msg());
}

void checkpoint_skipped_free(checkpoint_skipped *s) {
    for (int i = 0; i < s->n; i++) free(s->lines[i]);
    free(s->lines);
    s->lines = NULL;
    s->n = 0;
}

// The visible entries of dir, each given the step of the light check (-1 and a skipped line when it
// fails), newest first. numbered_only: only epoch_N and step_N. Returns the count, or -1.
static int list_checkpoints(const char *dir, bool numbered_only, entry **out, checkpoint_skipped *skipped) {
    DIR *d = opendir(dir);
    if (!d) return err_errno(dir);
    entry *list = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof list->name) continue;
        bool numbered = !strncmp(e->d_name, "step_", 5) || (!strncmp(e->d_name, "epoch_", 6) && strcmp(e->d_name, "epoch_latest"));
        if (numbered_only && !numbered) continue;
        list = xrealloc(list, (size_t)(n + 1) * sizeof *list);
        snprintf(list[n].name, sizeof list[n].name, "%s", e->d_name);
        char *path = fs_join(dir, e->d_name);
        list[n].step = checkpoint_check(path, false);
        if (list[n++].step < 0) skipped_add(skipped);
        free(path);
    }
    closedir(d);
    qsort(list, (size_t)n, sizeof *list, by_step);
    *out = list;
    return n;
}

int checkpoint_find_latest(const char *dir, char *out, size_t cap, checkpoint_skipped *skipped) {
    remove_stale(dir);
    entry *list = NULL;
    int n = list_checkpoints(dir, false, &list, skipped), found = -1;
    for (int i = 0; i < n && found < 0 && list[i].step >= 0; i++) {
        char *path = fs_join(dir, list[i].name);
        if (checkpoint_check(path, true) >= 0) found = i, snprintf(out, cap, "%s", path);
        else skipped_add(skipped);
        free(path);
    }
    free(list);
    if (n < 0) return -1;
    if (found >= 0) return 0;
    if (n == 0) return 1;
    return err_set("%s: none of its %d entries is a usable checkpoint", dir, n);
}

void checkpoint_prune(const char *dir, int keep) {
    entry *list = NULL;
    int n = keep > 0 ? list_checkpoints(dir, true, &list, NULL) : 0, usable = 0;
    for (int i = 0; i < n; i++) {
        if (list[i].step < 0) continue;
        if (++usable > keep) delete_checkpoint(dir, list[i].name);
    }
    free(list);
}

void checkpoint_delete_previous_epochs(const char *dir, int64_t epoch) {
    entry *list = NULL;
    int n = list_checkpoints(dir, true, &list, NULL);
    for (int i = 0; i < n; i++) {
        char *end = NULL;
        long long e = strncmp(list[i].name, "epoch_", 6) ? -1 : strtoll(list[i].name + 6, &end, 10);
        if (e >= 0 && end && !*end && e < epoch) delete_checkpoint(dir, list[i].name);
    }
    free(list);
}
