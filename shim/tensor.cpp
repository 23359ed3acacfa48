// The libtorch side of shim/tensor.h. Every entry point catches all C++ exceptions and turns them
// into a NULL/-1 return plus the thread-local message of common/error.h.
#include "shim/tensor_impl.hpp"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#ifdef CLIPC_HAVE_NCCL  // the CUDA runtime is linked with NCCL (shim/CMakeLists.txt)
#include <cuda_runtime_api.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct tensor_generator {
    at::Generator gen;
};

namespace {

std::atomic<size_t> live_handles{0};
thread_local std::vector<std::vector<tensor *>> scopes;
thread_local std::vector<bool> grad_mode_stack;
struct autocast_saved {
    bool cpu, cuda;
    at::ScalarType cpu_dtype, cuda_dtype;
};
thread_local std::vector<autocast_saved> autocast_stack;

// Counters (tensor_counters). Operators are counted by a RecordFunction callback at nesting depth
// 0 of each thread, so an operator that calls others counts once.
std::atomic<int64_t> count_ops{0}, count_host_reads{0}, count_syncs{0};
thread_local int op_depth = 0;
std::mutex count_mutex;
bool counting_ops = false;
at::CallbackHandle count_handle;

// Host blocks of tensor_host_alloc, by address.
std::mutex host_mutex;
std::unordered_map<void *, at::Tensor> host_blocks;

void count_host_read() {
    count_host_reads.fetch_add(1, std::memory_order_relaxed);
    count_syncs.fetch_add(1, std::memory_order_relaxed);
}

void scope_register(tensor *h) {
    if (scopes.empty()) {
        h->scope_level = -1;
        return;
    }
    h->scope_level = (int)scopes.size() - 1;
    h->scope_slot = scopes.back().size();
    scopes.back().push_back(h);
}

void scope_unregister(tensor *h) {
    if (h->scope_level >= 0 && h->scope_level < (int)scopes.size()) scopes[h->scope_level][h->scope_slot] = nullptr;
    h->scope_level = -1;
}

tensor *wrap(at::Tensor t) {
    tensor *h = new tensor{std::move(t), -1, 0, shim_next_tag};
    live_handles++;
    scope_register(h);
    return h;
}

at::ScalarType to_scalar_type(tensor_dtype d) {
    switch (d) {
    case TENSOR_F32: return at::kFloat;
    case TENSOR_F16: return at::kHalf;
    case TENSOR_BF16: return at::kBFloat16;
    case TENSOR_F64: return at::kDouble;
    case TENSOR_I64: return at::kLong;
    case TENSOR_I32: return at::kInt;
    case TENSOR_U8: return at::kByte;
    case TENSOR_BOOL: return at::kBool;
    }
    throw std::invalid_argument("unknown tensor_dtype " + std::to_string((int)d));
}

tensor_dtype from_scalar_type(at::ScalarType s) {
    switch (s) {
    case at::kFloat: return TENSOR_F32;
    case at::kHalf: return TENSOR_F16;
    case at::kBFloat16: return TENSOR_BF16;
    case at::kDouble: return TENSOR_F64;
    case at::kLong: return TENSOR_I64;
    case at::kInt: return TENSOR_I32;
    case at::kByte: return TENSOR_U8;
    case at::kBool: return TENSOR_BOOL;
    default: throw std::invalid_argument(std::string("unsupported scalar type ") + c10::toString(s));
    }
}

at::Device to_device(tensor_device d) {
    if (d.type == TENSOR_DEVICE_CUDA) return at::Device(at::kCUDA, (c10::DeviceIndex)d.index);
    return at::Device(at::kCPU);
}

// The options of a tensor made on dev: the handle wrap() makes next is placed there.
at::TensorOptions options(tensor_dtype dtype, tensor_device dev) {
    shim_place(dev);
    return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(dev));
}

at::IntArrayRef dims(const int64_t *shape, int ndim) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) throw std::invalid_argument("ndim " + std::to_string(ndim) + " out of range");
    return at::IntArrayRef(shape, (size_t)ndim);
}

std::string tag_name(int tag) { return tag > 0 ? "cpu:" + std::to_string(tag) : std::string("the host"); }

}  // namespace

// ---- strict device mode --------------------------------------------------------------------------

thread_local int shim_next_tag = 0;

bool shim_strict(void) {
    static const bool on = [] {
        const char *v = std::getenv("CLIPC_DIST_STRICT");
        return v && std::strcmp(v, "1") == 0;
    }();
    return on;
}

int shim_device_tag(tensor_device dev) {
    return shim_strict() && dev.type == TENSOR_DEVICE_CPU && dev.index > 0 ? dev.index : 0;
}

// A host input of rank 0 (a scalar) goes with any device, as on CUDA.
bool shim_merge_tag(int *tag, const tensor *t) {
    int k = t->device_tag;
    if (k == 0 && t->t.dim() == 0) return true;
    if (*tag < 0 || *tag == k) {  // *tag: -1 before the first input that counts
        *tag = k;
        return true;
    }
    err_set("expected all tensors to be on the same device, but found at least two devices, %s and %s "
            "(strict device mode, CLIPC_DIST_STRICT=1)", tag_name(*tag).c_str(), tag_name(k).c_str());
    return false;
}

bool shim_need_list(const tensor *const *ts, int n) {
    int tag = -1;
    for (int i = 0; i < n; i++)
        if (!ts[i] || (shim_strict() && !shim_merge_tag(&tag, ts[i]))) return false;
    shim_next_tag = tag > 0 ? tag : 0;
    return true;
}

bool tensor_strict_devices(void) { return shim_strict(); }

std::string shim_what(const std::exception &e) {
    const c10::Error *ce = dynamic_cast<const c10::Error *>(&e);
    std::string msg(ce ? ce->what_without_backtrace() : e.what());
    for (char &c : msg)
        if (c == '\n' || c == '\r') c = ' ';
    size_t end = msg.find_last_not_of(' ');
    msg.erase(end == std::string::npos ? 0 : end + 1);
    return msg;
}

