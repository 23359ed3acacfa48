// tensor: the C API over libtorch that every clipc module computes with.
//
// Handles are opaque. Every function that returns a `tensor *` returns a NEW handle owned by the
// caller; tensor arguments are borrowed. On failure a function returns NULL (or -1) and sets the
// thread-local message of common/error.h (the libtorch message, without its C++ backtrace); no
// C++ exception ever crosses into C. A NULL tensor argument is taken as an earlier failure: the
// function returns NULL at once and keeps that message, so a chain of ops needs one check at the end.
//
// Scopes free intermediates: between tensor_scope_begin() and tensor_scope_end() every new handle
// is recorded and freed at the end, except those passed to tensor_keep(), which move to the
// enclosing scope (or become unscoped). Handles made outside any scope (model parameters, optimizer
// state) live until tensor_free().
//
// Builds against Debian's libtorch 1.13 (CPU) and PyTorch 2.x's libtorch (CUDA).
#ifndef CLIPC_SHIM_TENSOR_H
#define CLIPC_SHIM_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tensor tensor;
typedef struct tensor_generator tensor_generator;

#define TENSOR_MAX_DIMS 8

typedef enum {
    TENSOR_F32,
    TENSOR_F16,
    TENSOR_BF16,
    TENSOR_F64,
    TENSOR_I64,
    TENSOR_I32,
    TENSOR_U8,
    TENSOR_BOOL,
} tensor_dtype;

typedef enum {
    TENSOR_DEVICE_CPU,
    TENSOR_DEVICE_CUDA,
} tensor_device_type;

typedef struct {
    tensor_device_type type;
    int index;  // CUDA ordinal; 0 for the CPU (N >= 1: the device cpu:N of strict device mode)
} tensor_device;

static const tensor_device TENSOR_CPU = {TENSOR_DEVICE_CPU, 0};

size_t tensor_dtype_size(tensor_dtype dtype);
const char *tensor_dtype_name(tensor_dtype dtype);

// ---- runtime ---------------------------------------------------------------------------------
// Sets libtorch's intra-op threads (0: one per core). Returns the number in use.
int tensor_set_threads(int threads);
int tensor_get_threads(void);
int tensor_cuda_device_count(void);  // 0 when libtorch has no CUDA or no GPU is present
bool tensor_has_cuda_build(void);    // libtorch was built with CUDA
const char *tensor_torch_version(void);
// Parses a --device value: "cpu", "cuda" or "cuda:N" (and "cpu:N" in strict device mode); NULL
// picks CUDA when a GPU is present. Fails (with a message) for another name or for CUDA without a
// visible GPU.
int tensor_device_parse(const char *name, tensor_device *dev);
// The name tensor_device_parse reads back: "cpu", "cpu:N" (strict device mode), "cuda:N".
void tensor_device_format(tensor_device dev, char *out, size_t cap);
// The same with the GPU's model when libtorch can tell: "cuda:0 (NVIDIA H100 80GB HBM3)".
void tensor_device_describe(tensor_device dev, char *out, size_t cap);

// Strict device mode (CLIPC_DIST_STRICT=1, read once; the multi-rank tests set it) makes the CPU
// behave as a machine of several GPUs, so that the CPU tests see what a GPU run would refuse:
// - "cpu:N" (N >= 1) names a distinct device. A handle made on it (a creation op given that device,
//   tensor_to_device to it) carries the tag N; a handle made from host memory (tensor_from_host*),
//   on "cpu" (= cpu:0) or outside strict mode carries no tag: it is a host tensor.
// - An op's result carries the tag of its tensor inputs, and an op whose inputs carry different
//   tags fails as CUDA does ("expected all tensors to be on the same device"); a host tensor of
//   rank 0 (a scalar) goes with any device. tensor_copy_ and tensor_swap_ cross devices, as
//   copies do on a GPU; tensor_get_device returns the tagged device.
// - shim/dist.h's Gloo group accepts only tensors tagged with its rank's device (as NCCL accepts
//   only tensors on its GPU), and distributed/ gives each rank a distinct cpu:N (docs/distributed.md).
bool tensor_strict_devices(void);
// TF32 (tensor cores) for float32 matrix products and convolutions on CUDA, as OpenCLIP sets it;
// off gives full float32. No effect on the CPU.
void tensor_set_tf32(bool on);
// libtorch's deterministic algorithms (torch.use_deterministic_algorithms), cuDNN's deterministic
// mode without autotuning, and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, when unset):
// repeated runs on one GPU give the same bits, and an op with no deterministic implementation
// fails with libtorch's message. Call before the first CUDA op. Returns 0 or -1.
int tensor_set_deterministic(bool on);
// Whether dev computes in bf16 (autocast, bf16 weights): the CPU always (libtorch's CPU autocast;
// fast where the processor has AVX-512 BF16 or AMX), a GPU when a bf16 matrix product runs there.
bool tensor_bf16_supported(tensor_device dev);

