// fuzz_driver: a main() for the fuzz harnesses where libFuzzer is not available (gcc, the CI's
// sanitizer build). It runs every file of the corpus folders given, then seeded random mutations
// of them (bit flips, byte edits, interesting values, numbers in text swapped for extreme ones,
// insertions, deletions, copies within and across inputs, truncations) until -runs or
// -max_total_time is reached, calling LLVMFuzzerTestOneInput on each. There is no coverage
// feedback: it finds what the sanitizers catch near the seeds; libFuzzer (CLIPC_FUZZ=ON with
// clang) searches much wider. On a crash, or an input running over -timeout seconds, the input is
// saved as crash-<harness>-<run> in the current folder.
// Usage: fuzz_X [-runs=N] [-max_total_time=S] [-timeout=S] [-seed=N] [-max_len=N] CORPUS...
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
#if defined(__SANITIZE_ADDRESS__)
void __sanitizer_set_death_callback(void (*callback)(void));
#endif

typedef struct {
    uint8_t *data;
    size_t size;
} input;

static input *corpus;
static int n_corpus;
static const uint8_t *current;  // the input being run, saved if it crashes
static size_t current_size;
static char crash_path[256];

// ---- crashes ---------------------------------------------------------------------------------

static void save_current(void) {
    if (!current) return;  // not inside an execution (a crash at exit)
    int fd = open(crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    ssize_t ignored = write(fd, current, current_size);
    (void)ignored;
    close(fd);
    static const char msg[] = "fuzz_driver: crashing input saved\n";
    ignored = write(2, msg, sizeof msg - 1);
}

static void on_signal(int sig) {
    save_current();
    if (sig == SIGALRM) {
        static const char msg[] = "fuzz_driver: timeout\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        sig = SIGABRT;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static long timeout_s = 10;

static void run_one(const uint8_t *data, size_t size, long run, const char *name) {
    current = data, current_size = size;
    snprintf(crash_path, sizeof crash_path, "crash-%s-%ld", name, run);
    alarm((unsigned)timeout_s);
    LLVMFuzzerTestOneInput(data, size);
    alarm(0);
}

// ---- corpus ----------------------------------------------------------------------------------

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    input in = {NULL, 0};
    uint8_t buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        in.data = xrealloc(in.data, in.size + n);
        memcpy(in.data + in.size, buf, n);
        in.size += n;
    }
    fclose(f);
    corpus = xrealloc(corpus, (size_t)(n_corpus + 1) * sizeof *corpus);
    corpus[n_corpus++] = in;
}

static int by_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// The files of a folder, in name order so that runs are reproducible.
static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        add_file(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    char **names = NULL;
    int n = 0;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') names = xrealloc(names, (size_t)(n + 1) * sizeof(char *)), names[n++] = xstrdup(e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof(char *), by_path);
    for (int i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        add_file(file);
        free(names[i]);
    }
    free(names);
}

// ---- mutations -------------------------------------------------------------------------------

static uint64_t rng_state;

static uint64_t next_u64(void) {  // splitmix64
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t below(size_t n) { return n ? (size_t)(next_u64() % n) : 0; }

static const uint8_t interesting_bytes[] = {0, 1, 0x7f, 0x80, 0xff, '"', '\\', '{', '}', '[', ']', ',', ':', '\n', '\t', '-', '0', '9', 'e'};
static const char *const interesting_numbers[] = {"0", "-1", "1", "2147483647", "2147483648", "-2147483649",
                                                  "4294967296", "9223372036854775807", "18446744073709551615",
                                                  "9007199254740993", "1e308", "-1e308", "1e-320", "0.5", "nan", "65536"};

static void insert(input *m, size_t at, const uint8_t *bytes, size_t n, size_t max_len) {
    if (m->size + n > max_len) return;
    memmove(m->data + at + n, m->data + at, m->size - at);
    memcpy(m->data + at, bytes, n);
    m->size += n;
}

// Replaces the decimal number around position at (if any) by an interesting one.
static void swap_number(input *m, size_t at, size_t max_len) {
    size_t lo = at, hi = at;
    while (lo < m->size && !(m->data[lo] >= '0' && m->data[lo] <= '9')) lo++;
    if (lo >= m->size) return;
    hi = lo;
    while (hi < m->size && m->data[hi] >= '0' && m->data[hi] <= '9') hi++;
    const char *num = interesting_numbers[below(sizeof interesting_numbers / sizeof *interesting_numbers)];
    memmove(m->data + lo, m->data + hi, m->size - hi);
    m->size -= hi - lo;
    insert(m, lo, (const uint8_t *)num, strlen(num), max_len);
}

static void mutate_once(input *m, size_t max_len) {
    size_t at = below(m->size + 1);
    switch (below(9)) {
    case 0: if (at < m->size) m->data[at] ^= (uint8_t)(1u << below(8)); break;
    case 1: if (at < m->size) m->data[at] = (uint8_t)next_u64(); break;
    case 2: if (at < m->size) m->data[at] = interesting_bytes[below(sizeof interesting_bytes)]; break;
    case 3: {
        uint8_t bytes[8];
        size_t n = 1 + below(8);
        for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)next_u64();
        insert(m, at, bytes, n, max_len);
        break;
    }
    case 4: {
        size_t n = below(m->size - at < 16 ? m->size - at + 1 : 17);
        memmove(m->data + at, m->data + at + n, m->size - at - n);
        m->size -= n;
        break;
    }
    case 5: {  // copy a chunk of itself to another place
        if (!m->size) break;
        size_t from = below(m->size), n = 1 + below(m->size - from < 32 ? m->size - from : 32);
        uint8_t chunk[32];
        memcpy(chunk, m->data + from, n);
        insert(m, at, chunk, n, max_len);
        break;
    }
    case 6: {  // splice in a chunk of another corpus entry
        const input *o = &corpus[below((size_t)n_corpus)];
        if (!o->size) break;
        size_t from = below(o->size), n = 1 + below(o->size - from < 64 ? o->size - from : 64);
        insert(m, at, o->data + from, n, max_len);
        break;
    }
    case 7: swap_number(m, at, max_len); break;
    default: m->size = at; break;  // truncate
    }
}

// ---- main ------------------------------------------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long flag(const char *arg, const char *name, long fallback) {
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 ? strtol(arg + n, NULL, 10) : fallback;
}

