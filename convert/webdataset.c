// The webdataset source of `clipc shards`: tar shards as img2dataset writes them (NNNNN.tar
// holding key.jpg|png|webp, key.txt, key.json), given as a brace pattern (convert/pattern.h), read
// with libarchive (plain or compressed tar).
//
// Listing reads every archive's headers and captions (.txt); image data is skipped (a seek in an
// uncompressed tar), so listing is cheap and a re-run after an interruption lists the same items in
// the same order: resuming works as for the CSV source. Members are grouped into samples as
// webdataset does: consecutive members with the same key (the path up to the first '.' of the file
// name) are one sample; the rest of the name, lower-cased, is the extension. A sample without an
// image or a caption, and a damaged archive (the members after the damage cannot be reached), are
// listed in skipped.tsv. The image bytes of one output shard are read when that shard is made
// (sources_fetch_members), each archive opened once.
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "convert/pattern.h"
#include "convert/sources.h"

#define WDS_MAX_CAPTION ((int64_t)1 << 20)
#define WDS_MAX_IMAGE ((int64_t)256 << 20)

typedef struct {
    char *key;
    char *image;    // the image member's name, or NULL
    char *caption;  // or NULL
    char *error;    // why the sample cannot be used, or NULL
} wds_sample;

static struct archive *open_archive(const char *path) {
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
        err_set("%s: %s", path, archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    return a;
}

// Splits a member name into key and extension as webdataset does; false when the file name has
// no extension (such members are not part of any sample).
static bool split_name(const char *name, char **key, char **ext) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    if (!dot || dot == base || !dot[1]) return false;
    *key = strndup(name, (size_t)(dot - name));
    *ext = xstrdup(dot + 1);
    for (char *p = *ext; *p; p++) *p = (char)tolower((unsigned char)*p);
    return true;
}

static bool is_image_ext(const char *ext) {
    return !strcmp(ext, "jpg") || !strcmp(ext, "jpeg") || !strcmp(ext, "png") || !strcmp(ext, "webp");
}

// Reads the current member's data (size bytes, at most limit) into a new NUL-terminated buffer.
static uint8_t *read_member(struct archive *a, int64_t size, int64_t limit, const char *tar, const char *name) {
    if (size < 0 || size > limit) {
        err_set("%s:%s: %lld bytes (at most %lld read)", tar, name, (long long)size, (long long)limit);
        return NULL;
    }
    uint8_t *buf = xmalloc((size_t)size + 1);
    int64_t got = 0;
    while (got < size) {
        la_ssize_t r = archive_read_data(a, buf + got, (size_t)(size - got));
        if (r <= 0) {
            err_set("%s:%s: %s", tar, name, r < 0 ? archive_error_string(a) : "truncated member");
            free(buf);
            return NULL;
        }
        got += r;
    }
    buf[size] = '\0';
    return buf;
}

// Adds the finished sample: an item, or an error item saying what it lacks; then clears it.
static void flush_sample(const char *tar, wds_sample *s, source_list *out) {
    if (!s->key) return;
    const char *reason = s->error ? s->error
                         : !s->image ? "no image member (.jpg, .jpeg, .png or .webp)"
                         : !s->caption ? "no caption (.txt member)"
                                       : NULL;
    if (reason) sources_add_error(out, tar, s->key, reason);
    else sources_add(out, tar, s->caption, s->key, -1);
    out->items[out->n - 1].member = s->image;
    free(s->key), free(s->caption), free(s->error);
    memset(s, 0, sizeof *s);
}

// Notes a member of the current sample: the first image's name, the caption's text.
static void add_member(struct archive *a, struct archive_entry *e, const char *tar, const char *name, const char *ext,
                       wds_sample *s) {
    if (is_image_ext(ext) && !s->image) {
        s->image = xstrdup(name);
    } else if (!strcmp(ext, "txt") && !s->caption && !s->error) {
        s->caption = (char *)read_member(a, archive_entry_size(e), WDS_MAX_CAPTION, tar, name);
        if (!s->caption) s->error = xstrdup(err_msg());
    }
}

