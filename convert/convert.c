#include "convert/convert.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fsutil.h"
#include "image/image.h"
#include "shards/manifest.h"
#include "shards/shard.h"
#include "convert/sources.h"

void convert_options_default(convert_options *o) {
    memset(o, 0, sizeof *o);
    o->csv_img_key = "filepath";
    o->csv_caption_key = "title";
    o->csv_separator = "\t";
    o->shard_size = 10000;
    o->max_size = 256;
    o->quality = 90;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o->workers = cores > 0 ? (int)cores : 1;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *const source_names[] = {
    [CONVERT_SOURCE_CSV] = "csv",         [CONVERT_SOURCE_FOLDERS] = "folders",
    [CONVERT_SOURCE_FASHION_MNIST] = "fashion-mnist", [CONVERT_SOURCE_MNIST] = "mnist",
    [CONVERT_SOURCE_CIFAR10] = "cifar10", [CONVERT_SOURCE_CIFAR100] = "cifar100",
    [CONVERT_SOURCE_KARPATHY] = "karpathy", [CONVERT_SOURCE_WEBDATASET] = "webdataset",
};

static bool has_split(convert_source s) {
    return s == CONVERT_SOURCE_FASHION_MNIST || s == CONVERT_SOURCE_MNIST || s == CONVERT_SOURCE_CIFAR10 ||
           s == CONVERT_SOURCE_CIFAR100 || s == CONVERT_SOURCE_KARPATHY;
}

// The options that decide the shards' contents, as JSON: stored in every shard and the manifest.
static char *made_by_json(const convert_options *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tool", "clipc shards");
    cJSON_AddStringToObject(j, "source", source_names[o->source]);
    cJSON_AddStringToObject(j, "input", o->input);
    if (o->source == CONVERT_SOURCE_CSV) {
        cJSON_AddStringToObject(j, "csv_img_key", o->csv_img_key);
        cJSON_AddStringToObject(j, "csv_caption_key", o->csv_caption_key);
        cJSON_AddStringToObject(j, "csv_separator", o->csv_separator);
    }
    if ((o->source == CONVERT_SOURCE_CSV || o->source == CONVERT_SOURCE_KARPATHY) && o->image_root)
        cJSON_AddStringToObject(j, "image_root", o->image_root);
    if ((o->source == CONVERT_SOURCE_FOLDERS || o->source == CONVERT_SOURCE_MNIST) && o->class_names_file)
        cJSON_AddStringToObject(j, "class_names_file", o->class_names_file);
    if (has_split(o->source)) cJSON_AddStringToObject(j, "split", o->split);
    cJSON_AddNumberToObject(j, "shard_size", (double)o->shard_size);
    cJSON_AddNumberToObject(j, "max_size", o->max_size);
    cJSON_AddNumberToObject(j, "min_size", o->min_size);
    cJSON_AddBoolToObject(j, "upscale", o->upscale);
    cJSON_AddBoolToObject(j, "lossless", o->lossless);
    if (!o->lossless) cJSON_AddNumberToObject(j, "quality", o->quality);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

// ---- encoding one shard in parallel ----------------------------------------------------------

typedef struct {
    const convert_options *o;
    const source_item *items;  // this shard's inputs
    int64_t n;
    uint8_t **fetched;         // (n) image bytes of tar members, read before encoding (else NULL)
    size_t *fetched_sizes;     // (n)
    uint8_t **webp;            // (n) NULL when skipped
    size_t *sizes;             // (n)
    char **reasons;            // (n) why an input was skipped
    int64_t next;
    pthread_mutex_t mu;
} shard_job;

// In-memory pixels (gray or RGB) as an RGB image.
static void copy_pixels(const source_item *it, image_rgb *img) {
    size_t n = (size_t)it->width * (size_t)it->height;
    img->width = it->width, img->height = it->height;
    img->rgb = xmalloc(n * 3);
    if (it->channels == 3) memcpy(img->rgb, it->pixels, n * 3);
    else
        for (size_t p = 0; p < n; p++) memset(img->rgb + 3 * p, it->pixels[p], 3);
}

static int load_pixels(const shard_job *job, int64_t i, image_rgb *img) {
    const source_item *it = &job->items[i];
    int min_side = job->o->upscale ? 0 : job->o->max_size;
    if (it->error) return err_set("%s", it->error);
    if (it->pixels) {
        copy_pixels(it, img);
        return 0;
    }
    if (it->member) return image_decode(job->fetched[i], job->fetched_sizes[i], min_side, img);
    size_t size = 0;
    uint8_t *bytes = fs_read_all(it->path, &size);
    if (!bytes) return -1;
    int rc = image_decode(bytes, size, min_side, img);
    free(bytes);
    return rc;
}

static void encode_item(shard_job *job, int64_t i) {
    const convert_options *o = job->o;
    if (job->reasons[i]) return;  // its bytes could not be read
    image_rgb img = {0};
    int rc = load_pixels(job, i, &img);
    if (rc == 0) {
        int w = 0, h = 0;
        image_target_size(img.width, img.height, o->max_size, o->min_size, o->upscale, &w, &h);
        rc = image_encode_webp(&img, w, h, o->quality, o->lossless, &job->webp[i], &job->sizes[i]);
    }
    image_rgb_free(&img);
    if (rc != 0) {
        job->webp[i] = NULL;
        job->reasons[i] = xstrdup(err_msg());
    }
}

static void *encode_worker(void *arg) {
    shard_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->mu);
        int64_t i = job->next++;
        pthread_mutex_unlock(&job->mu);
        if (i >= job->n) return NULL;
        encode_item(job, i);
    }
}