void shim_set_error(const std::exception &e) { err_set("libtorch: %s", shim_what(e).c_str()); }

#define SHIM_OP(expr) SHIM_TRY(nullptr, return wrap(expr);)

extern "C" {

size_t tensor_dtype_size(tensor_dtype dtype) {
    switch (dtype) {
    case TENSOR_F64: case TENSOR_I64: return 8;
    case TENSOR_F32: case TENSOR_I32: return 4;
    case TENSOR_F16: case TENSOR_BF16: return 2;
    case TENSOR_U8: case TENSOR_BOOL: return 1;
    }
    return 0;
}

const char *tensor_dtype_name(tensor_dtype dtype) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL"};
    return (unsigned)dtype < sizeof names / sizeof names[0] ? names[dtype] : "?";
}

// ---- runtime -------------------------------------------------------------------------------------

int tensor_set_threads(int threads) {
    if (threads <= 0) threads = (int)std::max(1u, std::thread::hardware_concurrency());
    SHIM_TRY(-1, at::set_num_threads(threads); return at::get_num_threads();)
}

int tensor_get_threads(void) { return at::get_num_threads(); }

int tensor_cuda_device_count(void) {
    SHIM_TRY(0, return at::hasCUDA() ? (int)at::detail::getCUDAHooks().getNumGPUs() : 0;)
}

bool tensor_has_cuda_build(void) { return at::detail::getCUDAHooks().hasCUDA() || at::hasCUDA(); }

const char *tensor_torch_version(void) { return TORCH_VERSION; }

int tensor_device_parse(const char *name, tensor_device *dev) {
    int gpus = tensor_cuda_device_count(), index = 0, cpu = 0;
    bool cuda = name ? strncmp(name, "cuda", 4) == 0 : gpus > 0;
    bool strict_cpu = shim_strict() && name && sscanf(name, "cpu:%d", &cpu) == 1 && cpu >= 0;
    if (name && !strict_cpu && strcmp(name, "cpu") != 0 && strcmp(name, "cuda") != 0 && sscanf(name, "cuda:%d", &index) != 1)
        return err_set("--device must be cpu, cuda or cuda:N, got '%s'", name);
    if (cuda && (index < 0 || index >= gpus))
        return err_set("--device %s: libtorch sees %d GPU%s", name ? name : "cuda", gpus, gpus == 1 ? "" : "s");
    *dev = cuda ? tensor_device{TENSOR_DEVICE_CUDA, index} : tensor_device{TENSOR_DEVICE_CPU, cpu};
    return 0;
}

void tensor_device_describe(tensor_device dev, char *out, size_t cap) {
    char name[32];
    tensor_device_format(dev, name, sizeof name);
#ifdef CLIPC_HAVE_NCCL
    cudaDeviceProp p;
    if (dev.type == TENSOR_DEVICE_CUDA && cudaGetDeviceProperties(&p, dev.index) == cudaSuccess) {
        snprintf(out, cap, "%s (%s)", name, p.name);
        return;
    }
#endif
    snprintf(out, cap, "%s", name);
}

void tensor_device_format(tensor_device dev, char *out, size_t cap) {
    if (dev.type == TENSOR_DEVICE_CUDA) snprintf(out, cap, "cuda:%d", dev.index);
    else if (shim_device_tag(dev) > 0) snprintf(out, cap, "cpu:%d", dev.index);
    else snprintf(out, cap, "cpu");
}

void tensor_set_tf32(bool on) {
    try {
        at::globalContext().setAllowTF32CuBLAS(on);
        at::globalContext().setAllowTF32CuDNN(on);
    } catch (...) {
    }
}

int tensor_set_deterministic(bool on) {
    SHIM_TRY(-1, {
        if (on) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
        at::globalContext().setDeterministicAlgorithms(on, false);
        at::globalContext().setDeterministicCuDNN(on);
        if (on) at::globalContext().setBenchmarkCuDNN(false);
        return 0;
    })
}

bool tensor_bf16_supported(tensor_device dev) {
    if (dev.type == TENSOR_DEVICE_CPU) return true;
    try {
        at::Tensor a = at::ones({8, 8}, options(TENSOR_BF16, dev));
        (void)at::matmul(a, a).sum().item<double>();
        return true;
    } catch (...) {
        return false;
    }
}

// ---- counters ------------------------------------------------------------------------------------

// Wall time of top-level operators by name while timing_ops (tensor_op_times_begin).
struct op_timer {
    std::mutex mutex;
    std::unordered_map<std::string, std::pair<int64_t, double>> by_name;  // calls, seconds
    std::atomic<bool> on{false};
} op_times;
thread_local std::chrono::steady_clock::time_point op_start;

static std::unique_ptr<at::ObserverContext> op_started(const at::RecordFunction &) {
    if (op_depth++ == 0) {
        count_ops.fetch_add(1, std::memory_order_relaxed);
        if (op_times.on.load(std::memory_order_relaxed)) op_start = std::chrono::steady_clock::now();
    }
    return nullptr;
}

static void op_ended(const at::RecordFunction &fn, at::ObserverContext *) {
    if (--op_depth != 0 || !op_times.on.load(std::memory_order_relaxed)) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - op_start).count();
    std::lock_guard<std::mutex> lock(op_times.mutex);
    auto &entry = op_times.by_name[fn.name()];
    entry.first++, entry.second += s;
}

tensor_counters tensor_counters_get(void) {
    return tensor_counters{count_ops.load(), count_host_reads.load(), count_syncs.load()};
}

void tensor_count_ops(bool on) {
    std::lock_guard<std::mutex> lock(count_mutex);
    if (on == counting_ops) return;
    try {
        if (on)
            count_handle = at::addGlobalCallback(
                at::RecordFunctionCallback(op_started, op_ended).scopes({at::RecordScope::FUNCTION}));
        else
            at::removeCallback(count_handle);
        counting_ops = on;
    } catch (...) {
    }
}

void tensor_op_times_begin(void) {
    {
        std::lock_guard<std::mutex> lock(op_times.mutex);
        op_times.by_name.clear();
    }
    tensor_count_ops(true);
    op_times.on = true;
}