// ---- counters --------------------------------------------------------------------------------
// What the process asked of its devices since it started; differences of two readings give what a
// piece of code issued. Host reads and synchronisations are counted on every device, so a CPU run
// shows what a GPU run would wait for.
typedef struct {
    int64_t ops;         // ATen operators called at the top level (forward, backward, optimizer),
                         // about one kernel each on a GPU; counted only while tensor_count_ops is on
    int64_t host_reads;  // device-to-host copies: tensor_to_host, tensor_item, tensor_to_device to the CPU
    int64_t syncs;       // calls that wait for the device: every host read, and each copy to a GPU
                         // that is blocking or comes from pageable (not pinned) memory
} tensor_counters;

tensor_counters tensor_counters_get(void);
// Counts operators from now on (on) or stops (off); counting costs about a microsecond an op.
void tensor_count_ops(bool on);
static inline tensor_counters tensor_counters_sub(tensor_counters a, tensor_counters b) {
    return (tensor_counters){a.ops - b.ops, a.host_reads - b.host_reads, a.syncs - b.syncs};
}

// Wall time spent in each top-level operator (by ATen name; an operator's nested operators count
// in it, the backward's operators apart) between tensor_op_times_begin() and tensor_op_times_end(),
// which turn op counting on and off: where a step's time goes on the CPU (bench_step --profile).
typedef struct {
    char name[64];
    int64_t calls;
    double seconds;
} tensor_op_time;
void tensor_op_times_begin(void);
// Stops timing; *out (free() it) gets one entry per operator name, the slowest first. Returns the count.
int tensor_op_times_end(tensor_op_time **out);

// ---- profiling -------------------------------------------------------------------------------
// What the devices ran between tensor_profile_begin() and tensor_profile_end(), from libtorch's
// profiler (kineto, which reads the GPU's activity through CUPTI): device activities on CUDA,
// split into kernels and the copies and fills the driver runs (kineto names those "Memcpy ..."
// and "Memset ..."). One profile at a time, in the calling thread (the autograd threads join it).
typedef struct {
    int64_t kernels;    // CUDA kernels; -1 when this libtorch or machine has no CUDA (a CPU build)
    int64_t attention;  // of those, the fused attention kernels: names with "flash", "fmha" or "sdpa"
                        // (the flash, memory-efficient and cuDNN kernels of tensor_attention); -1 likewise
    int64_t copies;     // memcpy and memset activities on CUDA; -1 likewise
    int64_t events;     // every event the profiler recorded (operators on the host, device activities)
} tensor_profile;

// Whether tensor_profile_end can count kernels: a CUDA-enabled libtorch with a GPU present.
bool tensor_profile_has_kernels(void);
// Starts profiling (host operators, and CUDA activity where tensor_profile_has_kernels). Returns 0,
// or -1 with a message when a profile is already running or libtorch refuses.
int tensor_profile_begin(void);
// Waits for the GPU (the kernels issued so far are then all recorded), stops profiling and counts
// what ran. Returns 0, or -1 with a message when no profile was running.
int tensor_profile_end(tensor_profile *out);

// ---- lifetime and scopes ---------------------------------------------------------------------
void tensor_free(tensor *t);  // NULL is ignored
void tensor_scope_begin(void);
void tensor_scope_end(void);
tensor *tensor_keep(tensor *t);  // moves t out of the innermost scope; returns t
size_t tensor_live_count(void);  // live handles in this process (leak checks)

