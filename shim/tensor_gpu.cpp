// What the GPU step adds to the C API of shim/tensor.h: libtorch's fused multi-tensor AdamW over
// per-parameter views of the flat buffers (at::_fused_adamw_: libtorch >= 2.0 on CUDA, >= 2.4 on
// the CPU), the peak memory of a device, and the profile of what the devices ran (libtorch's
// kineto profiler: the kernels and copies of CUDA). Every entry point catches all C++ exceptions (shim/tensor_impl.hpp).
#include "shim/tensor_impl.hpp"

extern "C" {
#include "common/sysinfo.h"
}

#include <torch/csrc/autograd/profiler_kineto.h>
#ifdef CLIPC_TORCH_CUDA  // a CUDA-enabled libtorch (shim/CMakeLists.txt)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

// ---- fused AdamW ---------------------------------------------------------------------------------

enum { FUSED_P, FUSED_G, FUSED_M, FUSED_V, FUSED_BUFFERS };

struct tensor_fused_adamw {
    std::vector<tensor_adamw_part> parts;
    at::Tensor step;                                 // float32, rank 0, on the device
    const void *bases[FUSED_BUFFERS] = {};           // the buffers the views below were made from
    std::vector<at::Tensor> views[2][FUSED_BUFFERS];  // [decays][buffer]: one view per part
    std::vector<at::Tensor> steps[2];                // `step` once per view of that list
};