int tensor_op_times_end(tensor_op_time **out) {
    op_times.on = false;
    tensor_count_ops(false);
    std::lock_guard<std::mutex> lock(op_times.mutex);
    int n = (int)op_times.by_name.size(), i = 0;
    *out = static_cast<tensor_op_time *>(calloc((size_t)(n > 0 ? n : 1), sizeof(tensor_op_time)));
    for (const auto &kv : op_times.by_name) {
        tensor_op_time *t = &(*out)[i++];
        snprintf(t->name, sizeof t->name, "%s", kv.first.c_str());
        t->calls = kv.second.first, t->seconds = kv.second.second;
    }
    std::sort(*out, *out + n, [](const tensor_op_time &a, const tensor_op_time &b) { return a.seconds > b.seconds; });
    return n;
}

// ---- lifetime and scopes -------------------------------------------------------------------------

void tensor_free(tensor *t) {
    if (!t) return;
    scope_unregister(t);
    delete t;
    live_handles--;
}

void tensor_scope_begin(void) { scopes.emplace_back(); }

void tensor_scope_end(void) {
    if (scopes.empty()) return;
    std::vector<tensor *> handles = std::move(scopes.back());
    scopes.pop_back();
    for (tensor *h : handles)
        if (h) {
            h->scope_level = -1;
            tensor_free(h);
        }
}

tensor *tensor_keep(tensor *t) {
    if (!t || t->scope_level < 0) return t;
    int level = t->scope_level;
    scope_unregister(t);
    if (level > 0) {
        t->scope_level = level - 1;
        t->scope_slot = scopes[level - 1].size();
        scopes[level - 1].push_back(t);
    }
    return t;
}

size_t tensor_live_count(void) { return live_handles.load(); }

// ---- creation ------------------------------------------------------------------------------------

tensor *tensor_zeros(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::zeros(dims(shape, ndim), options(dtype, dev)))
}

tensor *tensor_ones(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::ones(dims(shape, ndim), options(dtype, dev)))
}

tensor *tensor_full(const int64_t *shape, int ndim, double value, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::full(dims(shape, ndim), value, options(dtype, dev)))
}

tensor *tensor_empty(const int64_t *shape, int ndim, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::empty(dims(shape, ndim), options(dtype, dev)))
}

tensor *tensor_scalar(double value, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::scalar_tensor(value, options(dtype, dev)))
}

tensor *tensor_arange(int64_t n, tensor_dtype dtype, tensor_device dev) {
    SHIM_OP(at::arange(n, options(dtype, dev)))
}

tensor *tensor_from_host(const void *data, const int64_t *shape, int ndim, tensor_dtype dtype, bool pinned) {
    SHIM_TRY(nullptr, {
        at::TensorOptions opts = options(dtype, TENSOR_CPU);
        if (pinned && at::hasCUDA()) opts = opts.pinned_memory(true);
        at::Tensor t = at::empty(dims(shape, ndim), opts);
        if (t.numel() > 0) {
            if (!data) throw std::invalid_argument("tensor_from_host: NULL data");
            std::memcpy(t.data_ptr(), data, t.nbytes());
        }
        shim_next_tag = 0;  // the host
        return wrap(t);
    })
}

tensor *tensor_from_host_memory(void *data, const int64_t *shape, int ndim, tensor_dtype dtype) {
    SHIM_TRY(nullptr, {
        at::Tensor t = at::from_blob(data, dims(shape, ndim), options(dtype, TENSOR_CPU));
        shim_next_tag = 0;  // the host
        return wrap(t);
    })
}

void *tensor_host_alloc(size_t nbytes) {
    SHIM_TRY(nullptr, {
        at::TensorOptions o = at::TensorOptions().dtype(at::kByte);
        if (at::hasCUDA()) o = o.pinned_memory(true);
        at::Tensor block = at::empty({(int64_t)std::max<size_t>(nbytes, 1)}, o);
        void *p = block.data_ptr();
        std::lock_guard<std::mutex> lock(host_mutex);
        host_blocks.emplace(p, std::move(block));
        return p;
    })
}

void tensor_host_free(void *ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(host_mutex);
    host_blocks.erase(ptr);
}

// Generators always live on the CPU: parameters are initialised there and moved, so a seed gives
// the same model on every device.
tensor_generator *tensor_generator_new(uint64_t seed, tensor_device dev) {
    (void)dev;
    SHIM_TRY(nullptr, return new tensor_generator{at::detail::createCPUGenerator(seed)};)
}

void tensor_generator_free(tensor_generator *g) { delete g; }

int tensor_generator_get_state(tensor_generator *g, uint8_t **bytes, size_t *size) {
    SHIM_NEED_INT(g);
    SHIM_TRY(-1, {
        std::lock_guard<std::mutex> lock(g->gen.mutex());
        at::Tensor state = g->gen.get_state().contiguous();
        *size = state.nbytes();
        *bytes = (uint8_t *)xmalloc(*size);
        std::memcpy(*bytes, state.data_ptr(), *size);
        return 0;
    })
}

int tensor_generator_set_state(tensor_generator *g, const uint8_t *bytes, size_t size) {
    SHIM_NEED_INT(g, bytes);
    SHIM_TRY(-1, {
        std::lock_guard<std::mutex> lock(g->gen.mutex());
        at::Tensor state = at::empty({(int64_t)size}, at::kByte);
        std::memcpy(state.data_ptr(), bytes, size);
        g->gen.set_state(state);
        return 0;
    })
}

tensor *tensor_normal(const int64_t *shape, int ndim, double mean, double std, tensor_dtype dtype,
                      tensor_device dev, tensor_generator *g) {
    SHIM_NEED(g);
    SHIM_TRY(nullptr, {
        at::Tensor t = at::empty(dims(shape, ndim), options(dtype, TENSOR_CPU));
        t.normal_(mean, std, g->gen);
        shim_place(dev);
        return wrap(t.to(to_device(dev)));
    })
}