// ---- creation --------------------------------------------------------------------------------
tensor *tensor_zeros(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev);
tensor *tensor_ones(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev);
tensor *tensor_full(const int64_t *shape, int ndim, double value, tensor_dtype dtype, tensor_device dev);
tensor *tensor_empty(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev);
tensor *tensor_scalar(double value, tensor_dtype dtype, tensor_device dev);  // rank 0
tensor *tensor_arange(int64_t n, tensor_dtype dtype, tensor_device dev);
// Copies a host buffer (C order) into a new CPU tensor; pinned=true allocates page-locked memory
// for fast, asynchronous transfer to a GPU (ignored without CUDA).
tensor *tensor_from_host(const void *data, const int64_t *shape, int ndim, tensor_dtype dtype, bool pinned);
// A CPU tensor over caller-owned memory, without copying. The memory must outlive the handle and
// any non-blocking copy made from it (on a GPU: until the device's next synchronisation).
tensor *tensor_from_host_memory(void *data, const int64_t *shape, int ndim, tensor_dtype dtype);

// Host memory for data a device reads (e.g. the loader's batches): page-locked through CUDA's
// caching pinned allocator when libtorch has CUDA and a GPU is present, so copies to the GPU run
// without blocking; else 64-byte aligned. NULL with a message on failure. Free with tensor_host_free.
void *tensor_host_alloc(size_t nbytes);
void tensor_host_free(void *ptr);  // NULL is ignored

// Seeded random numbers. A generator lives on one device; its state can be saved and restored.
tensor_generator *tensor_generator_new(uint64_t seed, tensor_device dev);
void tensor_generator_free(tensor_generator *g);
// Serialized state: *size bytes written to a new malloc'ed *bytes (caller frees).
int tensor_generator_get_state(tensor_generator *g, uint8_t **bytes, size_t *size);
int tensor_generator_set_state(tensor_generator *g, const uint8_t *bytes, size_t size);
tensor *tensor_normal(const int64_t *shape, int ndim, double mean, double std, tensor_dtype dtype,
                      tensor_device dev, tensor_generator *g);
tensor *tensor_uniform(const int64_t *shape, int ndim, double lo, double hi, tensor_dtype dtype,
                       tensor_device dev, tensor_generator *g);

// ---- queries and host copies -----------------------------------------------------------------
int tensor_ndim(const tensor *t);
int64_t tensor_size(const tensor *t, int dim);  // negative dims count from the end
int tensor_shape(const tensor *t, int64_t shape[TENSOR_MAX_DIMS]);  // returns ndim
int64_t tensor_numel(const tensor *t);
tensor_dtype tensor_get_dtype(const tensor *t);
tensor_device tensor_get_device(const tensor *t);
// Copies the elements (C order, the tensor's own dtype) to dst, which holds exactly nbytes.
int tensor_to_host(const tensor *t, void *dst, size_t nbytes);
// Overwrites t's elements from a host buffer of exactly nbytes (t's dtype, C order).
int tensor_copy_from_host(tensor *t, const void *src, size_t nbytes);
// The elements of t in place, for a C loop over them (optim/adamw.c): t must be a contiguous
// float32 CPU tensor, else NULL with a message. Valid while t's storage lives; writes change t.
float *tensor_data_f32(tensor *t);
// The value of a one-element tensor as a double.
int tensor_item(const tensor *t, double *out);

tensor *tensor_to_device(const tensor *t, tensor_device dev, bool non_blocking);
tensor *tensor_to_dtype(const tensor *t, tensor_dtype dtype);
tensor *tensor_clone(const tensor *t);
tensor *tensor_detach(const tensor *t);

// ---- shape -----------------------------------------------------------------------------------
tensor *tensor_reshape(const tensor *t, const int64_t *shape, int ndim);  // one -1 allowed
tensor *tensor_permute(const tensor *t, const int64_t *dims, int ndim);
tensor *tensor_transpose(const tensor *t, int d0, int d1);
tensor *tensor_unsqueeze(const tensor *t, int dim);
tensor *tensor_expand(const tensor *t, const int64_t *shape, int ndim);
tensor *tensor_contiguous(const tensor *t);
tensor *tensor_cat(const tensor *const *ts, int n, int dim);
tensor *tensor_slice(const tensor *t, int dim, int64_t start, int64_t end);  // [start, end)
tensor *tensor_select(const tensor *t, int dim, int64_t index);  // drops dim
// The n = size(dim) slices of t along dim (each drops dim) into out[0..n): views, whose gradients
// the backward stacks into one tensor (one kernel) where n selects would each fill a zeroed copy of
// t. Returns 0, or -1 with a message when n is not t's size along dim.
int tensor_unbind(const tensor *t, int dim, tensor **out, int n);
tensor *tensor_index_select(const tensor *t, int dim, const tensor *index);
tensor *tensor_gather(const tensor *t, int dim, const tensor *index);