namespace {

// The libtorch of this build, for the messages of what it lacks.
std::string this_libtorch() { return std::string("this is libtorch ") + TORCH_VERSION; }

// One list through libtorch's kernel, with that list's weight decay.
void fused_adamw_list(const std::vector<at::Tensor> (&v)[FUSED_BUFFERS], const std::vector<at::Tensor> &steps,
                      double lr, double beta1, double beta2, double weight_decay, double eps) {
#if CLIPC_TORCH_AT_LEAST(2, 0)
    // aten::_fused_adamw_(self, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, float lr,
    // float beta1, float beta2, float weight_decay, float eps, bool amsgrad, bool maximize, Tensor?
    // grad_scale=None, Tensor? found_inf=None): the same positional order from 2.0 to 2.11 (later
    // releases add an overload taking lr as a Tensor; a double picks this one). No amsgrad: no
    // max list.
    at::_fused_adamw_(v[FUSED_P], v[FUSED_G], v[FUSED_M], v[FUSED_V], at::TensorList(), steps, lr, beta1, beta2,
                      weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
#else
    (void)v, (void)steps, (void)lr, (void)beta1, (void)beta2, (void)weight_decay, (void)eps;
    throw shim_error("fused AdamW needs libtorch >= 2.0 (at::_fused_adamw_); " + this_libtorch());
#endif
}

// p, g, m, v as the views need them: flat, contiguous, one dtype and device, long enough.
void fused_check_buffers(const tensor_fused_adamw *f, const at::Tensor *const bufs[FUSED_BUFFERS]) {
    static const char *const names[FUSED_BUFFERS] = {"parameters", "gradients", "exp_avg", "exp_avg_sq"};
    int64_t end = f->parts.empty() ? 0 : f->parts.back().offset + f->parts.back().numel;
    for (int k = 0; k < FUSED_BUFFERS; k++) {
        const at::Tensor &b = *bufs[k];
        std::string what = std::string("fused AdamW: the ") + names[k] + " buffer ";
        if (b.dim() != 1 || !b.is_contiguous() || b.numel() < end)
            throw shim_error(what + "must be flat, contiguous and hold " + std::to_string(end) + " elements");
        if (b.scalar_type() != bufs[FUSED_P]->scalar_type() || b.device() != bufs[FUSED_P]->device())
            throw shim_error(what + "differs from the parameters' in dtype or device");
    }
}

// Makes the per-part views (and the step tensor) unless those of these very buffers exist: a
// buffer that moved has another address (its old storage lives while the views hold it).
void fused_make_views(tensor_fused_adamw *f, const at::Tensor *const bufs[FUSED_BUFFERS]) {
    bool same = f->step.defined();
    for (int k = 0; k < FUSED_BUFFERS; k++) same = same && bufs[k]->data_ptr() == f->bases[k];
    if (same) return;
    fused_check_buffers(f, bufs);
    at::NoGradGuard no_grad;
    f->step = at::scalar_tensor(0.0, bufs[FUSED_P]->options().dtype(at::kFloat));
    for (int d = 0; d < 2; d++) {
        for (auto &list : f->views[d]) list.clear();
        f->steps[d].clear();
    }
    for (const tensor_adamw_part &part : f->parts) {
        if (part.numel == 0) continue;  // the kernel refuses empty tensors
        int d = part.decays ? 1 : 0;
        for (int k = 0; k < FUSED_BUFFERS; k++) f->views[d][k].push_back(bufs[k]->narrow(0, part.offset, part.numel));
        f->steps[d].push_back(f->step);
    }
    for (int k = 0; k < FUSED_BUFFERS; k++) f->bases[k] = bufs[k]->data_ptr();
}

// Fails (with the message) unless the parts lie in increasing order without overlap.
bool fused_parts_in_order(const tensor_adamw_part *parts, int n) {
    for (int i = 0; i < n; i++) {
        int64_t previous_end = i > 0 ? parts[i - 1].offset + parts[i - 1].numel : 0;
        if (parts[i].numel < 0 || parts[i].offset < previous_end) {
            err_set("fused AdamW: part %d [%lld, +%lld) overlaps the one before or is negative", i,
                    (long long)parts[i].offset, (long long)parts[i].numel);
            return false;
        }
    }
    return true;
}

}  // namespace

extern "C" {

bool tensor_fused_adamw_available(tensor_device dev) {
    return dev.type == TENSOR_DEVICE_CUDA ? CLIPC_TORCH_AT_LEAST(2, 0) : CLIPC_TORCH_AT_LEAST(2, 4);
}

tensor_fused_adamw *tensor_fused_adamw_new(const tensor_adamw_part *parts, int n, const tensor *p, const tensor *g,
                                           const tensor *m, const tensor *v) {
    SHIM_NEED(p, g, m, v);
    tensor_device dev = tensor_get_device(p);
    if (!tensor_fused_adamw_available(dev)) {
        err_set("fused AdamW needs libtorch >= %s on %s (at::_fused_adamw_); %s",
                dev.type == TENSOR_DEVICE_CUDA ? "2.0" : "2.4", dev.type == TENSOR_DEVICE_CUDA ? "CUDA" : "the CPU",
                this_libtorch().c_str());
        return nullptr;
    }
    if (!fused_parts_in_order(parts, n)) return nullptr;
    SHIM_TRY(nullptr, {
        std::unique_ptr<tensor_fused_adamw> f(new tensor_fused_adamw);
        f->parts.assign(parts, parts + n);
        const at::Tensor *bufs[FUSED_BUFFERS] = {&p->t, &g->t, &m->t, &v->t};
        fused_make_views(f.get(), bufs);
        return f.release();
    })
}

void tensor_fused_adamw_free(tensor_fused_adamw *f) { delete f; }

int tensor_fused_adamw_step(tensor_fused_adamw *f, tensor *p, const tensor *g, tensor *m, tensor *v, int64_t t,
                            double lr, double beta1, double beta2, double eps, double weight_decay) {
    if (!f) return err_set("fused AdamW: no update (tensor_fused_adamw_new failed)");
    SHIM_NEED_INT(p, g, m, v);
    SHIM_TRY(-1, {
        const at::Tensor *bufs[FUSED_BUFFERS] = {&p->t, &g->t, &m->t, &v->t};
        fused_make_views(f, bufs);
        at::NoGradGuard no_grad;
        f->step.fill_((double)t);  // the kernel reads the step count (as float) on the device
        for (int d = 0; d < 2; d++)
            if (!f->views[d][FUSED_P].empty())
                fused_adamw_list(f->views[d], f->steps[d], lr, beta1, beta2, d ? weight_decay : 0.0, eps);
        return 0;
    })
}

}  // extern "C"

// ---- profiling -----------------------------------------------------------------------------------

namespace {

namespace prof = torch::profiler::impl;

std::mutex profile_mutex;
bool profiling = false;

prof::ProfilerConfig profile_config() { return prof::ProfilerConfig(prof::ProfilerState::KINETO); }

std::set<prof::ActivityType> profile_activities() {
    std::set<prof::ActivityType> a{prof::ActivityType::CPU};
    if (tensor_profile_has_kernels()) a.insert(prof::ActivityType::CUDA);
    return a;
}

// Waits until the GPU has run everything issued so far, so that the profile holds all of it.
void profile_wait_for_device() {
#ifdef CLIPC_TORCH_CUDA
    if (at::hasCUDA()) c10::cuda::device_synchronize();
#endif
}

bool starts_with(const std::string &s, const char *prefix) { return s.compare(0, std::strlen(prefix), prefix) == 0; }

// A fused attention kernel by its name: flash ("flash_fwd_kernel"), memory-efficient
// ("fmha_cutlassF_..."), cuDNN ("..._sdpa_..."); the math path runs matrix products and softmax.
bool is_attention_kernel(const std::string &name) {
    return name.find("flash") != std::string::npos || name.find("fmha") != std::string::npos ||
           name.find("sdpa") != std::string::npos;
}

// Kernels and copies (kineto's "Memcpy ..." and "Memset ..." activities) among the CUDA events.
tensor_profile profile_count(const torch::autograd::profiler::ProfilerResult &result) {
    int64_t none = tensor_profile_has_kernels() ? 0 : -1;
    tensor_profile out = {none, none, none, 0};
    for (const auto &e : result.events()) {
        out.events++;
        if (none < 0 || e.deviceType() != c10::DeviceType::CUDA) continue;
        std::string name = e.name();
        if (starts_with(name, "Memcpy") || starts_with(name, "Memset")) {
            out.copies++;
            continue;
        }
        out.kernels++;
        out.attention += is_attention_kernel(name);
    }
    return out;
}

}  // namespace

extern "C" {

// The kernels are counted where the profiler sees CUDA and the shim can wait for the GPU.
bool tensor_profile_has_kernels(void) {
#ifdef CLIPC_TORCH_CUDA
    return at::hasCUDA();
#else
    return false;
#endif
}

int tensor_profile_begin(void) {
    std::lock_guard<std::mutex> lock(profile_mutex);
    if (profiling) return err_set("tensor_profile_begin: a profile is already running");
    SHIM_TRY(-1, {
        std::set<prof::ActivityType> activities = profile_activities();
        torch::autograd::profiler::prepareProfiler(profile_config(), activities);
        torch::autograd::profiler::enableProfiler(profile_config(), activities);
        profiling = true;
        return 0;
    })
}

int tensor_profile_end(tensor_profile *out) {
    std::lock_guard<std::mutex> lock(profile_mutex);
    if (!profiling) return err_set("tensor_profile_end: no profile is running (tensor_profile_begin)");
    profiling = false;
    std::string waited;
    try {
        profile_wait_for_device();
    } catch (const std::exception &e) {
        waited = shim_what(e);  // the profile still stops below
    }
    SHIM_TRY(-1, {
        auto result = torch::autograd::profiler::disableProfiler();  // std::unique_ptr<ProfilerResult>
        if (!waited.empty()) return err_set("tensor_profile_end: waiting for the GPU: %s", waited.c_str());
        *out = profile_count(*result);
        return 0;
    })
}

}  // extern "C"

// ---- peak memory -----------------------------------------------------------------------------------

extern "C" {

// CUDA's figure is the caching allocator's aggregate (index 0 of its stat types in every version).
int64_t tensor_memory_peak(tensor_device dev) {
    if (dev.type == TENSOR_DEVICE_CPU) return sysinfo_peak_rss();
    SHIM_TRY(-1, {
#ifdef CLIPC_TORCH_CUDA
        return c10::cuda::CUDACachingAllocator::getDeviceStats((c10::DeviceIndex)dev.index).allocated_bytes[0].peak;
#else
        return err_set("peak GPU memory: this libtorch has no CUDA (" TORCH_VERSION ")");
#endif
    })
}

int tensor_memory_peak_reset(tensor_device dev) {
    if (dev.type == TENSOR_DEVICE_CPU) return sysinfo_peak_rss_reset();
    SHIM_TRY(-1, {
#ifdef CLIPC_TORCH_CUDA
        c10::cuda::CUDACachingAllocator::resetPeakStats((c10::DeviceIndex)dev.index);
        return 0;
#else
        return err_set("peak GPU memory: this libtorch has no CUDA (" TORCH_VERSION ")");
#endif
    })
}

}  // extern "C"
