// adamw: PyTorch's AdamW (torch.optim.AdamW, no amsgrad) with OpenCLIP's defaults and
// weight-decay rule, over the flat buffers of one or more parameter lists (param/param.h), and
// optimizer state that checkpoints can save and restore.
//
// At step t (one count for the whole optimizer: every trainable parameter has a gradient, zero
// when it took no part in the loss, as in PyTorch after a full backward):
//   p *= 1 - lr * wd                                      (decoupled decay; wd = 0 if excluded)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The update runs over a list's whole trainable buffer at once, so a step costs about the same
// whatever the number of parameter tensors. Which code runs (adamw_path_for, adamw_get_path):
//   - ADAMW_PATH_HOST_LOOP: float32 parameters on the CPU: one OpenMP loop in adamw.c over the
//     host buffers (llm.c's adamw_update), each line rounded to float32 where PyTorch's in-place
//     ops round (torch.optim.AdamW's single-tensor update), the decay through a per-element mask;
//   - ADAMW_PATH_FUSED: parameters on CUDA with libtorch >= 2.0 (float32 master weights with
//     amp_bf16 and fp32, bf16 weights with pure_bf16): libtorch's fused multi-tensor kernel
//     (at::_fused_adamw_, torch.optim.AdamW(fused=True); shim/tensor.h: tensor_fused_adamw_step)
//     over views of the flat buffers, one per trainable parameter, in two lists: those OpenCLIP's
//     rule decays (with weight_decay) and the others (with 0). It reads p, g, m, v once and writes
//     p, m, v once, in float32 arithmetic even for bf16 buffers (a fill of the step count and a few
//     multi-tensor kernels a step). Its results differ from the other paths' in the last bits, as
//     PyTorch's fused AdamW differs from its for-loop one. The step count is the same: the kernel
//     reads t (it does not count by itself: torch.optim.AdamW adds 1 to its step tensors before the
//     call), adamw_step() counts and sets it;
//   - ADAMW_PATH_BUFFER_OPS: anything else (CUDA with libtorch < 2.0; bf16 or float64 on the
//     CPU): shim/tensor.h's tensor_adamw_, a dozen whole-buffer ops on the parameters' device in
//     PyTorch's single-tensor order, the decay through a per-element mask.
// An optimizer may also own a range of each list's trainable buffer only (adamw_init_range: ZeRO
// sharding, train/zero.h): its moments then cover that range, its update writes only there, on
// every path (the fused kernel over views of the parts of the parameters inside the range).
// Frozen parameters are not optimized and hold no state. The moments take the parameters' dtype
// (bf16 with --precision pure_bf16, as PyTorch's AdamW on bf16 parameters).
//
// The optimizer borrows the lists, which must stay packed on one device while it lives; its state
// tensors live outside any tensor scope, so create it outside one (like the model's parameters).
#ifndef CLIPC_OPTIM_ADAMW_H
#define CLIPC_OPTIM_ADAMW_H

#include <stdbool.h>
#include <stdint.h>

#include "param/param.h"
#include "shim/tensor.h"

typedef struct {
    double lr;            // the learning rate of the next step (schedules set it: adamw_set_lr)
    double beta1, beta2;
    double eps;
    double weight_decay;  // applied to the parameters adamw_param_decays() selects
} adamw_config;

// OpenCLIP's defaults: lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.2.
adamw_config adamw_config_default(void);

// Whether a parameter gets weight decay: OpenCLIP's rule exactly. Excluded are tensors with
// ndim < 2 and names containing "bn", "ln", "bias" or "logit_scale"; so the 2-D positional
// embeddings are decayed and the 1-D class embedding is not.
bool adamw_param_decays(const char *name, int ndim);

typedef struct adamw adamw;

typedef enum {
    ADAMW_PATH_HOST_LOOP,   // float32 on the CPU: adamw.c's loop
    ADAMW_PATH_FUSED,       // libtorch's fused multi-tensor kernel (CUDA, libtorch >= 2.0)
    ADAMW_PATH_BUFFER_OPS,  // tensor_adamw_'s whole-buffer ops
    ADAMW_PATH_AUTO,        // adamw_init_path: each list on the path adamw_path_for picks
} adamw_path;

// The path parameters of dtype on dev take (the choice above).
adamw_path adamw_path_for(tensor_device dev, tensor_dtype dtype);
const char *adamw_path_name(adamw_path path);  // "host loop", "fused", "buffer ops", "auto"

// An optimizer over the trainable parameters of lists[0..n_lists) (each packed), on the path
// adamw_path_for picks for each list (ADAMW_PATH_AUTO). NULL with a message on failure.
adamw *adamw_init(param_list *const *lists, int n_lists, adamw_config config);
// The same on a given path (tests and benchmarks compare them): NULL with a message where that
// path cannot run (the host loop off float32 CPU buffers, the fused kernel without the libtorch
// that has it there: shim/tensor.h, tensor_fused_adamw_available).
adamw *adamw_init_path(param_list *const *lists, int n_lists, adamw_config config, adamw_path path);
// The same over elements [lo[i], hi[i]) of lists[i]'s trainable buffer only (0 <= lo <= hi <=
// n_trainable; lo, hi NULL: the whole buffers), on a given path or ADAMW_PATH_AUTO: the moments
// hold hi - lo elements per list.
adamw *adamw_init_range(param_list *const *lists, int n_lists, adamw_config config, adamw_path path,
                        const int64_t *lo, const int64_t *hi);
void adamw_free(adamw *opt);  // NULL is ignored
// The path of the first list's update (the lists of a run share their device and dtype); the host
// loop when no list has trainable parameters.
adamw_path adamw_get_path(const adamw *opt);

void adamw_set_lr(adamw *opt, double lr);
adamw_config adamw_get_config(const adamw *opt);

// One update of every trainable element from the lists' gradient buffers, left in place.
int adamw_step(adamw *opt);

// ---- state for checkpoints ---------------------------------------------------------------------
// Three entries per trainable parameter, in list order:
//   "optimizer.<param>.step"        rank-0 I64, the step count (the same for all)
//   "optimizer.<param>.exp_avg"     like the parameter
//   "optimizer.<param>.exp_avg_sq"  like the parameter
int adamw_state_count(const adamw *opt);
// Entry i: its name (owned by opt) and a NEW handle to its value (the step as a fresh CPU tensor,
// the moments in float32: views sharing the optimizer's storage, or converted copies when the
// parameters are bf16, so checkpoints always hold float32); the caller frees the handle. Not of a
// sharded optimizer: copy its state into a whole one first (adamw_state_copy).
int adamw_state_get(const adamw *opt, int i, const char **name, tensor **value);
// Copies value into the entry named name (converted to the moments' dtype). Errors name the
// entry: an unknown name, a shape that differs from the parameter's, a step that is not a
// non-negative integer. A sharded optimizer keeps the part of the value inside its range.
int adamw_state_set(adamw *opt, const char *name, const tensor *value);

// Copies src's step count and the moments of the elements both own into dst (the same lists).
int adamw_state_copy(adamw *dst, const adamw *src);

// The range of list i (in the lists with trainable parameters, in order) the optimizer owns and
// its moments (borrowed: (hi - lo) each), for gathering a sharded state.
typedef struct {
    param_list *list;
    int64_t lo, hi;
    tensor *exp_avg, *exp_avg_sq;
} adamw_shard;
int adamw_shard_count(const adamw *opt);
adamw_shard adamw_get_shard(const adamw *opt, int i);

// The bytes of the moments this optimizer holds (halved per rank by --zero 1 on 2 ranks).
int64_t adamw_state_bytes(const adamw *opt);

#endif