// ---- elementwise -----------------------------------------------------------------------------
tensor *tensor_add(const tensor *a, const tensor *b);
tensor *tensor_sub(const tensor *a, const tensor *b);
tensor *tensor_mul(const tensor *a, const tensor *b);
tensor *tensor_div(const tensor *a, const tensor *b);
tensor *tensor_add_scalar(const tensor *a, double s);
tensor *tensor_mul_scalar(const tensor *a, double s);
tensor *tensor_neg(const tensor *a);
tensor *tensor_exp(const tensor *a);
tensor *tensor_log(const tensor *a);
tensor *tensor_sqrt(const tensor *a);
tensor *tensor_abs(const tensor *a);
tensor *tensor_pow_scalar(const tensor *a, double exponent);
tensor *tensor_clamp(const tensor *a, double lo, double hi);
tensor *tensor_eq(const tensor *a, const tensor *b);  // bool
tensor *tensor_isfinite(const tensor *a);             // bool
// a where cond (bool) is true, b elsewhere, as a new tensor of cond's shape and the given dtype.
tensor *tensor_where_scalar(const tensor *cond, double a, double b, tensor_dtype dtype);

// ---- reductions ------------------------------------------------------------------------------
tensor *tensor_sum(const tensor *a);   // over all elements, rank 0
tensor *tensor_mean(const tensor *a);  // over all elements, rank 0
tensor *tensor_sum_dim(const tensor *a, int dim, bool keepdim);
tensor *tensor_mean_dim(const tensor *a, int dim, bool keepdim);
tensor *tensor_max_dim(const tensor *a, int dim, bool keepdim);  // values only
tensor *tensor_argmax(const tensor *a, int dim, bool keepdim);
tensor *tensor_topk_indices(const tensor *a, int64_t k, int dim);  // largest first
tensor *tensor_norm(const tensor *a);  // L2 norm of all elements, rank 0
// L2 norm of all elements as a float64 rank-0 tensor, as exact as per-tensor norms over millions
// of values: float32 norms of 1024-value chunks (float64 ones for float64 input), summed in float64.
// One float32 reduction over a whole buffer drifts (6e-5 over 3.7M values, tests/test_optim.c).
tensor *tensor_norm_f64(const tensor *a);
// ranks[k] (int64, K) = the 1-based rank of scores[rows[k], cols[k]] within its row of scores
// (R, N), under eval/metrics.h's rule: higher scores first, equal scores by column index, NaN
// after every number. rows and cols are int64 (K) on scores' device.
tensor *tensor_rank_in_rows(const tensor *scores, const tensor *rows, const tensor *cols);

// ---- neural-network ops ----------------------------------------------------------------------
tensor *tensor_matmul(const tensor *a, const tensor *b);
tensor *tensor_linear(const tensor *x, const tensor *w, const tensor *b);  // x @ w^T + b; b may be NULL
tensor *tensor_conv2d(const tensor *x, const tensor *w, const tensor *b, int stride, int padding);
tensor *tensor_layer_norm(const tensor *x, const tensor *w, const tensor *b, double eps);
tensor *tensor_gelu(const tensor *x);        // exact (erf)
tensor *tensor_quick_gelu(const tensor *x);  // x * sigmoid(1.702 x)
tensor *tensor_sigmoid(const tensor *x);
tensor *tensor_log_sigmoid(const tensor *x);
tensor *tensor_softmax(const tensor *x, int dim);
tensor *tensor_log_softmax(const tensor *x, int dim);
// Mean cross-entropy of logits (N, C) against int64 class indices (N).
tensor *tensor_cross_entropy(const tensor *logits, const tensor *labels);
tensor *tensor_embedding(const tensor *weight, const tensor *ids);
tensor *tensor_l2_normalize(const tensor *x, int dim);  // x / max(||x||, 1e-12)
// softmax(q k^T / sqrt(Dh) [+ causal mask]) v for q, k, v (B, H, L, Dh). Uses fused
// scaled_dot_product_attention on libtorch >= 2.0 and the explicit product on 1.13. On CUDA the
// flash, cuDNN and memory-efficient kernels take q, k, v when: they are 4-D with one batch and head
// count, the last dimension has stride 1 and is at most 256 (flash) and a multiple of 8 (cuDNN;
// bf16 for the memory-efficient kernel, 4 for its float32), each starts at a multiple of 16 bytes,
// the dtype is bf16 or f16 (flash, cuDNN) or float32 too (memory-efficient), and `causal` comes
// without a mask over a square score matrix. The towers' q, k, v (model/clip.c: views of one
// projection laid out as cuDNN's packed QKV) meet them all: see docs/gpu.md.
tensor *tensor_attention(const tensor *q, const tensor *k, const tensor *v, bool causal);

