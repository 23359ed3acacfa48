#include "train/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

bool distill_enabled(const distill_options *o) { return o->model || o->pretrained || o->cache; }

int distill_view_size(const distill_options *o, const char *model_configs, const clip_config *student, int *size) {
    *size = 0;
    if (!o->pretrained) return 0;
    clip_config cfg;
    if (session_model_config(o->model, model_configs, o->pretrained, &cfg) != 0) return err_prefix("distillation teacher");
    if (cfg.vision.image_size != student->vision.image_size) *size = cfg.vision.image_size;
    return 0;
}

static int check_options(const distill_options *o) {
    if (o->model && !o->pretrained)
        return err_set("--distill-model needs --distill-pretrained (the teacher's weights; a teacher from a seed teaches nothing)");
    if (!(o->weight >= 0 && o->feature_weight >= 0 && isfinite(o->weight) && isfinite(o->feature_weight)))
        return err_set("--distill-weight and --distill-feature-weight must be finite and >= 0, got %g and %g", o->weight,
                       o->feature_weight);
    if (o->weight == 0 && o->feature_weight == 0)
        return err_set("--distill-weight and --distill-feature-weight are both 0: nothing to distill");
    return 0;
}

// Every parameter of the teacher frozen (no gradient, never optimized).
static int freeze(clip_model *m) {
    for (int i = 0; i < m->params.n; i++)
        if (param_set_frozen(&m->params.items[i], true) != 0) return -1;
    return clip_model_to_device(m, m->device);
}

static int open_teacher(distill *d, const session_options *so, const session *student, const char *vocab) {
    session_options to = *so;
    to.model = d->o.model, to.pretrained = d->o.pretrained, to.vocab = NULL;
    to.siglip = to.lock_image = to.lock_text = false;
    if (session_open(&to, &d->teacher) != 0) return err_prefix("distillation teacher");
    tensor_device td = d->teacher.device, sd = student->device;
    if (td.type != sd.type || td.index != sd.index) {  // its features meet the student's in every op
        char tn[32], sn[32];
        tensor_device_format(td, tn, sizeof tn), tensor_device_format(sd, sn, sizeof sn);
        return err_set("distillation teacher: on %s but the student is on %s (open it on the rank's device)", tn, sn);
    }
    const clip_config *tc = &d->teacher.cfg;
    if (student->tok && tokenizer_vocab_size(student->tok) > tc->text.vocab_size)
        return err_set("distillation teacher %s has vocab_size %d, smaller than the student's vocabulary %s (%d tokens)",
                       tc->name, tc->text.vocab_size, vocab ? vocab : "?", tokenizer_vocab_size(student->tok));
    d->teacher_dim = tc->embed_dim;
    return freeze(d->teacher.model);
}

static int open_cache(distill *d, const loader *train_data) {
    distill_teacher_id id = {0};
    if (d->teacher.model && distill_teacher_id_init(&id, &d->teacher.cfg, d->teacher.weights.path) != 0) return -1;
    d->cache = distill_cache_open(d->o.cache, train_data, d->teacher.model ? &id : NULL);
    distill_teacher_id_free(&id);
    if (!d->cache) return err_prefix("--distill-cache %s", d->o.cache);
    d->teacher_dim = distill_cache_dim(d->cache);
    return 0;
}

// A (E_t, E_s) map initialised as torch.nn.Linear's weight: uniform in +-1/sqrt(E_s).
static tensor *add_projection(distill *d, const char *name, int64_t in, tensor_generator *g) {
    int64_t shape[2] = {d->teacher_dim, in};
    double bound = 1.0 / sqrt((double)in);
    param *p = param_list_add(&d->proj, name, tensor_uniform(shape, 2, -bound, bound, TENSOR_F32, TENSOR_CPU, g));
    return p->value;
}

static int make_projections(distill *d, const session *student, uint64_t seed) {
    int64_t es = student->cfg.embed_dim;
    if (d->o.feature_weight == 0 || es == d->teacher_dim) return 0;
    tensor_generator *g = tensor_generator_new(seed, TENSOR_CPU);
    d->image_proj = add_projection(d, "distill.image_proj.weight", es, g);
    d->text_proj = add_projection(d, "distill.text_proj.weight", es, g);
    tensor_generator_free(g);
    return param_list_pack(&d->proj, student->device);
}

int distill_open(distill *d, const distill_options *o, const session_options *student_options, const session *student,
                 const loader *train_data) {
    memset(d, 0, sizeof *d);
    param_list_init(&d->proj);
    d->o = *o;
    d->tok = student->tok;
    d->crop_cosine = NAN;
    int rc = check_options(o);
    if (rc == 0 && o->pretrained) rc = open_teacher(d, student_options, student, student_options->vocab);
    if (rc == 0 && o->cache) rc = open_cache(d, train_data);
    if (rc == 0) rc = make_projections(d, student, student_options->seed);
    if (rc != 0) distill_close(d);
    return rc;
}

void distill_close(distill *d) {
    if (d->teacher.model) session_close(&d->teacher);
    distill_cache_close(d->cache);
    param_list_free(&d->proj);
    memset(d, 0, sizeof *d);
}

// ---- teacher targets -------------------------------------------------------------------------