tensor *tensor_uniform(const int64_t *shape, int ndim, double lo, double hi, tensor_dtype dtype,
                       tensor_device dev, tensor_generator *g) {
    SHIM_NEED(g);
    SHIM_TRY(nullptr, {
        at::Tensor t = at::empty(dims(shape, ndim), options(dtype, TENSOR_CPU));
        t.uniform_(lo, hi, g->gen);
        shim_place(dev);
        return wrap(t.to(to_device(dev)));
    })
}

// ---- queries and host copies ---------------------------------------------------------------------

int tensor_ndim(const tensor *t) { return t ? (int)t->t.dim() : -1; }

int64_t tensor_size(const tensor *t, int dim) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, return t->t.size(dim);)
}

int tensor_shape(const tensor *t, int64_t shape[TENSOR_MAX_DIMS]) {
    SHIM_NEED_INT(t);
    int n = (int)t->t.dim();
    if (n > TENSOR_MAX_DIMS) return err_set("tensor has %d dimensions (at most %d supported)", n, TENSOR_MAX_DIMS);
    for (int i = 0; i < n; i++) shape[i] = t->t.size(i);
    return n;
}

int64_t tensor_numel(const tensor *t) { return t ? t->t.numel() : -1; }

tensor_dtype tensor_get_dtype(const tensor *t) {
    try {
        return from_scalar_type(t->t.scalar_type());
    } catch (const std::exception &e) {
        shim_set_error(e);
        return TENSOR_F32;
    }
}

tensor_device tensor_get_device(const tensor *t) {
    at::Device d = t->t.device();
    if (d.is_cuda()) return tensor_device{TENSOR_DEVICE_CUDA, d.index() < 0 ? 0 : (int)d.index()};
    return tensor_device{TENSOR_DEVICE_CPU, t->device_tag};
}

int tensor_to_host(const tensor *t, void *dst, size_t nbytes) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, {
        count_host_read();
        at::Tensor c = t->t.detach().to(at::kCPU).contiguous();
        if (c.nbytes() != nbytes)
            return err_set("tensor_to_host: tensor has %zu bytes, buffer %zu", (size_t)c.nbytes(), nbytes);
        if (nbytes) std::memcpy(dst, c.data_ptr(), nbytes);
        return 0;
    })
}

int tensor_copy_from_host(tensor *t, const void *src, size_t nbytes) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, {
        size_t expected = (size_t)t->t.numel() * t->t.element_size();
        if (expected != nbytes)
            return err_set("tensor_copy_from_host: tensor has %zu bytes, buffer %zu", expected, nbytes);
        at::Tensor host = at::empty(t->t.sizes(), t->t.options().device(at::kCPU));
        if (nbytes) std::memcpy(host.data_ptr(), src, nbytes);
        at::NoGradGuard no_grad;
        if (!t->t.device().is_cpu()) count_syncs++;
        t->t.copy_(host);
        return 0;
    })
}

float *tensor_data_f32(tensor *t) {
    SHIM_NEED(t);
    const at::Tensor &x = t->t;
    if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || !x.is_contiguous()) {
        err_set("tensor_data_f32: a contiguous float32 CPU tensor is needed, got %s on %s%s",
                tensor_dtype_name(tensor_get_dtype(t)), x.device().str().c_str(),
                x.is_contiguous() ? "" : " (not contiguous)");
        return nullptr;
    }
    return x.data_ptr<float>();
}

int tensor_item(const tensor *t, double *out) {
    SHIM_NEED_INT(t);
    count_host_read();
    SHIM_TRY(-1, *out = t->t.item<double>(); return 0;)
}

// Counts a copy between devices: to the CPU it is a host read; to a GPU it waits unless it is
// non-blocking from pinned memory.
static void count_transfer(const at::Tensor &t, tensor_device dev, bool non_blocking) {
    bool from_cpu = t.device().is_cpu(), to_cpu = dev.type == TENSOR_DEVICE_CPU;
    if (from_cpu == to_cpu) return;
    if (to_cpu) count_host_read();
    else if (!non_blocking || !t.is_pinned()) count_syncs++;
}

tensor *tensor_to_device(const tensor *t, tensor_device dev, bool non_blocking) {
    SHIM_NEED(t);
    SHIM_TRY(nullptr, {
        count_transfer(t->t, dev, non_blocking);
        at::Tensor moved = t->t.to(to_device(dev), non_blocking);
        shim_place(dev);
        return wrap(moved);
    })
}

tensor *tensor_to_dtype(const tensor *t, tensor_dtype dtype) {
    SHIM_NEED(t);
    SHIM_OP(t->t.to(to_scalar_type(dtype)))
}

tensor *tensor_clone(const tensor *t) {
    SHIM_NEED(t);
    SHIM_OP(t->t.clone())
}

tensor *tensor_detach(const tensor *t) {
    SHIM_NEED(t);
    SHIM_OP(t->t.detach())
}

// ---- shape ---------------------------------------------------------------------------------------

tensor *tensor_reshape(const tensor *t, const int64_t *shape, int ndim) {
    SHIM_NEED(t);
    SHIM_OP(t->t.reshape(dims(shape, ndim)))
}

tensor *tensor_permute(const tensor *t, const int64_t *d, int ndim) {
    SHIM_NEED(t);
    SHIM_OP(t->t.permute(dims(d, ndim)))
}

tensor *tensor_transpose(const tensor *t, int d0, int d1) {
    SHIM_NEED(t);
    SHIM_OP(t->t.transpose(d0, d1))
}

tensor *tensor_unsqueeze(const tensor *t, int dim) {
    SHIM_NEED(t);
    SHIM_OP(t->t.unsqueeze(dim))
}

tensor *tensor_expand(const tensor *t, const int64_t *shape, int ndim) {
    SHIM_NEED(t);
    SHIM_OP(t->t.expand(dims(shape, ndim)))
}

tensor *tensor_contiguous(const tensor *t) {
    SHIM_NEED(t);
    SHIM_OP(t->t.contiguous())
}