static void encode_all(shard_job *job, int workers) {
    pthread_t *threads = xcalloc((size_t)workers, sizeof(pthread_t));
    pthread_mutex_init(&job->mu, NULL);
    for (int t = 0; t < workers; t++) pthread_create(&threads[t], NULL, encode_worker, job);
    for (int t = 0; t < workers; t++) pthread_join(threads[t], NULL);
    pthread_mutex_destroy(&job->mu);
    free(threads);
}

// Copies a report field, tabs and line breaks made spaces so that every line keeps three columns.
static char *put_field(char *p, const char *s) {
    for (; *s; s++) *p++ = *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s;
    return p;
}

// Appends "key\tsource\treason\n" for every skipped input of the job; the source is the file, or
// "archive:member" for a member of a tar archive.
static char *skipped_report(const shard_job *job, int64_t *n_skipped) {
    size_t len = 0;
    *n_skipped = 0;
    for (int64_t i = 0; i < job->n; i++) {
        const source_item *it = &job->items[i];
        if (job->reasons[i])
            len += strlen(it->key) + strlen(it->path ? it->path : "") + strlen(it->member ? it->member : "") +
                   strlen(job->reasons[i]) + 4;
    }
    char *out = xmalloc(len + 1), *p = out;
    for (int64_t i = 0; i < job->n; i++) {
        const source_item *it = &job->items[i];
        if (!job->reasons[i]) continue;
        p = put_field(p, it->key);
        *p++ = '\t';
        p = put_field(p, it->path ? it->path : "");
        if (it->member) p = put_field(put_field(p, ":"), it->member);
        *p++ = '\t';
        p = put_field(p, job->reasons[i]);
        *p++ = '\n';
        (*n_skipped)++;
    }
    *p = '\0';
    return out;
}

static int write_shard(const char *path, const shard_job *job, const source_list *src, const char *made_by,
                       convert_progress *p, char **skipped) {
    int64_t n = 0;
    const uint8_t **images = xcalloc((size_t)job->n + 1, sizeof(uint8_t *));
    size_t *sizes = xcalloc((size_t)job->n + 1, sizeof(size_t));
    const char **captions = xcalloc((size_t)job->n + 1, sizeof(char *)), **keys = xcalloc((size_t)job->n + 1, sizeof(char *));
    int32_t *labels = xcalloc((size_t)job->n + 1, sizeof(int32_t));
    for (int64_t i = 0; i < job->n; i++) {
        if (!job->webp[i]) continue;
        images[n] = job->webp[i], sizes[n] = job->sizes[i];
        captions[n] = job->items[i].caption, keys[n] = job->items[i].key, labels[n] = job->items[i].label;
        p->bytes += (int64_t)sizes[n++];
    }
    *skipped = skipped_report(job, &p->skipped);
    shard_contents c = {
        .n = n, .images = images, .image_sizes = sizes, .captions = captions, .keys = keys,
        .labels = src->n_classes ? labels : NULL, .class_names = (const char *const *)src->class_names,
        .n_classes = src->n_classes, .made_by = made_by, .skipped = *skipped,
    };
    p->samples = n;
    int rc = shard_write(path, &c);
    free(images), free(sizes), free(captions), free(keys), free(labels);
    return rc;
}

