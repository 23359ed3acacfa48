#include "loader/sampler.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/bytes.h"

enum { STREAM_SHARD_ORDER = 1, STREAM_RESAMPLE = 2, STREAM_BUFFER = 3, STREAM_SUBSTITUTE = 5 };  // 4: the loader's crops

static rng stream_rng(uint64_t seed, uint64_t stream, int64_t epoch, int64_t rank) {
    rng r = {rng_mix(rng_mix(rng_mix(seed, stream), (uint64_t)epoch), (uint64_t)rank)};
    return r;
}

static int buffer_capacity(const sampler_config *c) {
    return c->shuffle && c->buffer_size > 1 ? c->buffer_size : 1;
}

void sampler_init(sampler *s, const sampler_config *cfg, sampler_fetch_fn fetch, void *fetch_ctx) {
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->fetch = fetch;
    s->fetch_ctx = fetch_ctx;
    int n = cfg->n_shards;
    s->order = xmalloc((size_t)(n ? n : 1) * sizeof(uint32_t));
    s->prefix = xmalloc((size_t)(n + 1) * sizeof(int64_t));
    s->cum_weights = xmalloc((size_t)(n ? n : 1) * sizeof(double));
    double total = 0;
    for (int i = 0; i < n; i++) {
        double w = cfg->shard_weights ? cfg->shard_weights[i] : 1.0;
        total += cfg->shard_sizes[i] > 0 ? w : 0.0;
        s->cum_weights[i] = total;
    }
    s->buf = xmalloc((size_t)buffer_capacity(cfg) * sizeof(sample_ref));
    s->payload = xcalloc((size_t)buffer_capacity(cfg), sizeof(void *));
    s->batch = xcalloc((size_t)cfg->batch_size * (size_t)cfg->world_size, sizeof(sample_ref));
}

static void drop_buffer(sampler *s) {
    for (int i = 0; i < s->n_buf; i++) free(s->payload[i]), s->payload[i] = NULL;
    s->n_buf = 0;
}

void sampler_free(sampler *s) {
    drop_buffer(s);
    free(s->order);
    free(s->prefix);
    free(s->cum_weights);
    free(s->buf);
    free(s->payload);
    free(s->batch);
}

static void plan_shard_order(sampler *s) {
    const sampler_config *c = &s->cfg;
    for (int i = 0; i < c->n_shards; i++) s->order[i] = (uint32_t)i;
    rng r = stream_rng(c->seed, STREAM_SHARD_ORDER, s->epoch, 0);
    for (int i = c->n_shards - 1; c->shuffle && i > 0; i--) {
        int j = (int)rng_below(&r, (uint64_t)i + 1);
        uint32_t t = s->order[i];
        s->order[i] = s->order[j], s->order[j] = t;
    }
    s->prefix[0] = 0;
    for (int i = 0; i < c->n_shards; i++) s->prefix[i + 1] = s->prefix[i] + c->shard_sizes[s->order[i]];
}

static int64_t global_batch(const sampler_config *c) { return (int64_t)c->batch_size * c->world_size; }

static void plan_epoch_length(sampler *s) {
    const sampler_config *c = &s->cfg;
    int64_t total = s->prefix[c->n_shards], g = global_batch(c);
    s->lo = 0;
    s->hi = total;
    if (c->resampled) {
        int64_t wanted = c->samples_per_epoch > 0 ? c->samples_per_epoch : total;
        int64_t batches = wanted / g;
        s->n_emit = total == 0 ? 0 : (batches > 0 ? batches : 1) * g;
    } else {
        s->n_emit = c->drop_last ? total / g * g : total;
    }
}

void sampler_start_epoch(sampler *s, int64_t epoch) {
    drop_buffer(s);
    s->epoch = epoch;
    plan_shard_order(s);
    plan_epoch_length(s);
    s->cursor = s->lo;
    s->input_rng = stream_rng(s->cfg.seed, STREAM_RESAMPLE, epoch, 0);
    s->cur_shard = -1;
    s->cur_index = 0;
    s->shuffle_rng = stream_rng(s->cfg.seed, STREAM_BUFFER, epoch, 0);
    s->emitted = 0;
}

int64_t sampler_num_batches(const sampler *s) {
    int64_t g = global_batch(&s->cfg);
    return (s->n_emit + g - 1) / g;
}

const sample_ref *sampler_batch_refs(const sampler *s) { return s->batch; }

