// clip_cost: the size and arithmetic of a CLIP config by formula, for the benchmark programs
// (bench_step's achieved FLOP/s, scaling_model's step times). The formulas follow model/clip.h's
// towers; scaling_model --check compares the parameter count with a model clipc builds.
#ifndef CLIPC_BENCH_CLIP_COST_H
#define CLIPC_BENCH_CLIP_COST_H

#include "model/config.h"

// The values clipc trains (and all-reduces): both towers, the projections, logit_scale and
// logit_bias when the config has one.
double clip_cost_params(const clip_config *c);

// FLOPs (2 per multiply-add) of one training step of B samples, the text tower over text_len
// positions: the towers' forward and backward (the backward costs twice the forward), not the loss.
double clip_cost_step_flops(const clip_config *c, double B, double text_len);

#endif