tensor *tensor_cat(const tensor *const *ts, int n, int dim) {
    if (!shim_need_list(ts, n)) return nullptr;
    std::vector<at::Tensor> list;
    for (int i = 0; i < n; i++) list.push_back(ts[i]->t);
    SHIM_OP(at::cat(list, dim))
}

tensor *tensor_slice(const tensor *t, int dim, int64_t start, int64_t end) {
    SHIM_NEED(t);
    SHIM_OP(t->t.slice(dim, start, end))
}

tensor *tensor_select(const tensor *t, int dim, int64_t index) {
    SHIM_NEED(t);
    SHIM_OP(t->t.select(dim, index))
}

int tensor_unbind(const tensor *t, int dim, tensor **out, int n) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, {
        std::vector<at::Tensor> parts = t->t.unbind(dim);
        if ((int64_t)parts.size() != n)
            return err_set("tensor_unbind: %d slices asked for, the tensor has %zu along dim %d", n, parts.size(), dim);
        for (int i = 0; i < n; i++) out[i] = wrap(parts[i]);  // each on t's placement
        return 0;
    })
}

tensor *tensor_index_select(const tensor *t, int dim, const tensor *index) {
    SHIM_NEED(t, index);
    SHIM_OP(t->t.index_select(dim, index->t))
}

tensor *tensor_gather(const tensor *t, int dim, const tensor *index) {
    SHIM_NEED(t, index);
    SHIM_OP(t->t.gather(dim, index->t))
}

// ---- elementwise and reductions ------------------------------------------------------------------

#define SHIM_BINARY(name, expr)                          \
    tensor *name(const tensor *a, const tensor *b) {     \
        SHIM_NEED(a, b);                                 \
        SHIM_OP(expr)                                    \
    }
#define SHIM_UNARY(name, expr)        \
    tensor *name(const tensor *a) {   \
        SHIM_NEED(a);                 \
        SHIM_OP(expr)                 \
    }

SHIM_BINARY(tensor_add, a->t + b->t)
SHIM_BINARY(tensor_sub, a->t - b->t)
SHIM_BINARY(tensor_mul, a->t * b->t)
SHIM_BINARY(tensor_div, a->t / b->t)
SHIM_BINARY(tensor_eq, a->t.eq(b->t))
SHIM_BINARY(tensor_matmul, at::matmul(a->t, b->t))
SHIM_UNARY(tensor_neg, -a->t)
SHIM_UNARY(tensor_exp, a->t.exp())
SHIM_UNARY(tensor_log, a->t.log())
SHIM_UNARY(tensor_sqrt, a->t.sqrt())
SHIM_UNARY(tensor_abs, a->t.abs())
SHIM_UNARY(tensor_isfinite, a->t.isfinite())
SHIM_UNARY(tensor_sum, a->t.sum())
SHIM_UNARY(tensor_mean, a->t.mean())
SHIM_UNARY(tensor_norm, a->t.norm())
SHIM_UNARY(tensor_gelu, at::gelu(a->t))
SHIM_UNARY(tensor_quick_gelu, a->t * at::sigmoid(1.702 * a->t))
SHIM_UNARY(tensor_sigmoid, at::sigmoid(a->t))
SHIM_UNARY(tensor_log_sigmoid, at::log_sigmoid(a->t))

tensor *tensor_where_scalar(const tensor *cond, double a, double b, tensor_dtype dtype) {
    SHIM_NEED(cond);
    SHIM_TRY(nullptr, {
        at::TensorOptions o = cond->t.options().dtype(to_scalar_type(dtype));
        return wrap(at::where(cond->t, at::scalar_tensor(a, o), at::scalar_tensor(b, o)));
    })
}

tensor *tensor_add_scalar(const tensor *a, double s) {
    SHIM_NEED(a);
    SHIM_OP(a->t + s)
}

tensor *tensor_mul_scalar(const tensor *a, double s) {
    SHIM_NEED(a);
    SHIM_OP(a->t * s)
}

tensor *tensor_pow_scalar(const tensor *a, double exponent) {
    SHIM_NEED(a);
    SHIM_OP(a->t.pow(exponent))
}

tensor *tensor_clamp(const tensor *a, double lo, double hi) {
    SHIM_NEED(a);
    SHIM_OP(a->t.clamp(lo, hi))
}

tensor *tensor_norm_f64(const tensor *a) {
    SHIM_NEED(a);
    SHIM_TRY(nullptr, {
        const int64_t chunk = 1024;
        at::Tensor flat = a->t.reshape({-1});
        int64_t n = flat.numel(), whole = n / chunk * chunk;
        at::ScalarType acc = flat.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
        at::Tensor head = whole == n ? flat : flat.narrow(0, 0, whole);
        at::Tensor norms = at::linalg_vector_norm(head.view({whole / chunk, chunk}), 2, at::IntArrayRef{1}, false, acc);
        if (whole < n)  // the last partial chunk
            norms = at::cat({norms, at::linalg_vector_norm(flat.narrow(0, whole, n - whole), 2, c10::nullopt, true, acc)});
        return wrap(norms.to(at::kDouble).norm());
    })
}

tensor *tensor_sum_dim(const tensor *a, int dim, bool keepdim) {
    SHIM_NEED(a);
    SHIM_OP(a->t.sum(dim, keepdim))
}

tensor *tensor_mean_dim(const tensor *a, int dim, bool keepdim) {
    SHIM_NEED(a);
    SHIM_OP(a->t.mean(dim, keepdim))
}

tensor *tensor_max_dim(const tensor *a, int dim, bool keepdim) {
    SHIM_NEED(a);
    SHIM_OP(std::get<0>(a->t.max(dim, keepdim)))
}

tensor *tensor_argmax(const tensor *a, int dim, bool keepdim) {
    SHIM_NEED(a);
    SHIM_OP(a->t.argmax(dim, keepdim))
}

tensor *tensor_topk_indices(const tensor *a, int64_t k, int dim) {
    SHIM_NEED(a);
    SHIM_OP(std::get<1>(a->t.topk(k, dim, true, true)))
}

