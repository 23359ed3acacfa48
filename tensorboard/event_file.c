#include "tensorboard/event_file.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "tensorboard/event.pb-c.h"  // generated from tensorboard/event.proto at build time

struct tensorboard_file {
    FILE *f;
    char *path;
};

bool tensorboard_built(void) { return true; }

// TFRecord's masked CRC32C (ISA-L's crc32_iscsi is CRC32C without the final inversion).
static uint32_t masked_crc(const uint8_t *data, size_t n) {
    uint32_t crc = ~crc32_iscsi((unsigned char *)data, (int)n, 0xFFFFFFFFu);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Appends e as one record and flushes it.
static int write_event(tensorboard_file *t, Tensorboard__Event *e) {
    e->wall_time = wall_time();
    size_t n = tensorboard__event__get_packed_size(e);
    uint8_t *rec = xmalloc(n + 16);
    put_le(rec, n, 8);
    put_le(rec + 8, masked_crc(rec, 8), 4);
    tensorboard__event__pack(e, rec + 12);
    put_le(rec + 12 + n, masked_crc(rec + 12, n), 4);
    int rc = fwrite(rec, 1, n + 16, t->f) == n + 16 && fflush(t->f) == 0 ? 0 : err_errno(t->path);
    free(rec);
    return rc;
}

static char *event_file_name(const char *dir) {
    static atomic_int opened;  // tells apart the files a process opens within one second
    char host[256] = "localhost";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    size_t cap = strlen(dir) + strlen(host) + 80;
    char *path = xmalloc(cap);
    snprintf(path, cap, "%s/events.out.tfevents.%010lld.%s.%d.%d", dir, (long long)time(NULL), host, (int)getpid(),
             atomic_fetch_add(&opened, 1));
    return path;
}

tensorboard_file *tensorboard_open(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        err_set("%s: cannot create the TensorBoard folder: %s", dir, strerror(errno));
        return NULL;
    }
    char *path = event_file_name(dir);
    FILE *f = fopen(path, "wbx");  // never over an existing file
    if (!f) {
        err_set("%s: cannot write a TensorBoard event file there: %s", dir, strerror(errno));
        free(path);
        return NULL;
    }
    tensorboard_file *t = xmalloc(sizeof *t);
    *t = (tensorboard_file){.f = f, .path = path};
    Tensorboard__Event first = TENSORBOARD__EVENT__INIT;
    first.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    first.file_version = "brain.Event:2";
    if (write_event(t, &first) != 0) {
        tensorboard_close(t);
        return NULL;
    }
    return t;
}

void tensorboard_close(tensorboard_file *t) {
    if (!t) return;
    fclose(t->f);
    free(t->path);
    free(t);
}

const char *tensorboard_path(const tensorboard_file *t) { return t->path; }

int tensorboard_write_scalars(tensorboard_file *t, int64_t step, int n, const char *const *tags, const float *values) {
    Tensorboard__Summary__Value *v = xcalloc((size_t)n, sizeof *v), **pv = xcalloc((size_t)n, sizeof *pv);
    for (int i = 0; i < n; i++) {
        tensorboard__summary__value__init(&v[i]);
        v[i].tag = (char *)tags[i];
        v[i].value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
        v[i].simple_value = values[i];
        pv[i] = &v[i];
    }
    Tensorboard__Summary summary = TENSORBOARD__SUMMARY__INIT;
    summary.n_value = (size_t)n;
    summary.value = pv;
    Tensorboard__Event e = TENSORBOARD__EVENT__INIT;
    e.step = step;
    e.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    e.summary = &summary;
    int rc = write_event(t, &e);
    free(pv);
    free(v);
    return rc;
}
