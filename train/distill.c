#include "train/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "common/error.h"

bool distill_enabled(const distill_options *o) { return o->model || o->pretrained || o->cache; }

// Item i of n of the '::' list of an option (one entry for all, or one each) into *out (NULL for
// no list). Returns 0 or -1 naming the option.
static int list_item(const char *option, const char *list, int i, int n, char **out) {
    *out = NULL;
    return list ? args_list_item(option, list, i, n, out) : 0;
}

static int count_items(const char *list) {
    if (!list) return 0;
    char **items;
    int n = args_split_list(list, &items);
    args_free_list(items, n);
    return n;
}

int distill_view_size(const distill_options *o, const char *model_configs, const clip_config *student, int *size) {
    *size = 0;
    int n = count_items(o->pretrained), first = 0;
    for (int i = 0; i < n; i++) {
        char *model, *weights;
        clip_config cfg;
        int rc = list_item("distill-model", o->model, i, n, &model) || list_item("distill-pretrained", o->pretrained, i, n, &weights);
        if (rc == 0 && session_model_config(model, model_configs, weights, &cfg) != 0) rc = err_prefix("distillation teacher %d", i + 1);
        free(model), free(weights);
        if (rc != 0) return -1;
        if (i == 0) first = cfg.vision.image_size;
        else if (cfg.vision.image_size != first)
            return err_set("--distill-pretrained: the teachers of an ensemble must share one image size (teacher 1: %d px, "
                           "teacher %d: %d px)", first, i + 1, cfg.vision.image_size);
        if (cfg.vision.image_size != student->vision.image_size) *size = cfg.vision.image_size;
    }
    return 0;
}

// The teachers: as many as --distill-pretrained's (online) or --distill-cache's entries, which must
// agree when both are given; --distill-logit-scale with one entry for all or one each.
static int count_teachers(distill *d, const distill_options *o) {
    int online = count_items(o->pretrained), stored = count_items(o->cache);
    if (online && stored && online != stored)
        return err_set("--distill-pretrained names %d teachers but --distill-cache %d folders (one per teacher)", online,
                       stored);
    d->n_teachers = online ? online : stored;
    if (d->n_teachers > DISTILL_MAX_TEACHERS)
        return err_set("--distill-pretrained/--distill-cache: %d teachers, at most %d", d->n_teachers, DISTILL_MAX_TEACHERS);
    if (d->n_teachers > 1 && o->feature_weight > 0)
        return err_set("--distill-feature-weight works with one teacher, not an ensemble of %d", d->n_teachers);
    for (int i = 0; i < d->n_teachers; i++) {
        char *text, *end;
        if (list_item("distill-logit-scale", o->logit_scale, i, d->n_teachers, &text) != 0) return -1;
        d->scales[i] = text ? strtod(text, &end) : NAN;
        bool bad = text && (end == text || *end || !(d->scales[i] > 0) || !isfinite(d->scales[i]));
        if (bad) err_set("--distill-logit-scale: '%s' (teacher %d) is not a positive number (the multiplier exp(logit_scale))",
                         text, i + 1);
        free(text);
        if (bad) return -1;
    }
    return 0;
}