// The online teacher's features of samples [begin, end): its view of the images, the captions at
// its context length.
static int online_features(distill *d, const clip_model *student, const loader_batch *b, int64_t begin, int64_t end,
                           tensor **out) {
    const clip_config *tc = &d->teacher.cfg;
    int n = (int)(end - begin), size = tc->vision.image_size;
    if (!b->teacher_images && student->cfg.vision.image_size != size)
        return err_set("distillation: the batch holds no %d px view for the teacher", size);
    const float *images = (b->teacher_images ? b->teacher_images : b->images) + begin * 3 * size * size;
    int ctx = tc->text.context_length;
    if (ctx == student->cfg.text.context_length)
        return distill_teacher_encode(d->teacher.model, images, b->tokens + begin * ctx, n, &out[0], &out[1]);
    if (!d->tok) return err_set("distillation: the teacher's context length differs and there is no tokenizer");
    int64_t *tokens = xmalloc((size_t)n * (size_t)ctx * sizeof(int64_t));
    int rc = tokenizer_encode_batch(d->tok, b->captions + begin, n, ctx, tokens);
    if (rc == 0) rc = distill_teacher_encode(d->teacher.model, images, tokens, n, &out[0], &out[1]);
    free(tokens);
    return rc;
}

static tensor *rows_to_device(const float *rows, int64_t n, int64_t dim, tensor_device dev) {
    int64_t shape[2] = {n, dim};
    return tensor_to_device(tensor_from_host(rows, shape, 2, TENSOR_F32, false), dev, false);
}

static int stored_features(const distill *d, const loader_batch *b, int64_t begin, int64_t end, tensor_device dev,
                           tensor **out) {
    int64_t n = end - begin;
    size_t size = (size_t)n * (size_t)d->teacher_dim;
    float *rows = xmalloc(2 * size * sizeof(float));
    distill_cache_rows(d->cache, b->shards + begin, b->indices + begin, n, rows, rows + size);
    out[0] = rows_to_device(rows, n, d->teacher_dim, dev);
    out[1] = rows_to_device(rows + size, n, d->teacher_dim, dev);
    free(rows);
    return out[0] && out[1] ? 0 : -1;
}

// The mean cosine between the online teacher's image features and the stored ones.
static int measure_crop_cosine(distill *d, const loader_batch *b, int64_t begin, int64_t end, const tensor *online_image,
                               tensor_device dev) {
    tensor *stored[2];
    if (stored_features(d, b, begin, end, dev, stored) != 0) return -1;
    tensor *dots = tensor_sum_dim(tensor_mul(tensor_to_dtype(online_image, TENSOR_F32), stored[0]), 1, false);
    return tensor_item(tensor_mean(dots), &d->crop_cosine);
}

int distill_teacher_features(distill *d, const clip_model *student, const loader_batch *b, int64_t begin, int64_t end,
                             tensor **out) {
    if (!d->teacher.model) return stored_features(d, b, begin, end, student->device, out);
    if (online_features(d, student, b, begin, end, out) != 0) return -1;
    return d->cache ? measure_crop_cosine(d, b, begin, end, out[0], student->device) : 0;
}

// ---- the objective ---------------------------------------------------------------------------

// exp(the teacher's logit scale), (1) on dev.
static tensor *teacher_scale(const distill *d, tensor_device dev) {
    if (d->teacher.model) return tensor_exp(d->teacher.model->logit_scale);
    return tensor_scalar(exp(distill_cache_logit_scale(d->cache)), TENSOR_F32, dev);
}

static tensor *contrastive_rows(loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias, int64_t r0,
                                int64_t r1) {
    if (kind == LOSS_KIND_SIGLIP) return loss_siglip_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, bias, r0, r1);
    return loss_clip_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, r0, r1);
}

// contrastive + w * the DistillClipLoss term (sharing the student's logits for the CLIP loss).
static tensor *logit_terms(const distill *d, loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias,
                           int64_t r0, int64_t r1) {
    if (d->o.weight == 0) return contrastive_rows(kind, all, scale, bias, r0, r1);
    loss_distill_terms t;
    if (loss_distill_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, all[DISTILL_TEACHER_IMAGE],
                          all[DISTILL_TEACHER_TEXT], teacher_scale(d, tensor_get_device(all[DISTILL_IMAGE])), r0, r1,
                          &t) != 0)
        return NULL;
    tensor *contrastive = kind == LOSS_KIND_CLIP ? t.contrastive : contrastive_rows(kind, all, scale, bias, r0, r1);
    return tensor_add(contrastive, tensor_mul_scalar(t.distill, d->o.weight));
}

// The student's features in the teacher's space (the identity when no projection is needed).
static const tensor *projected(const tensor *features, const tensor *proj) {
    return proj ? tensor_linear(features, proj, NULL) : features;
}

static tensor *feature_terms(const distill *d, tensor *const *all, int64_t r0, int64_t r1) {
    tensor *image = loss_feature_mse_rows(projected(all[DISTILL_IMAGE], d->image_proj), all[DISTILL_TEACHER_IMAGE], r0, r1);
    tensor *text = loss_feature_mse_rows(projected(all[DISTILL_TEXT], d->text_proj), all[DISTILL_TEACHER_TEXT], r0, r1);
    return tensor_mul_scalar(tensor_add(image, text), d->o.feature_weight);
}

tensor *distill_loss_rows(const distill *d, loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias,
                          int64_t r0, int64_t r1) {
    tensor *loss = logit_terms(d, kind, all, scale, bias, r0, r1);
    return d->o.feature_weight > 0 ? tensor_add(loss, feature_terms(d, all, r0, r1)) : loss;
}
