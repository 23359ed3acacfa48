#include "loss/loss.h"

#include <stdio.h>

#include "common/error.h"

static void format_shape(const tensor *t, char *buf, size_t size) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = tensor_shape(t, shape);
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

// Checks that a and b are matched (N, D) feature matrices and that scale has one element.
static int check_pair(const char *fn, const tensor *a, const tensor *b, const tensor *scale) {
    if (!a || !b || !scale) return -1;  // an earlier failure: keep its message
    if (tensor_ndim(a) != 2 || tensor_ndim(b) != 2 || tensor_size(a, 0) != tensor_size(b, 0) ||
        tensor_size(a, 1) != tensor_size(b, 1)) {
        char sa[64], sb[64];
        format_shape(a, sa, sizeof sa);
        format_shape(b, sb, sizeof sb);
        return err_set("%s: image and text features must both be (N, D), got %s and %s", fn, sa, sb);
    }
    if (tensor_numel(scale) != 1) return err_set("%s: the logit scale must have one element", fn);
    return 0;
}

static int check_rows(const char *fn, const tensor *features, int64_t row_begin, int64_t row_end) {
    int64_t n = tensor_size(features, 0);
    if (row_begin < 0 || row_end > n || row_begin >= row_end)
        return err_set("%s: row range [%lld, %lld) is not a non-empty part of 0..%lld", fn,
                       (long long)row_begin, (long long)row_end, (long long)n);
    return 0;
}

static int check_teacher(const char *fn, const tensor *image_features, const tensor *teacher_image,
                         const tensor *teacher_text, const tensor *teacher_scale) {
    if (check_pair(fn, teacher_image, teacher_text, teacher_scale) < 0) return -1;
    if (tensor_size(teacher_image, 0) != tensor_size(image_features, 0))
        return err_set("%s: the teacher has %lld samples, the student %lld", fn,
                       (long long)tensor_size(teacher_image, 0), (long long)tensor_size(image_features, 0));
    return 0;
}

tensor *loss_logits(const tensor *a, const tensor *b, const tensor *scale) {
    tensor_scope_begin();
    tensor *logits = tensor_keep(tensor_matmul(tensor_mul(scale, a), tensor_transpose(b, 0, 1)));
    tensor_scope_end();
    return logits;
}

// Logits of the own rows [r0, r1) of a against all rows of b: (r1 - r0, N).
static tensor *row_logits(const tensor *a, const tensor *b, const tensor *scale, int64_t r0, int64_t r1) {
    return loss_logits(tensor_slice(a, 0, r0, r1), b, scale);
}

// Each row's class index in the global batch: its own position, r0 .. r1 - 1.
static tensor *row_labels(const tensor *logits, int64_t r0, int64_t r1) {
    if (!logits) return NULL;
    return tensor_slice(tensor_arange(tensor_size(logits, 1), TENSOR_I64, tensor_get_device(logits)), 0, r0, r1);
}

// Mean cross-entropy of the own rows' logits against their pairs.
static tensor *row_cross_entropy(const tensor *logits, int64_t r0, int64_t r1) {
    return tensor_cross_entropy(logits, row_labels(logits, r0, r1));
}

// The CLIP share from both directions' row logits: (B / 2N) * (mean CE_image + mean CE_text).
static tensor *clip_share(const tensor *per_image, const tensor *per_text, int64_t n, int64_t r0, int64_t r1) {
    tensor *both = tensor_add(row_cross_entropy(per_image, r0, r1), row_cross_entropy(per_text, r0, r1));
    return tensor_mul_scalar(both, (double)(r1 - r0) / (2.0 * (double)n));
}

tensor *loss_clip(const tensor *image_features, const tensor *text_features, const tensor *scale) {
    if (check_pair("loss_clip", image_features, text_features, scale) < 0) return NULL;
    return loss_clip_rows(image_features, text_features, scale, 0, tensor_size(image_features, 0));
}

tensor *loss_clip_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                       int64_t row_begin, int64_t row_end) {
    if (check_pair("loss_clip_rows", image_features, text_features, scale) < 0 ||
        check_rows("loss_clip_rows", image_features, row_begin, row_end) < 0)
        return NULL;
    tensor_scope_begin();
    tensor *per_image = row_logits(image_features, text_features, scale, row_begin, row_end);
    tensor *per_text = row_logits(text_features, image_features, scale, row_begin, row_end);
    tensor *loss = tensor_keep(clip_share(per_image, per_text, tensor_size(image_features, 0), row_begin, row_end));
    tensor_scope_end();
    return loss;
}