tensor *tensor_rank_in_rows(const tensor *scores, const tensor *rows, const tensor *cols) {
    SHIM_NEED(scores, rows, cols);
    SHIM_TRY(nullptr, {
        at::NoGradGuard no_grad;
        at::Tensor col = cols->t.unsqueeze(1);                              // (K, 1)
        at::Tensor s = scores->t.index_select(0, rows->t);                  // (K, N)
        at::Tensor target = s.gather(1, col);                               // (K, 1)
        at::Tensor index = at::arange(s.size(1), col.options()).unsqueeze(0);  // (1, N)
        at::Tensor s_nan = s.isnan(), target_nan = target.isnan();
        at::Tensor above = s.gt(target) | (s_nan.logical_not() & target_nan);
        at::Tensor tie = s.eq(target) | (s_nan & target_nan);
        return wrap((above | (tie & index.lt(col))).sum(1) + 1);
    })
}

// ---- neural-network ops --------------------------------------------------------------------------

tensor *tensor_linear(const tensor *x, const tensor *w, const tensor *b) {
    SHIM_NEED(x, w);
    SHIM_OP(b ? at::linear(x->t, w->t, b->t) : at::linear(x->t, w->t))
}

tensor *tensor_conv2d(const tensor *x, const tensor *w, const tensor *b, int stride, int padding) {
    SHIM_NEED(x, w);
    SHIM_OP(at::conv2d(x->t, w->t, b ? b->t : at::Tensor(), {stride, stride}, {padding, padding}))
}

tensor *tensor_layer_norm(const tensor *x, const tensor *w, const tensor *b, double eps) {
    SHIM_NEED(x, w, b);
    SHIM_OP(at::layer_norm(x->t, {x->t.size(-1)}, w->t, b->t, eps))
}

tensor *tensor_softmax(const tensor *x, int dim) {
    SHIM_NEED(x);
    SHIM_OP(at::softmax(x->t, dim))
}

tensor *tensor_log_softmax(const tensor *x, int dim) {
    SHIM_NEED(x);
    SHIM_OP(at::log_softmax(x->t, dim))
}

tensor *tensor_cross_entropy(const tensor *logits, const tensor *labels) {
    SHIM_NEED(logits, labels);
    SHIM_OP(at::cross_entropy_loss(logits->t, labels->t))
}

// A weight whose gradient is already a dense buffer (a view of a packed list's flat gradients) gets
// a sparse gradient from the backward, which autograd adds into that buffer row by row; the dense
// backward would fill a zero table (49408 x 512 for ViT-B-32's text tower) and add all of it.
tensor *tensor_embedding(const tensor *weight, const tensor *ids) {
    SHIM_NEED(weight, ids);
    const at::Tensor &grad = weight->t.grad();
    bool sparse = weight->t.requires_grad() && grad.defined() && !grad.is_sparse();
    SHIM_OP(at::embedding(weight->t, ids->t, -1, false, sparse))
}

tensor *tensor_l2_normalize(const tensor *x, int dim) {
    SHIM_NEED(x);
    SHIM_OP(x->t / x->t.norm(2, dim, true).clamp_min(1e-12).expand_as(x->t))
}

tensor *tensor_attention(const tensor *q, const tensor *k, const tensor *v, bool causal) {
    SHIM_NEED(q, k, v);
    SHIM_TRY(nullptr, {
#if CLIPC_TORCH_AT_LEAST(2, 0)
        return wrap(at::scaled_dot_product_attention(q->t, k->t, v->t, {}, 0.0, causal));
#else
        // Same arithmetic as nn.MultiheadAttention on 1.13: scale q, add the -inf mask, softmax.
        double scale = 1.0 / std::sqrt((double)q->t.size(-1));
        at::Tensor scores = at::matmul(q->t * scale, k->t.transpose(-2, -1));
        if (causal) {
            int64_t L = q->t.size(-2), S = k->t.size(-2);
            at::Tensor mask = at::ones({L, S}, q->t.options().dtype(at::kBool)).triu(1);
            scores = scores.masked_fill(mask, -std::numeric_limits<double>::infinity());
        }
        return wrap(at::matmul(at::softmax(scores, -1), v->t));
#endif
    })
}

// ---- convolutional-network ops -------------------------------------------------------------------

tensor *tensor_relu(const tensor *x) {
    SHIM_NEED(x);
    SHIM_OP(at::relu(x->t))
}

tensor *tensor_avg_pool2d(const tensor *x, int k) {
    SHIM_NEED(x);
    SHIM_OP(at::avg_pool2d(x->t, {k, k}, {k, k}))
}

tensor *tensor_batch_norm(const tensor *x, const tensor *w, const tensor *b, tensor *running_mean,
                          tensor *running_var, bool training, double momentum, double eps) {
    SHIM_NEED(x, w, b);
    if (!training && (!running_mean || !running_var)) {
        err_set("tensor_batch_norm: evaluation needs the running statistics");
        return nullptr;
    }
    at::Tensor rm = running_mean ? running_mean->t : at::Tensor(), rv = running_var ? running_var->t : at::Tensor();
    SHIM_OP(at::batch_norm(x->t, w->t, b->t, rm, rv, training, momentum, eps, false))
}

namespace {

// Sums t over the ranks through the caller's callback, on a handle outside every scope (the
// backward may run on the autograd engine's device thread).
at::Tensor reduce_through(tensor_reduce_fn reduce, void *ctx, const at::Tensor &t, int tag) {
    tensor h{t.contiguous().clone(), -1, 0, tag};
    if (reduce(ctx, &h) != 0) throw shim_error(err_msg());
    return h.t;
}

struct AllReduceSum : torch::autograd::Function<AllReduceSum> {
    static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x, int64_t fn, int64_t arg,
                              int64_t tag) {
        ctx->saved_data["fn"] = fn, ctx->saved_data["arg"] = arg, ctx->saved_data["tag"] = tag;
        return reduce_through(reinterpret_cast<tensor_reduce_fn>(fn), reinterpret_cast<void *>(arg), x, (int)tag);
    }
    static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                   torch::autograd::variable_list grads) {
        auto fn = reinterpret_cast<tensor_reduce_fn>(ctx->saved_data["fn"].toInt());
        auto arg = reinterpret_cast<void *>(ctx->saved_data["arg"].toInt());
        return {reduce_through(fn, arg, grads[0], (int)ctx->saved_data["tag"].toInt()), at::Tensor(), at::Tensor(),
                at::Tensor()};
    }
};

}  // namespace