// Lists the samples of one archive. Returns -1 only when it cannot be opened.
static int list_archive(const char *tar, source_list *out) {
    struct archive *a = open_archive(tar);
    if (!a) return -1;
    wds_sample cur = {0};
    struct archive_entry *e;
    int r, members = 0;
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
        const char *name = archive_entry_pathname(e);
        char *key = NULL, *ext = NULL;
        if (archive_entry_filetype(e) != AE_IFREG || !name || !split_name(name, &key, &ext)) continue;
        members++;
        if (cur.key && strcmp(cur.key, key)) flush_sample(tar, &cur, out);
        if (!cur.key) cur.key = key;
        else free(key);
        add_member(a, e, tar, name, ext, &cur);
        free(ext);
    }
    flush_sample(tar, &cur, out);
    if (r != ARCHIVE_EOF) {
        char reason[512];
        snprintf(reason, sizeof reason, "archive damaged after %d member%s: %s", members, members == 1 ? "" : "s",
                 archive_error_string(a));
        sources_add_error(out, tar, "(archive)", reason);
    }
    archive_read_free(a);
    return 0;
}

int sources_read_webdataset(const convert_options *o, source_list *out) {
    char **tars = NULL;
    int n = pattern_expand(o->input, &tars), rc = n < 0 ? -1 : 0;
    for (int i = 0; rc == 0 && i < n; i++) rc = list_archive(tars[i], out);
    if (n >= 0) pattern_free(tars, n);
    return rc;
}

// ---- image bytes of one output shard ------------------------------------------------------------

static bool fetchable(const source_item *it) { return it->member && !it->error; }

static int64_t next_fetchable(const source_list *l, int64_t i, int64_t end) {
    while (i < end && !fetchable(&l->items[i])) i++;
    return i;
}

// Reads the members of items [begin, end) (all of one archive, in archive order).
static void fetch_archive(const source_list *l, int64_t begin, int64_t end, int64_t first, uint8_t **bytes,
                          size_t *sizes, char **reasons) {
    const char *tar = l->items[begin].path;
    struct archive *a = open_archive(tar);
    int64_t want = next_fetchable(l, begin, end);
    struct archive_entry *e;
    int r = ARCHIVE_OK;
    while (a && want < end && ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)) {
        const char *name = archive_entry_pathname(e);
        if (!name || strcmp(name, l->items[want].member)) continue;
        int64_t k = want - first;
        bytes[k] = read_member(a, archive_entry_size(e), WDS_MAX_IMAGE, tar, name);
        if (bytes[k]) sizes[k] = (size_t)archive_entry_size(e);
        else reasons[k] = xstrdup(err_msg());
        want = next_fetchable(l, want + 1, end);
    }
    const char *why = !a ? err_msg() : r == ARCHIVE_OK || r == ARCHIVE_WARN || r == ARCHIVE_EOF
                                           ? "member no longer in the archive"
                                           : archive_error_string(a);
    for (; want < end; want = next_fetchable(l, want + 1, end)) {
        char reason[512];
        snprintf(reason, sizeof reason, "%s:%s: %s", tar, l->items[want].member, why);
        reasons[want - first] = xstrdup(reason);
    }
    if (a) archive_read_free(a);
}

void sources_fetch_members(const source_list *l, int64_t first, int64_t n, uint8_t **bytes, size_t *sizes,
                           char **reasons) {
    for (int64_t i = next_fetchable(l, first, first + n); i < first + n;) {
        int64_t end = i + 1;
        while (end < first + n && (!fetchable(&l->items[end]) || !strcmp(l->items[end].path, l->items[i].path))) end++;
        fetch_archive(l, i, end, first, bytes, sizes, reasons);
        i = next_fetchable(l, end, first + n);
    }
}