static int check_options(const distill_options *o) {
    if (o->model && !o->pretrained)
        return err_set("--distill-model needs --distill-pretrained (the teacher's weights; a teacher from a seed teaches nothing)");
    if (!(o->contrastive_weight >= 0 && isfinite(o->contrastive_weight)))
        return err_set("--contrastive-weight must be finite and >= 0, got %g", o->contrastive_weight);
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

static int open_teacher(distill *d, int m, const session_options *so, const session *student, const char *vocab) {
    session_options to = *so;
    char *model, *weights;
    int rc = list_item("distill-model", d->o.model, m, d->n_teachers, &model) ||
             list_item("distill-pretrained", d->o.pretrained, m, d->n_teachers, &weights);
    to.model = model, to.pretrained = weights, to.vocab = NULL;
    to.siglip = to.lock_image = to.lock_text = false;
    session *teacher = &d->teachers[m];
    if (rc == 0 && session_open(&to, teacher) != 0) rc = err_prefix("distillation teacher %s", weights);
    free(model), free(weights);
    if (rc != 0) return -1;
    tensor_device td = teacher->device, sd = student->device;
    if (td.type != sd.type || td.index != sd.index) {  // its features meet the student's in every op
        char tn[32], sn[32];
        tensor_device_format(td, tn, sizeof tn), tensor_device_format(sd, sn, sizeof sn);
        return err_set("distillation teacher: on %s but the student is on %s (open it on the rank's device)", tn, sn);
    }
    const clip_config *tc = &teacher->cfg;
    if (student->tok && tokenizer_vocab_size(student->tok) > tc->text.vocab_size)
        return err_set("distillation teacher %s has vocab_size %d, smaller than the student's vocabulary %s (%d tokens)",
                       tc->name, tc->text.vocab_size, vocab ? vocab : "?", tokenizer_vocab_size(student->tok));
    if (m == 0) d->teacher_dim = tc->embed_dim;
    return freeze(teacher->model);
}

static int open_cache(distill *d, int m, const loader *train_data) {
    distill_teacher_id id = {0};
    char *dir;
    const char *weights = d->teachers[m].model ? d->teachers[m].weights.path : NULL;  // the resolved file
    int rc = list_item("distill-cache", d->o.cache, m, d->n_teachers, &dir);
    if (rc == 0 && weights) rc = distill_teacher_id_init(&id, &d->teachers[m].cfg, weights);
    if (rc == 0 && !(d->caches[m] = distill_cache_open(dir, train_data, weights ? &id : NULL)))
        rc = err_prefix("--distill-cache %s", dir);
    distill_teacher_id_free(&id);
    free(dir);
    if (rc == 0 && m > 0) rc = distill_cache_same_views(d->caches[0], d->caches[m]);
    if (rc == 0 && m == 0 && !d->teachers[0].model) d->teacher_dim = distill_cache_dim(d->caches[0]);
    return rc;
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
    if (rc == 0) rc = count_teachers(d, o);
    for (int m = 0; rc == 0 && o->pretrained && m < d->n_teachers; m++)
        rc = open_teacher(d, m, student_options, student, student_options->vocab);
    for (int m = 0; rc == 0 && o->cache && m < d->n_teachers; m++) rc = open_cache(d, m, train_data);
    if (rc == 0) rc = make_projections(d, student, student_options->seed);
    if (rc != 0) distill_close(d);
    return rc;
}

void distill_close(distill *d) {
    for (int m = 0; m < DISTILL_MAX_TEACHERS; m++) {
        if (d->teachers[m].model) session_close(&d->teachers[m]);
        distill_cache_close(d->caches[m]);
    }
    param_list_free(&d->proj);
    memset(d, 0, sizeof *d);
}

int distill_n_features(const distill *d) { return 2 + 2 * d->n_teachers; }

bool distill_view_source(const distill *d, loader_view_source *out) {
    if (!d->caches[0] || distill_cache_views(d->caches[0]) == 0) return false;
    *out = (loader_view_source){distill_cache_pick, d->caches[0]};
    return true;
}

// ---- teacher targets -------------------------------------------------------------------------

// The online teacher's features of samples [begin, end): its view of the images, the captions at
// its context length.
static int online_features(distill *d, int m, const clip_model *student, const loader_batch *b, int64_t begin,
                           int64_t end, tensor **out) {
    const session *teacher = &d->teachers[m];
    const clip_config *tc = &teacher->cfg;
    int n = (int)(end - begin), size = tc->vision.image_size;
    if (!b->teacher_images && student->cfg.vision.image_size != size)
        return err_set("distillation: the batch holds no %d px view for the teacher", size);
    const float *images = (b->teacher_images ? b->teacher_images : b->images) + begin * 3 * size * size;
    int ctx = tc->text.context_length;
    if (ctx == student->cfg.text.context_length)
        return distill_teacher_encode(teacher->model, images, b->tokens + begin * ctx, n, &out[0], &out[1]);
    if (!d->tok) return err_set("distillation: the teacher's context length differs and there is no tokenizer");
    int64_t *tokens = xmalloc((size_t)n * (size_t)ctx * sizeof(int64_t));
    int rc = tokenizer_encode_batch(d->tok, b->captions + begin, n, ctx, tokens);
    if (rc == 0) rc = distill_teacher_encode(teacher->model, images, tokens, n, &out[0], &out[1]);
    free(tokens);
    return rc;
}

static tensor *rows_to_device(const float *rows, int64_t n, int64_t dim, tensor_device dev) {
    int64_t shape[2] = {n, dim};
    return tensor_to_device(tensor_from_host(rows, shape, 2, TENSOR_F32, false), dev, false);
}

static int stored_features(const distill *d, int m, const loader_batch *b, int64_t begin, int64_t end, tensor_device dev,
                           tensor **out) {
    int64_t n = end - begin, dim = distill_cache_dim(d->caches[m]);
    size_t size = (size_t)n * (size_t)dim;
    float *rows = xmalloc(2 * size * sizeof(float));
    distill_cache_rows(d->caches[m], b->shards + begin, b->indices + begin, b->view_index ? b->view_index + begin : NULL, n,
                       rows, rows + size);
    out[0] = rows_to_device(rows, n, dim, dev);
    out[1] = rows_to_device(rows + size, n, dim, dev);
    free(rows);
    return out[0] && out[1] ? 0 : -1;
}

// The mean cosine between the online teacher's image features and the stored ones.
static int measure_crop_cosine(distill *d, const loader_batch *b, int64_t begin, int64_t end, const tensor *online_image,
                               tensor_device dev) {
    tensor *stored[2];
    if (stored_features(d, 0, b, begin, end, dev, stored) != 0) return -1;
    tensor *dots = tensor_sum_dim(tensor_mul(tensor_to_dtype(online_image, TENSOR_F32), stored[0]), 1, false);
    return tensor_item(tensor_mean(dots), &d->crop_cosine);
}

int distill_teacher_features(distill *d, const clip_model *student, const loader_batch *b, int64_t begin, int64_t end,
                             tensor **out) {
    for (int m = 0; m < d->n_teachers; m++) {
        tensor **pair = out + 2 * m;
        int rc = d->teachers[m].model ? online_features(d, m, student, b, begin, end, pair)
                                      : stored_features(d, m, b, begin, end, student->device, pair);
        if (rc != 0) return -1;
    }
    return d->teachers[0].model && d->caches[0] ? measure_crop_cosine(d, b, begin, end, out[0], student->device) : 0;
}

// ---- the objective ---------------------------------------------------------------------------

// Teacher m's scale, (1) on dev: --distill-logit-scale's, or exp(its own logit scale).
static tensor *teacher_scale(const distill *d, int m, tensor_device dev) {
    if (!isnan(d->scales[m])) return tensor_scalar(d->scales[m], TENSOR_F32, dev);
    if (d->teachers[m].model) return tensor_exp(d->teachers[m].model->logit_scale);
    return tensor_scalar(exp(distill_cache_logit_scale(d->caches[m])), TENSOR_F32, dev);
}

static tensor *contrastive_rows(loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias, int64_t r0,
                                int64_t r1) {
    if (kind == LOSS_KIND_SIGLIP) return loss_siglip_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, bias, r0, r1);
    return loss_clip_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, r0, r1);
}