static int make_shard(const convert_options *o, const source_list *src, int64_t first, int64_t n, const char *path,
                      const char *made_by, convert_progress *p, char **skipped) {
    shard_job job = {.o = o, .items = src->items + first, .n = n};
    job.fetched = xcalloc((size_t)n, sizeof(uint8_t *));
    job.fetched_sizes = xcalloc((size_t)n, sizeof(size_t));
    job.webp = xcalloc((size_t)n, sizeof(uint8_t *));
    job.sizes = xcalloc((size_t)n, sizeof(size_t));
    job.reasons = xcalloc((size_t)n, sizeof(char *));
    double t0 = now_seconds();
    sources_fetch_members(src, first, n, job.fetched, job.fetched_sizes, job.reasons);
    encode_all(&job, o->workers > 0 ? o->workers : 1);
    p->images_per_second = (double)n / (now_seconds() - t0 + 1e-9);
    int rc = write_shard(path, &job, src, made_by, p, skipped);
    for (int64_t i = 0; i < n; i++) free(job.fetched[i]), free(job.webp[i]), free(job.reasons[i]);
    free(job.fetched), free(job.fetched_sizes), free(job.webp), free(job.sizes), free(job.reasons);
    return rc;
}

// ---- resuming --------------------------------------------------------------------------------

// Keeps a finished shard made with the same options. Returns 1 (kept), 0 (to make) or -1.
static int reuse_shard(const char *path, const char *made_by, convert_progress *p, char **skipped) {
    if (access(path, F_OK) != 0) return 0;
    shard_reader *r = shard_reader_open(path);
    if (!r) return 0;  // incomplete or damaged: made again
    int rc = 1;
    if (strcmp(shard_reader_made_by(r), made_by) != 0) {
        rc = err_set("%s: made with other options (%s); use another --out folder or delete it", path,
                     shard_reader_made_by(r));
    } else {
        p->samples = shard_reader_count(r);
        p->skipped = 0;
        for (const char *s = shard_reader_skipped(r); *s; s++) p->skipped += *s == '\n';
        *skipped = xstrdup(shard_reader_skipped(r));
        for (int64_t i = 0; i < p->samples; i++)
            p->bytes += (int64_t)(shard_reader_image_offset(r, i + 1) - shard_reader_image_offset(r, i));
    }
    shard_reader_close(r);
    return rc;
}

static int read_sources(const convert_options *o, source_list *src) {
    switch (o->source) {
    case CONVERT_SOURCE_CSV: return sources_read_csv(o, src);
    case CONVERT_SOURCE_FOLDERS: return sources_read_folders(o, src);
    case CONVERT_SOURCE_FASHION_MNIST:
    case CONVERT_SOURCE_MNIST: return sources_read_idx(o, src);
    case CONVERT_SOURCE_CIFAR10:
    case CONVERT_SOURCE_CIFAR100: return sources_read_cifar(o, src);
    case CONVERT_SOURCE_KARPATHY: return sources_read_karpathy(o, src);
    case CONVERT_SOURCE_WEBDATASET: return sources_read_webdataset(o, src);
    }
    return err_set("unknown convert source %d", (int)o->source);
}

static int check_options(const convert_options *o) {
    if (!o->input || !o->out_dir) return err_set("an input (--csv, --folders, --webdataset, ...) and --out are required");
    if (o->shard_size <= 0) return err_set("--shard-size must be positive");
    if (o->max_size < 0 || o->min_size < 0) return err_set("--max-size and --min-size cannot be negative");
    if (o->upscale && o->max_size <= 0) return err_set("--upscale needs a positive --max-size");
    if (o->quality < 0 || o->quality > 100) return err_set("--quality must be within 0-100");
    return 0;
}