// ---- convolutional-network ops (ModifiedResNet towers, model/resnet.h) -----------------------
tensor *tensor_relu(const tensor *x);
// Average pooling over k x k windows with stride k (nn.AvgPool2d(k)) of x (B, C, H, W).
tensor *tensor_avg_pool2d(const tensor *x, int k);
// BatchNorm over the channels of x (B, C, H, W) with weight and bias (C). training: normalize with
// the batch's statistics (biased variance) and, when running_mean and running_var are given, update
// them in place (momentum; the unbiased variance), as nn.BatchNorm2d; otherwise normalize with the
// running statistics, which must be given.
tensor *tensor_batch_norm(const tensor *x, const tensor *w, const tensor *b, tensor *running_mean,
                          tensor *running_var, bool training, double momentum, double eps);
// A differentiable sum over the ranks of a data-parallel group: reduce(ctx, t) sums t (a new
// contiguous tensor) in place over the ranks; the backward sums the gradient the same way
// (SyncBatchNorm's statistics and their gradients). reduce returns 0 or -1 with err_msg() set.
typedef int (*tensor_reduce_fn)(void *ctx, tensor *t);
tensor *tensor_all_reduce_grad(const tensor *x, tensor_reduce_fn reduce, void *ctx);

// ---- in place (optimizer updates; no autograd history is recorded) ---------------------------
int tensor_copy_(tensor *dst, const tensor *src);
int tensor_fill_(tensor *t, double value);
int tensor_mul_scalar_(tensor *t, double s);
int tensor_mul_(tensor *t, const tensor *other);                             // t *= other (broadcast)
int tensor_add_(tensor *t, const tensor *other, double alpha);              // t += alpha * other
int tensor_addcmul_(tensor *t, const tensor *a, const tensor *b, double v);  // t += v * a * b
int tensor_addcdiv_(tensor *t, const tensor *a, const tensor *b, double v);  // t += v * a / b
int tensor_clamp_(tensor *t, double lo, double hi);
// One AdamW update of the flat buffer p in place as whole-buffer ops (about a dozen kernels on a
// GPU), PyTorch's _single_tensor_adamw in its order of operations, with a per-element weight-decay
// mask decay (bool, like p):
//   p *= 1 - lr * weight_decay (where decay);  m = beta1 m + (1 - beta1) g;
//   v = beta2 v + (1 - beta2) g g;  p -= lr / bias_correction1 * m / (sqrt(v) / bias_correction2_sqrt + eps)
// g, m, v are like p; the factors are float32 for bf16 buffers, as PyTorch's Python numbers are.
// optim/adamw.c runs float32 CPU buffers through its own loop instead.
int tensor_adamw_(tensor *p, const tensor *g, tensor *m, tensor *v, const tensor *decay, double lr, double beta1,
                  double beta2, double eps, double weight_decay, double bias_correction1, double bias_correction2_sqrt);

// libtorch's fused multi-tensor AdamW (at::_fused_adamw_, the kernel of torch.optim.AdamW(fused=True)):
// one pass that reads p, g, m, v once and writes p, m, v once, in float32 arithmetic whatever the
// buffers' dtype (float32, bf16, f16, float64), over per-parameter views of flat buffers split in
// two lists: the parts that get weight decay and those that do not. It launches a few multi-tensor
// kernels (each covers up to a few dozen tensors or about 20 million elements). Its arithmetic is
// PyTorch's fused AdamW, which differs from the whole-buffer ops above in the last bits only:
//   p -= lr * weight_decay * p (where decays);  m = beta1 m + (1 - beta1) g;
//   v = beta2 v + (1 - beta2) g g;  p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Available on CUDA from libtorch 2.0, on the CPU from 2.4 (optim/adamw.c uses it on CUDA only).
bool tensor_fused_adamw_available(tensor_device dev);

typedef struct {
    int64_t offset, numel;  // the part [offset, offset + numel) of the flat buffers
    bool decays;            // the part gets weight decay
} tensor_adamw_part;