int main(int argc, char **argv) {
    long runs = 10000, max_time = 0, seed = 1, max_len = 1 << 16;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') continue;
        runs = flag(argv[i], "-runs=", runs);
        max_time = flag(argv[i], "-max_total_time=", max_time);
        seed = flag(argv[i], "-seed=", seed);
        max_len = flag(argv[i], "-max_len=", max_len);
        timeout_s = flag(argv[i], "-timeout=", timeout_s);
    }
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-') add_path(argv[i]);
    if (n_corpus == 0) add_file("/dev/null"), corpus[0].data = xmalloc(1);
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    signal(SIGSEGV, on_signal), signal(SIGABRT, on_signal), signal(SIGBUS, on_signal), signal(SIGFPE, on_signal);
    signal(SIGALRM, on_signal);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(save_current);
#endif
    double start = now_s();
    long done = 0;
    for (int i = 0; i < n_corpus; i++) run_one(corpus[i].data, corpus[i].size, done++, name);
    rng_state = (uint64_t)seed;
    input m = {xmalloc((size_t)max_len + 64), 0};
    while (done < runs && (max_time <= 0 || now_s() - start < (double)max_time)) {
        const input *base = &corpus[below((size_t)n_corpus)];
        m.size = base->size < (size_t)max_len ? base->size : (size_t)max_len;
        memcpy(m.data, base->data, m.size);
        for (size_t k = 1 + below(4); k > 0; k--) mutate_once(&m, (size_t)max_len);
        run_one(m.data, m.size, done++, name);
    }
    current = NULL;
    printf("%s: %ld executions (%d corpus files, seed %ld) in %.1f s, no crash\n", name, done, n_corpus, seed,
           now_s() - start);
    free(m.data);
    for (int i = 0; i < n_corpus; i++) free(corpus[i].data);
    free(corpus);
    return 0;
}