tensor *tensor_all_reduce_grad(const tensor *x, tensor_reduce_fn reduce, void *ctx) {
    SHIM_NEED(x);
    SHIM_TRY(nullptr, {
        at::Tensor sum = AllReduceSum::apply(x->t, reinterpret_cast<int64_t>(reduce), reinterpret_cast<int64_t>(ctx),
                                             (int64_t)x->device_tag);
        shim_next_tag = x->device_tag;  // the callback's own ops moved it
        return wrap(sum);
    })
}

// ---- in place ------------------------------------------------------------------------------------

#define SHIM_INPLACE(body)              \
    SHIM_TRY(-1, {                      \
        at::NoGradGuard no_grad;        \
        body;                           \
        return 0;                       \
    })

int tensor_copy_(tensor *dst, const tensor *src) {
    if (!dst || !src) return -1;  // copies cross devices
    SHIM_INPLACE(dst->t.copy_(src->t))
}

int tensor_fill_(tensor *t, double value) {
    SHIM_NEED_INT(t);
    SHIM_INPLACE(t->t.fill_(value))
}

int tensor_mul_scalar_(tensor *t, double s) {
    SHIM_NEED_INT(t);
    SHIM_INPLACE(t->t.mul_(s))
}

int tensor_mul_(tensor *t, const tensor *other) {
    SHIM_NEED_INT(t, other);
    SHIM_INPLACE(t->t.mul_(other->t))
}

int tensor_add_(tensor *t, const tensor *other, double alpha) {
    SHIM_NEED_INT(t, other);
    SHIM_INPLACE(t->t.add_(other->t, alpha))
}

int tensor_addcmul_(tensor *t, const tensor *a, const tensor *b, double v) {
    SHIM_NEED_INT(t, a, b);
    SHIM_INPLACE(t->t.addcmul_(a->t, b->t, v))
}

int tensor_addcdiv_(tensor *t, const tensor *a, const tensor *b, double v) {
    SHIM_NEED_INT(t, a, b);
    SHIM_INPLACE(t->t.addcdiv_(a->t, b->t, v))
}

int tensor_clamp_(tensor *t, double lo, double hi) {
    SHIM_NEED_INT(t);
    SHIM_INPLACE(t->t.clamp_(lo, hi))
}

int tensor_adamw_(tensor *p, const tensor *g, tensor *m, tensor *v, const tensor *decay, double lr, double beta1,
                  double beta2, double eps, double weight_decay, double bias_correction1, double bias_correction2_sqrt) {
    SHIM_NEED_INT(p, g, m, v, decay);
    SHIM_TRY(-1, {
        at::NoGradGuard no_grad;
        at::Tensor &pt = p->t;
        at::ScalarType ft = pt.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
        at::TensorOptions o = pt.options().dtype(ft);
        pt.mul_(at::where(decay->t, at::scalar_tensor(1 - lr * weight_decay, o), at::scalar_tensor(1.0, o)));
        m->t.mul_(beta1).add_(g->t, 1 - beta1);
        v->t.mul_(beta2).addcmul_(g->t, g->t, 1 - beta2);
        at::Tensor denom = (v->t.sqrt() / at::scalar_tensor(bias_correction2_sqrt, o)).add_(eps);
        pt.addcdiv_(m->t, denom, -(lr / bias_correction1));
        return 0;
    })
}

int tensor_swap_(tensor *a, tensor *b) {
    if (!a || !b) return -1;  // moves a handle to another device
    std::swap(a->t, b->t);
    std::swap(a->device_tag, b->device_tag);
    return 0;
}

// ---- autograd ------------------------------------------------------------------------------------

int tensor_set_requires_grad(tensor *t, bool requires_grad) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, t->t.requires_grad_(requires_grad); return 0;)
}

bool tensor_requires_grad(const tensor *t) { return t && t->t.requires_grad(); }

int tensor_backward(const tensor *t, const tensor *grad_output) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, t->t.backward(grad_output ? grad_output->t : at::Tensor()); return 0;)
}

int tensor_backward_multi(const tensor *const *outputs, const tensor *const *grads, int n) {
    if (!shim_need_list(outputs, n) || !shim_need_list(grads, n)) return -1;
    std::vector<at::Tensor> outs, gs;
    for (int i = 0; i < n; i++) {
        outs.push_back(outputs[i]->t);
        gs.push_back(grads[i]->t);
    }
    SHIM_TRY(-1, torch::autograd::backward(outs, gs); return 0;)
}

bool tensor_has_grad(const tensor *t) { return t && t->t.grad().defined(); }

tensor *tensor_grad(const tensor *t) {
    SHIM_NEED(t);
    SHIM_TRY(nullptr, {
        at::Tensor g = t->t.grad();
        if (!g.defined()) {
            err_set("tensor has no gradient");
            return nullptr;
        }
        return wrap(g);
    })
}

int tensor_zero_grad(tensor *t) {
    SHIM_NEED_INT(t);
    SHIM_TRY(-1, t->t.mutable_grad().reset(); return 0;)
}

int tensor_set_grad(tensor *t, const tensor *grad) {
    SHIM_NEED_INT(t, grad);
    SHIM_TRY(-1, {
        if (!grad->t.sizes().equals(t->t.sizes()) || grad->t.scalar_type() != t->t.scalar_type() ||
            grad->t.device() != t->t.device())
            return err_set("a gradient must match its tensor's shape, dtype and device");
        t->t.mutable_grad() = grad->t;
        return 0;
    })
}

void tensor_no_grad_begin(void) {
    grad_mode_stack.push_back(c10::GradMode::is_enabled());
    c10::GradMode::set_enabled(false);
}