// The ensemble's distillation term (MobileCLIP: probabilities averaged after the softmax).
static tensor *ensemble_term(const distill *d, tensor *const *all, const tensor *scale, int64_t r0, int64_t r1) {
    const tensor *image[DISTILL_MAX_TEACHERS], *text[DISTILL_MAX_TEACHERS], *scales[DISTILL_MAX_TEACHERS];
    for (int m = 0; m < d->n_teachers; m++) {
        image[m] = all[DISTILL_TEACHER_IMAGE + 2 * m], text[m] = all[DISTILL_TEACHER_TEXT + 2 * m];
        scales[m] = teacher_scale(d, m, tensor_get_device(all[DISTILL_IMAGE]));
    }
    return loss_distill_ensemble_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, image, text, scales, d->n_teachers, r0,
                                      r1);
}

// w_c * contrastive + w * the DistillClipLoss term (one teacher: sharing the student's logits for
// the CLIP loss) or the ensemble's term; w_c = 0 leaves the contrastive loss out altogether.
static tensor *logit_terms(const distill *d, loss_kind kind, tensor *const *all, const tensor *scale, const tensor *bias,
                           int64_t r0, int64_t r1) {
    double wc = d->o.contrastive_weight;
    if (d->o.weight == 0) {
        tensor *contrastive = contrastive_rows(kind, all, scale, bias, r0, r1);
        return wc == 1 ? contrastive : tensor_mul_scalar(contrastive, wc);
    }
    tensor *contrastive = NULL, *distill = NULL;
    if (d->n_teachers == 1) {
        loss_distill_terms t;
        if (loss_distill_rows(all[DISTILL_IMAGE], all[DISTILL_TEXT], scale, all[DISTILL_TEACHER_IMAGE],
                              all[DISTILL_TEACHER_TEXT], teacher_scale(d, 0, tensor_get_device(all[DISTILL_IMAGE])), r0, r1,
                              &t) != 0)
            return NULL;
        contrastive = kind == LOSS_KIND_CLIP ? t.contrastive : NULL, distill = t.distill;
    } else if (!(distill = ensemble_term(d, all, scale, r0, r1)))
        return NULL;
    distill = tensor_mul_scalar(distill, d->o.weight);
    if (wc == 0) return distill;
    if (!contrastive) contrastive = contrastive_rows(kind, all, scale, bias, r0, r1);
    return tensor_add(wc == 1 ? contrastive : tensor_mul_scalar(contrastive, wc), distill);
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
    if (d->o.weight == 0 && d->o.contrastive_weight == 0) return feature_terms(d, all, r0, r1);
    tensor *loss = logit_terms(d, kind, all, scale, bias, r0, r1);
    return d->o.feature_weight > 0 ? tensor_add(loss, feature_terms(d, all, r0, r1)) : loss;
}