typedef struct tensor_fused_adamw tensor_fused_adamw;
// An update over parts[0..n) (copied, in increasing order) of the flat buffers p (parameters; it
// may be longer: its tail is not touched), g (gradients), m, v (moments): flat, contiguous, one
// dtype, on one device, whose views it makes now. NULL with a message when fused AdamW is not
// available on that device (libtorch's version named), a part is out of order or a buffer unfit.
tensor_fused_adamw *tensor_fused_adamw_new(const tensor_adamw_part *parts, int n, const tensor *p, const tensor *g,
                                           const tensor *m, const tensor *v);
void tensor_fused_adamw_free(tensor_fused_adamw *f);  // NULL is ignored
// Step t of the update of p, g, m, v in place. The step count lives in a float32 tensor on the
// device (the kernel reads it there; exact up to 2^24 steps), set from t with one fill. The views
// are made again when a buffer moved (repacked). Returns 0 or -1 with a message.
int tensor_fused_adamw_step(tensor_fused_adamw *f, tensor *p, const tensor *g, tensor *m, tensor *v, int64_t t,
                            double lr, double beta1, double beta2, double eps, double weight_decay);
// Exchanges the tensors held by two handles (no data is copied): a parameter moved or repacked
// keeps its handle, so every pointer to it stays valid.
int tensor_swap_(tensor *a, tensor *b);

// ---- autograd --------------------------------------------------------------------------------
int tensor_set_requires_grad(tensor *t, bool requires_grad);
bool tensor_requires_grad(const tensor *t);
// Backpropagates from t; grad_output may be NULL for a one-element t.
int tensor_backward(const tensor *t, const tensor *grad_output);
// Backpropagates from several roots at once (outputs[i] with grads[i]) in one graph traversal.
int tensor_backward_multi(const tensor *const *outputs, const tensor *const *grads, int n);
bool tensor_has_grad(const tensor *t);
tensor *tensor_grad(const tensor *t);  // NULL with an error when t has no gradient
int tensor_zero_grad(tensor *t);        // drops the gradient (set to none)
// Makes grad (same shape, dtype, device; e.g. a view of a flat buffer) t's gradient: backward
// then accumulates into it in place.
int tensor_set_grad(tensor *t, const tensor *grad);
// Gradient mode and autocast as nestable begin/end pairs (per thread).
void tensor_no_grad_begin(void);
void tensor_no_grad_end(void);
// Autocast to bf16 (CPU and CUDA) or f16 (CUDA): matrix products and convolutions run in the
// lower precision, precision-sensitive ops in float32 (libtorch's lists). Returns -1 for another dtype.
int tensor_autocast_begin(tensor_dtype dtype);
void tensor_autocast_end(void);

// Gradient checkpointing, as torch.utils.checkpoint with use_reentrant=True: y = fn(ctx, x) keeping
// only x for the backward instead of everything fn made. The backward runs fn again, with grad
// mode on and the autocast state of the forward, on a detached x that requires grad, and
// backpropagates y's gradient through it: the parameters fn reads get their gradients accumulated
// as usual (into their .grad, e.g. views of a flat buffer), and x's gradient goes on down.
// fn runs inside a tensor scope of its own both times: every handle it makes is freed when it
// returns (it must not tensor_keep one); it returns NULL with a message on failure, which makes
// tensor_checkpoint return NULL, or the backward (tensor_backward*) fail with that message. The
// ctx_size bytes at ctx are copied, so the caller's ctx need not outlive the call. fn must compute
// the same thing twice (no random state is restored: no dropout). Without grad mode, or when x
// does not require grad, fn simply runs once (there is no backward through x to recompute for).
typedef tensor *(*tensor_checkpoint_fn)(const void *ctx, const tensor *x);
tensor *tensor_checkpoint(tensor_checkpoint_fn fn, const void *ctx, size_t ctx_size, const tensor *x);

// ---- memory ----------------------------------------------------------------------------------
// The peak of memory in use on dev since the last tensor_memory_peak_reset (or the start), in
// bytes: on CUDA, what libtorch's caching allocator had allocated (torch.cuda.max_memory_allocated);
// on the CPU, the process's peak resident memory (common/sysinfo.h, sysinfo_peak_rss: everything
// the process holds, weights and loader buffers included). -1 with a message when it cannot be read.
int64_t tensor_memory_peak(tensor_device dev);
// Starts a new peak (e.g. each training step). Returns 0, or -1 with a message.
int tensor_memory_peak_reset(tensor_device dev);

#ifdef __cplusplus
}
#endif

#endif
