#include "train/objective.h"

#include "data/loader.h"

tensor *train_objective_loss(void *objective, const void *batch) {
    const train_objective *o = objective;
    const loader_batch *b = batch;
    const clip_model *m = o->model;
    tensor *images = b->images_u8 ? clip_images_u8_to_device(m, b->images_u8, b->n, o->mean, o->std)
                                  : clip_images_to_device(m, b->images, b->n);
    tensor *img = clip_encode_image(m, images, true);
    tensor *txt = clip_encode_text_host(m, b->tokens, b->n, true);
    return loss_contrastive(o->loss, img, txt, tensor_exp(m->logit_scale), m->logit_bias);
}