tensor *loss_siglip(const tensor *image_features, const tensor *text_features, const tensor *scale,
                    const tensor *bias) {
    if (check_pair("loss_siglip", image_features, text_features, scale) < 0) return NULL;
    return loss_siglip_rows(image_features, text_features, scale, bias, 0, tensor_size(image_features, 0));
}

// Y = 2 eye - 1 restricted to rows [r0, r1): +1 for a row's own pair, -1 elsewhere, in logits' dtype.
static tensor *siglip_row_labels(const tensor *logits, int64_t r0, int64_t r1) {
    if (!logits) return NULL;
    int64_t col_shape[2] = {1, tensor_size(logits, 1)}, row_shape[2] = {r1 - r0, 1};
    tensor *cols = tensor_arange(col_shape[1], TENSOR_I64, tensor_get_device(logits));
    tensor *rows = tensor_reshape(tensor_slice(cols, 0, r0, r1), row_shape, 2);
    tensor *eye = tensor_to_dtype(tensor_eq(rows, tensor_reshape(cols, col_shape, 2)), tensor_get_dtype(logits));
    return tensor_add_scalar(tensor_mul_scalar(eye, 2.0), -1.0);
}

tensor *loss_siglip_rows(const tensor *image_features, const tensor *text_features,
                         const tensor *scale, const tensor *bias, int64_t row_begin, int64_t row_end) {
    if (check_pair("loss_siglip_rows", image_features, text_features, scale) < 0 ||
        check_rows("loss_siglip_rows", image_features, row_begin, row_end) < 0 || !bias)
        return NULL;
    if (tensor_numel(bias) != 1) {
        err_set("loss_siglip_rows: the logit bias must have one element");
        return NULL;
    }
    tensor_scope_begin();
    tensor *logits = tensor_add(row_logits(image_features, text_features, scale, row_begin, row_end), bias);
    tensor *terms = tensor_log_sigmoid(tensor_mul(siglip_row_labels(logits, row_begin, row_end), logits));
    double n = (double)tensor_size(image_features, 0);
    tensor *loss = tensor_keep(tensor_mul_scalar(tensor_sum(terms), -1.0 / n));
    tensor_scope_end();
    return loss;
}

// -(softmax(teacher) * log_softmax(student)) summed over the rows given and all columns.
static tensor *soft_cross_entropy_sum(const tensor *teacher_logits, const tensor *student_logits) {
    tensor *products = tensor_mul(tensor_softmax(teacher_logits, 1), tensor_log_softmax(student_logits, 1));
    return tensor_neg(tensor_sum(products));
}

int loss_distill(const tensor *image_features, const tensor *text_features, const tensor *scale,
                 const tensor *teacher_image_features, const tensor *teacher_text_features,
                 const tensor *teacher_scale, loss_distill_terms *out) {
    if (check_pair("loss_distill", image_features, text_features, scale) < 0) return -1;
    return loss_distill_rows(image_features, text_features, scale, teacher_image_features,
                             teacher_text_features, teacher_scale, 0, tensor_size(image_features, 0), out);
}

int loss_distill_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                      const tensor *teacher_image_features, const tensor *teacher_text_features,
                      const tensor *teacher_scale, int64_t row_begin, int64_t row_end,
                      loss_distill_terms *out) {
    const char *fn = "loss_distill_rows";
    out->contrastive = out->distill = NULL;
    if (check_pair(fn, image_features, text_features, scale) < 0 ||
        check_rows(fn, image_features, row_begin, row_end) < 0 ||
        check_teacher(fn, image_features, teacher_image_features, teacher_text_features, teacher_scale) < 0)
        return -1;
    int64_t r0 = row_begin, r1 = row_end, n = tensor_size(image_features, 0);
    tensor_scope_begin();
    tensor *per_image = row_logits(image_features, text_features, scale, r0, r1);
    tensor *per_text = row_logits(text_features, image_features, scale, r0, r1);
    tensor *t_image = tensor_detach(teacher_image_features), *t_text = tensor_detach(teacher_text_features);
    tensor *t_scale = tensor_detach(teacher_scale);
    tensor *teacher_per_image = row_logits(t_image, t_text, t_scale, r0, r1);
    tensor *teacher_per_text = row_logits(t_text, t_image, t_scale, r0, r1);
    tensor *distill = tensor_add(soft_cross_entropy_sum(teacher_per_image, per_image),
                                 soft_cross_entropy_sum(teacher_per_text, per_text));
    out->distill = tensor_keep(tensor_mul_scalar(distill, 1.0 / (2.0 * (double)n)));
    out->contrastive = tensor_keep(clip_share(per_image, per_text, n, r0, r1));
    tensor_scope_end();
    if (out->distill && out->contrastive) return 0;
    tensor_free(out->distill);
    tensor_free(out->contrastive);
    out->contrastive = out->distill = NULL;
    return -1;
}