void tensor_no_grad_end(void) {
    if (grad_mode_stack.empty()) return;
    c10::GradMode::set_enabled(grad_mode_stack.back());
    grad_mode_stack.pop_back();
}

// libtorch 2.4 replaced the device-specific autocast setters with device-type ones.
static autocast_saved autocast_get() {
#if CLIPC_TORCH_AT_LEAST(2, 4)
    return {at::autocast::is_autocast_enabled(at::kCPU), at::autocast::is_autocast_enabled(at::kCUDA),
            at::autocast::get_autocast_dtype(at::kCPU), at::autocast::get_autocast_dtype(at::kCUDA)};
#else
    return {at::autocast::is_cpu_enabled(), at::autocast::is_enabled(), at::autocast::get_autocast_cpu_dtype(),
            at::autocast::get_autocast_gpu_dtype()};
#endif
}

static void autocast_set(const autocast_saved &a) {
#if CLIPC_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(at::kCPU, a.cpu);
    at::autocast::set_autocast_dtype(at::kCPU, a.cpu_dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, a.cuda);
    at::autocast::set_autocast_dtype(at::kCUDA, a.cuda_dtype);
#else
    at::autocast::set_cpu_enabled(a.cpu);
    at::autocast::set_autocast_cpu_dtype(a.cpu_dtype);
    at::autocast::set_enabled(a.cuda);
    at::autocast::set_autocast_gpu_dtype(a.cuda_dtype);
#endif
}

// The CPU autocasts to bf16 only; f16 autocasts on CUDA alone.
int tensor_autocast_begin(tensor_dtype dtype) {
    SHIM_TRY(-1, {
        if (dtype != TENSOR_BF16 && dtype != TENSOR_F16)
            return err_set("autocast supports BF16 and F16, not %s", tensor_dtype_name(dtype));
        autocast_saved before = autocast_get(), now = before;
        now.cuda = true, now.cuda_dtype = to_scalar_type(dtype);
        if (dtype == TENSOR_BF16) now.cpu = true, now.cpu_dtype = at::kBFloat16;
        autocast_stack.push_back(before);
        autocast_set(now);
        at::autocast::increment_nesting();
        return 0;
    })
}

void tensor_autocast_end(void) {
    if (autocast_stack.empty()) return;
    try {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        autocast_set(autocast_stack.back());
    } catch (...) {
    }
    autocast_stack.pop_back();
}


// ---- gradient checkpointing ------------------------------------------------------------------------

}  // extern "C"

namespace {

// The autocast state of the forward, set again for the recompute (nested as tensor_autocast_begin).
struct autocast_restore {
    autocast_saved before;
    explicit autocast_restore(const autocast_saved &now) : before(autocast_get()) {
        autocast_set(now);
        at::autocast::increment_nesting();
    }
    ~autocast_restore() {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        autocast_set(before);
    }
};

struct scope_guard {
    scope_guard() { tensor_scope_begin(); }
    ~scope_guard() { tensor_scope_end(); }
};

// fn on a handle of x (placed as tag) in a scope of its own; its result, or fn's message thrown.
at::Tensor checkpoint_call(tensor_checkpoint_fn fn, const void *ctx, const at::Tensor &x, int tag) {
    scope_guard scope;
    shim_next_tag = tag;
    tensor *out = fn(ctx, wrap(x));
    if (!out) throw shim_error(err_msg());
    return out->t;
}

struct checkpoint_call_args {
    tensor_checkpoint_fn fn;
    const void *ctx;
    size_t ctx_size;
    int tag;
};

// The autograd node: forward without the graph (apply runs it under no-grad), backward by recompute.
struct checkpoint_function : public torch::autograd::Function<checkpoint_function> {
    static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x, const checkpoint_call_args *a) {
        autocast_saved ac = autocast_get();
        auto &d = ctx->saved_data;
        d["fn"] = (int64_t)reinterpret_cast<intptr_t>(a->fn);
        d["ctx"] = std::string(static_cast<const char *>(a->ctx), a->ctx_size);
        d["tag"] = (int64_t)a->tag;
        d["autocast"] = std::vector<int64_t>{ac.cpu, ac.cuda, (int64_t)ac.cpu_dtype, (int64_t)ac.cuda_dtype};
        ctx->save_for_backward({x});
        return checkpoint_call(a->fn, a->ctx, x, a->tag);
    }

    static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                   torch::autograd::variable_list grads) {
        auto &d = ctx->saved_data;
        auto fn = reinterpret_cast<tensor_checkpoint_fn>((intptr_t)d["fn"].toInt());
        const std::string &bytes = d["ctx"].toStringRef();
        std::vector<std::max_align_t> aligned(bytes.size() / sizeof(std::max_align_t) + 1);  // fn reads its struct
        std::memcpy(aligned.data(), bytes.data(), bytes.size());
        std::vector<int64_t> ac = d["autocast"].toIntVector();
        autocast_saved state{ac[0] != 0, ac[1] != 0, (at::ScalarType)ac[2], (at::ScalarType)ac[3]};
        at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true), y;
        {
            at::AutoGradMode grad_on(true);
            autocast_restore autocast(state);
            y = checkpoint_call(fn, aligned.data(), x, (int)d["tag"].toInt());
        }
        if (grads[0].defined() && y.requires_grad()) torch::autograd::backward({y}, {grads[0]});
        return {x.grad(), at::Tensor()};
    }
};

}  // namespace

extern "C" {

tensor *tensor_checkpoint(tensor_checkpoint_fn fn, const void *ctx, size_t ctx_size, const tensor *x) {
    SHIM_NEED(x);
    int tag = shim_next_tag;
    SHIM_TRY(nullptr, {
        at::Tensor y;
        checkpoint_call_args a{fn, ctx, ctx_size, tag};
        if (c10::GradMode::is_enabled() && x->t.requires_grad()) y = checkpoint_function::apply(x->t, &a);
        else y = checkpoint_call(fn, ctx, x->t, tag);
        shim_next_tag = tag;
        return wrap(y);
    })
}

}  // extern "C"
