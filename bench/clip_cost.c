#include "bench/clip_cost.h"

// One pre-LN block of width W and MLP width M: attention in/out projections, MLP, two LayerNorms.
static double block_params(double W, double M) { return 4 * W * W + 4 * W + 2 * W * M + M + W + 4 * W; }

// The image tower's MLP width as model/clip.c builds it (and OpenCLIP): int(width * mlp_ratio),
// e.g. 6144 for ViT-g-14's 1408 x 4.3637.
static double vision_mlp(const clip_config *c) { return (int)(c->vision.width * c->vision.mlp_ratio); }

double clip_cost_params(const clip_config *c) {
    double G = c->vision.image_size / c->vision.patch_size, P = c->vision.patch_size, W = c->vision.width;
    double E = c->embed_dim, Wt = c->text.width;
    double vision = 3 * P * P * W + W + (G * G + 1) * W + 2 * W +
                    c->vision.layers * block_params(W, vision_mlp(c)) + 2 * W + W * E;
    double text = (double)c->text.vocab_size * Wt + c->text.context_length * Wt +
                  c->text.layers * block_params(Wt, 4 * Wt) + 2 * Wt + Wt * E;
    return vision + text + 1 + (c->init_logit_bias_set ? 1 : 0);
}

// Forward FLOPs of one pre-LN block over T tokens of width W with MLP width M.
static double block_flops(double T, double W, double M) {
    return 2 * T * W * 3 * W + 2 * T * W * W + 2 * 2 * T * W * M + 2 * 2 * T * T * W;
}

double clip_cost_step_flops(const clip_config *c, double B, double text_len) {
    double G = c->vision.image_size / c->vision.patch_size, T = G * G + 1, W = c->vision.width;
    double vis = 2 * G * G * W * 3 * c->vision.patch_size * c->vision.patch_size + 2 * W * c->embed_dim +
                 c->vision.layers * block_flops(T, W, vision_mlp(c));
    double Wt = c->text.width;
    double txt = c->text.layers * block_flops(text_len, Wt, 4 * Wt) + 2 * Wt * c->embed_dim;
    return 3 * B * (vis + txt);  // backward costs about twice the forward
}