// ---- teacher ensembles (MobileCLIP) ---------------------------------------------------------

// The teachers' probabilities of rows [r0, r1) in one direction, averaged after the softmax.
static tensor *ensemble_probs(const tensor *const *rows, const tensor *const *cols, const tensor *const *scales, int m,
                              int64_t r0, int64_t r1) {
    tensor *sum = NULL;
    for (int i = 0; i < m; i++) {
        tensor *p = tensor_softmax(row_logits(tensor_detach(rows[i]), tensor_detach(cols[i]), tensor_detach(scales[i]), r0, r1), 1);
        sum = sum ? tensor_add(sum, p) : p;
    }
    return tensor_mul_scalar(sum, 1.0 / m);
}

tensor *loss_distill_ensemble_rows(const tensor *image_features, const tensor *text_features, const tensor *scale,
                                   const tensor *const *teacher_image, const tensor *const *teacher_text,
                                   const tensor *const *teacher_scale, int n_teachers, int64_t row_begin,
                                   int64_t row_end) {
    const char *fn = "loss_distill_ensemble_rows";
    if (check_pair(fn, image_features, text_features, scale) < 0 || check_rows(fn, image_features, row_begin, row_end) < 0)
        return NULL;
    if (n_teachers < 1) {
        err_set("%s: no teacher", fn);
        return NULL;
    }
    for (int i = 0; i < n_teachers; i++)
        if (check_teacher(fn, image_features, teacher_image[i], teacher_text[i], teacher_scale[i]) < 0) return NULL;
    int64_t r0 = row_begin, r1 = row_end, n = tensor_size(image_features, 0);
    tensor_scope_begin();
    tensor *per_image = tensor_log_softmax(row_logits(image_features, text_features, scale, r0, r1), 1);
    tensor *per_text = tensor_log_softmax(row_logits(text_features, image_features, scale, r0, r1), 1);
    tensor *p_image = ensemble_probs(teacher_image, teacher_text, teacher_scale, n_teachers, r0, r1);
    tensor *p_text = ensemble_probs(teacher_text, teacher_image, teacher_scale, n_teachers, r0, r1);
    tensor *both = tensor_add(tensor_sum(tensor_mul(p_image, per_image)), tensor_sum(tensor_mul(p_text, per_text)));
    tensor *loss = tensor_keep(tensor_mul_scalar(both, -1.0 / (2.0 * (double)n)));
    tensor_scope_end();
    return loss;
}

static int check_same_shape(const char *fn, const tensor *student, const tensor *teacher) {
    if (!student || !teacher) return -1;
    if (tensor_ndim(student) == 2 && tensor_ndim(teacher) == 2 && tensor_size(student, 0) == tensor_size(teacher, 0) &&
        tensor_size(student, 1) == tensor_size(teacher, 1))
        return 0;
    char ss[64], st[64];
    format_shape(student, ss, sizeof ss);
    format_shape(teacher, st, sizeof st);
    return err_set("%s: student features %s and teacher features %s must both be (N, D)", fn, ss, st);
}

tensor *loss_feature_mse(const tensor *student, const tensor *teacher) {
    if (check_same_shape("loss_feature_mse", student, teacher) < 0) return NULL;
    return loss_feature_mse_rows(student, teacher, 0, tensor_size(student, 0));
}

tensor *loss_feature_mse_rows(const tensor *student, const tensor *teacher, int64_t row_begin, int64_t row_end) {
    const char *fn = "loss_feature_mse_rows";
    if (check_same_shape(fn, student, teacher) < 0 || check_rows(fn, student, row_begin, row_end) < 0) return NULL;
    double elements = (double)tensor_numel(student);
    tensor_scope_begin();
    tensor *diff = tensor_sub(tensor_slice(student, 0, row_begin, row_end),
                              tensor_slice(tensor_detach(teacher), 0, row_begin, row_end));
    tensor *loss = tensor_keep(tensor_mul_scalar(tensor_sum(tensor_mul(diff, diff)), 1.0 / elements));
    tensor_scope_end();
    return loss;
}

tensor *loss_contrastive_rows(loss_kind kind, const tensor *image_features, const tensor *text_features,
                              const tensor *scale, const tensor *bias, int64_t row_begin, int64_t row_end) {
    switch (kind) {
    case LOSS_KIND_CLIP: return loss_clip_rows(image_features, text_features, scale, row_begin, row_end);
    case LOSS_KIND_SIGLIP: return loss_siglip_rows(image_features, text_features, scale, bias, row_begin, row_end);
    }
    err_set("loss: unknown kind %d", (int)kind);
    return NULL;
}