// A shard's share of the replacement draws: its weight times its samples.
static double shard_mass(const sampler_config *c, int i) {
    return (c->shard_weights ? c->shard_weights[i] : 1.0) * (double)c->shard_sizes[i];
}

int sampler_substitute(const sampler_config *c, int64_t epoch, int64_t ordinal, int attempt, sample_ref *out) {
    double total = 0;
    for (int i = 0; i < c->n_shards; i++) total += shard_mass(c, i);
    if (!(total > 0)) return err_set("loader: no sample can replace a corrupt one (every source is empty or weighted 0)");
    rng r = stream_rng(c->seed, STREAM_SUBSTITUTE, epoch, ordinal);
    r.state = rng_mix(r.state, (uint64_t)attempt);
    double u = rng_uniform(&r) * total, sum = 0;
    int shard = -1;
    for (int i = 0; i < c->n_shards && (shard < 0 || sum <= u); i++)
        if (shard_mass(c, i) > 0) shard = i, sum += shard_mass(c, i);  // the last one with mass takes a rounding overshoot
    *out = (sample_ref){(uint32_t)shard, (uint32_t)rng_below(&r, (uint64_t)c->shard_sizes[shard])};
    return 0;
}

static int64_t draw_shard(sampler *s) {
    int n = s->cfg.n_shards;
    double u = rng_uniform(&s->input_rng) * s->cum_weights[n - 1];
    int lo = 0, hi = n - 1;  // first shard whose cumulative weight exceeds u
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->cum_weights[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

// The next reference of the input stream (before the shuffle buffer); 0 when it is exhausted.
static int next_input(sampler *s, sample_ref *ref) {
    if (s->cfg.resampled) {
        while (s->cur_shard < 0 || s->cur_index >= s->cfg.shard_sizes[s->cur_shard]) {
            s->cur_shard = draw_shard(s);
            s->cur_index = 0;
        }
        *ref = (sample_ref){(uint32_t)s->cur_shard, (uint32_t)s->cur_index++};
        return 1;
    }
    if (s->cursor >= s->hi) return 0;
    int lo = 0, hi = s->cfg.n_shards - 1;  // last position whose prefix is <= cursor
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (s->prefix[mid] <= s->cursor) lo = mid;
        else hi = mid - 1;
    }
    while (s->cfg.shard_sizes[s->order[lo]] == 0) lo++;  // empty shards share their prefix
    *ref = (sample_ref){s->order[lo], (uint32_t)(s->cursor - s->prefix[lo])};
    s->cursor++;
    return 1;
}

static int fill_buffer(sampler *s) {
    int cap = buffer_capacity(&s->cfg);
    sample_ref ref;
    while (s->n_buf < cap && next_input(s, &ref)) {
        void *payload = NULL;
        if (s->fetch && s->fetch(s->fetch_ctx, ref, true, &payload)) return -1;
        s->buf[s->n_buf] = ref;
        s->payload[s->n_buf++] = payload;
    }
    return 0;
}

// The next sample of the global stream (whoever's it is): 1, 0 at the end, -1 on a fetch error.
static int draw(sampler *s, sample_ref *ref, void **payload) {
    if (s->emitted >= s->n_emit) return 0;
    if (fill_buffer(s)) return -1;
    if (s->n_buf == 0) return 0;
    int j = (int)rng_below(&s->shuffle_rng, (uint64_t)s->n_buf);
    *ref = s->buf[j];
    s->batch[s->emitted % global_batch(&s->cfg)] = *ref;
    if (payload) *payload = s->payload[j];
    else free(s->payload[j]);
    s->n_buf--;
    s->buf[j] = s->buf[s->n_buf];
    s->payload[j] = s->payload[s->n_buf];
    s->payload[s->n_buf] = NULL;
    s->emitted++;
    return 1;
}

// Draws and drops samples until the stream reaches the end of a global batch (or of the epoch).
static int skip_to_batch_end(sampler *s) {
    int64_t g = global_batch(&s->cfg);
    sample_ref ref;
    int rc = 1;
    while (rc == 1 && s->emitted % g != 0) rc = draw(s, &ref, NULL);
    return rc < 0 ? -1 : 0;
}

int sampler_next(sampler *s, sample_ref *ref, void **payload, int64_t *ordinal) {
    int64_t g = global_batch(&s->cfg), first = (int64_t)s->cfg.rank * s->cfg.batch_size, end = first + s->cfg.batch_size;
    for (;;) {
        int64_t j = s->emitted;
        void *p = NULL;
        int rc = draw(s, ref, payload ? &p : NULL);
        if (rc <= 0) return rc;
        int64_t pos = j % g;
        if (pos < first || pos >= end) {
            free(p);
            continue;
        }
        if (pos == end - 1 && skip_to_batch_end(s) != 0) {
            free(p);
            return -1;
        }
        if (payload) *payload = p;
        if (ordinal) *ordinal = j;
        return 1;
    }
}

// ---- saved position ------------------------------------------------------------------------

#define SAMPLER_STATE_FIXED (8 * 7 + 4)

size_t sampler_state_size(const sampler *s) { return SAMPLER_STATE_FIXED + (size_t)s->n_buf * 8; }

void sampler_state_write(const sampler *s, uint8_t *p) {
    p = bytes_put_u64(p, (uint64_t)s->epoch);
    p = bytes_put_u64(p, (uint64_t)s->emitted);
    p = bytes_put_u64(p, (uint64_t)s->cursor);
    p = bytes_put_u64(p, s->input_rng.state);
    p = bytes_put_u64(p, (uint64_t)s->cur_shard);
    p = bytes_put_u64(p, (uint64_t)s->cur_index);
    p = bytes_put_u64(p, s->shuffle_rng.state);
    p = bytes_put_u32(p, (uint32_t)s->n_buf);
    for (int i = 0; i < s->n_buf; i++) {
        p = bytes_put_u32(p, s->buf[i].shard);
        p = bytes_put_u32(p, s->buf[i].index);
    }
}

static int ref_valid(const sampler *s, sample_ref r) {
    return r.shard < (uint32_t)s->cfg.n_shards && r.index < (uint64_t)s->cfg.shard_sizes[r.shard];
}

typedef struct {
    sample_ref ref;
    int slot;
} buffered_ref;

static int by_ref(const void *a, const void *b) {
    sample_ref x = ((const buffered_ref *)a)->ref, y = ((const buffered_ref *)b)->ref;
    if (x.shard != y.shard) return x.shard < y.shard ? -1 : 1;
    return x.index < y.index ? -1 : x.index > y.index;
}

// Fetches the payloads of the buffered references in (shard, index) order, so each shard is
// visited once.
static int refetch_buffer(sampler *s) {
    if (!s->fetch || s->n_buf == 0) return 0;
    buffered_ref *sorted = xmalloc((size_t)s->n_buf * sizeof(buffered_ref));
    for (int i = 0; i < s->n_buf; i++) sorted[i] = (buffered_ref){s->buf[i], i};
    qsort(sorted, (size_t)s->n_buf, sizeof(buffered_ref), by_ref);
    int rc = 0;
    for (int i = 0; i < s->n_buf && rc == 0; i++)
        rc = s->fetch(s->fetch_ctx, sorted[i].ref, false, &s->payload[sorted[i].slot]);
    free(sorted);
    return rc;
}

int64_t sampler_state_read(sampler *s, const uint8_t *src, size_t n) {
    if (n < SAMPLER_STATE_FIXED) return err_set("saved loader position is truncated");
    const uint8_t *p = src;
    int64_t epoch = (int64_t)bytes_get_u64(&p);
    sampler_start_epoch(s, epoch);
    s->emitted = (int64_t)bytes_get_u64(&p);
    s->cursor = (int64_t)bytes_get_u64(&p);
    s->input_rng.state = bytes_get_u64(&p);
    s->cur_shard = (int64_t)bytes_get_u64(&p);
    s->cur_index = (int64_t)bytes_get_u64(&p);
    s->shuffle_rng.state = bytes_get_u64(&p);
    uint32_t n_buf = bytes_get_u32(&p);
    if (n_buf > (uint32_t)buffer_capacity(&s->cfg) || n < SAMPLER_STATE_FIXED + (size_t)n_buf * 8)
        return err_set("saved loader position holds %u buffered samples, more than it can", n_buf);
    if (s->emitted > s->n_emit || s->cursor < s->lo || s->cursor > s->hi || s->cur_shard >= s->cfg.n_shards)
        return err_set("saved loader position does not fit this dataset");
    for (uint32_t i = 0; i < n_buf; i++) {
        s->buf[i].shard = bytes_get_u32(&p);
        s->buf[i].index = bytes_get_u32(&p);
        if (!ref_valid(s, s->buf[i])) return err_set("saved loader position names a sample this dataset lacks");
    }
    s->n_buf = (int)n_buf;
    if (refetch_buffer(s)) return -1;
    return p - src;
}