typedef struct {
    manifest m;
    char *report;
    size_t report_len;
} convert_output;

static void output_add_shard(convert_output *out, const char *name, const convert_progress *p, const char *skipped) {
    manifest_shard *s = &out->m.shards[out->m.n_shards++];
    s->path = xstrdup(name);
    s->num_samples = p->samples;
    s->skipped = p->skipped;
    size_t len = strlen(skipped);
    out->report = xrealloc(out->report, out->report_len + len + 1);
    memcpy(out->report + out->report_len, skipped, len + 1);
    out->report_len += len;
}

static int convert_shard(const convert_options *o, const source_list *src, int i, const char *made_by,
                         convert_output *out, convert_summary *sum) {
    char name[32];
    snprintf(name, sizeof name, "shard-%05d.h5", i);
    char *path = fs_join(o->out_dir, name), *skipped = NULL;
    int64_t first = (int64_t)i * o->shard_size;
    int64_t n = src->n - first < o->shard_size ? src->n - first : o->shard_size;
    convert_progress p = {.shard = i, .n_shards = sum->n_shards};
    int rc = reuse_shard(path, made_by, &p, &skipped);
    p.reused = rc == 1;
    if (rc == 0) rc = make_shard(o, src, first, n, path, made_by, &p, &skipped);
    if (rc >= 0) {
        output_add_shard(out, name, &p, skipped);
        sum->shards_reused += p.reused;
        sum->samples += p.samples, sum->skipped += p.skipped, sum->bytes += p.bytes;
        if (o->progress) o->progress(o->progress_ctx, &p);
    }
    free(skipped);
    free(path);
    return rc < 0 ? -1 : 0;
}

// Writes the report of skipped inputs, and the manifest when any sample was kept.
static int write_outputs(const convert_options *o, convert_output *out, bool with_manifest) {
    char *report_path = fs_join(o->out_dir, "skipped.tsv"), *manifest_path = fs_join(o->out_dir, MANIFEST_DEFAULT_NAME);
    const char *head = "key\tsource\treason\n";
    char *report = xmalloc(strlen(head) + out->report_len + 1);
    sprintf(report, "%s%s", head, out->report ? out->report : "");
    int rc = atomic_file_write_bytes(report_path, report, strlen(report));
    if (rc == 0 && with_manifest) rc = manifest_save(manifest_path, &out->m);
    free(report), free(report_path), free(manifest_path);
    return rc;
}

int convert_run(const convert_options *given, convert_summary *sum) {
    convert_options resolved = *given, *o = &resolved;
    if (!o->split) o->split = o->source == CONVERT_SOURCE_KARPATHY ? "test" : "train";
    memset(sum, 0, sizeof *sum);
    if (check_options(o) || fs_mkdirs(o->out_dir)) return -1;
    double t0 = now_seconds();
    source_list src = {0};
    if (read_sources(o, &src)) {
        sources_free(&src);
        return -1;
    }
    if (src.n == 0) {
        sources_free(&src);
        return err_set("%s: no inputs found", o->input);
    }
    sum->n_shards = (int)((src.n + o->shard_size - 1) / o->shard_size);
    char *made_by = made_by_json(o);
    convert_output out = {.m = {.made_by = made_by, .class_names = src.class_names, .n_classes = src.n_classes}};
    out.m.shards = xcalloc((size_t)sum->n_shards, sizeof(manifest_shard));
    int rc = 0;
    for (int i = 0; rc == 0 && i < sum->n_shards; i++) rc = convert_shard(o, &src, i, made_by, &out, sum);
    if (rc == 0) rc = write_outputs(o, &out, sum->samples > 0);
    if (rc == 0 && sum->samples == 0)
        rc = err_set("%s: none of the %lld inputs could be read (see %s/skipped.tsv)", o->input, (long long)src.n,
                     o->out_dir);
    for (int i = 0; i < out.m.n_shards; i++) free(out.m.shards[i].path);
    free(out.m.shards);
    free(out.report);
    free(made_by);
    sources_free(&src);
    sum->seconds = now_seconds() - t0;
    return rc;
}
