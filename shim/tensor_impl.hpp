// tensor_impl: what the C++ files of the shim share (never included from C): the definition of
// the `tensor` handle and the catch-all that turns every C++ exception of an entry point into a
// failure return plus the one-line message of common/error.h.
#ifndef CLIPC_SHIM_TENSOR_IMPL_HPP
#define CLIPC_SHIM_TENSOR_IMPL_HPP

#include <ATen/ATen.h>
#include <torch/version.h>

#include <stdexcept>
#include <string>

#include "shim/tensor.h"

extern "C" {
#include "common/error.h"
}

// Whether the libtorch compiled against is at least major.minor (guards the calls of later versions).
#define CLIPC_TORCH_AT_LEAST(major, minor) \
    (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

struct tensor {
    at::Tensor t;
    int scope_level;     // index into the thread's scope stack, -1 when unscoped
    size_t scope_slot;   // position in that scope's list
    int device_tag;      // strict device mode (tensor.h): 1 + the CPU index it was placed on; 0: host
};

// ---- strict device mode (shim/tensor.h, tensor_strict_devices) ----------------------------------
// The tag the next handle made by wrap() gets: set by SHIM_NEED from the op's tensor inputs, and
// by the creation ops and tensor_to_device from their device (shim_place).
extern thread_local int shim_next_tag;
bool shim_strict(void);
// The tag of a handle placed on dev: 1 + the CPU index in strict mode; 0 otherwise (and for CUDA).
int shim_device_tag(tensor_device dev);
inline void shim_place(tensor_device dev) { shim_next_tag = shim_device_tag(dev); }
// Merges one input's tag into *tag: false (with the message) when the op mixes two placements.
bool shim_merge_tag(int *tag, const tensor *t);

inline bool shim_need_one(int *, const void *p) { return p != nullptr; }
inline bool shim_need_one(int *tag, const tensor *t) { return t && (!shim_strict() || shim_merge_tag(tag, t)); }
// Every input present and, in strict mode, on one placement, which the result inherits.
template <class... A>
bool shim_need(A... inputs) {
    int tag = -1;  // no input that counts yet
    bool ok = (shim_need_one(&tag, inputs) && ...);
    if (ok) shim_next_tag = tag > 0 ? tag : 0;
    return ok;
}
// The same over a list of n handles (one op's inputs).
bool shim_need_list(const tensor *const *ts, int n);

// An error whose message is already the complete line for the user (no "libtorch: " prefix).
struct shim_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The message of an exception on one line, without libtorch's C++ backtrace.
std::string shim_what(const std::exception &e);
// Sets the message of common/error.h from a libtorch (or other C++) exception: "libtorch: <what>".
void shim_set_error(const std::exception &e);

// Runs the body (which returns a value) and converts any exception into `fail` plus the message.
#define SHIM_TRY(fail, ...)                          \
    try {                                            \
        __VA_ARGS__                                  \
    } catch (const shim_error &e) {                  \
        err_set("%s", e.what());                     \
    } catch (const std::exception &e) {              \
        shim_set_error(e);                           \
    } catch (...) {                                  \
        err_set("libtorch: unknown C++ exception");  \
    }                                                \
    return fail;

// A NULL input means an earlier op failed: keep its message and fail too. In strict device mode
// inputs on two different placements fail as CUDA's "expected all tensors to be on the same device".
#define SHIM_NEED(...)                             \
    do {                                           \
        if (!shim_need(__VA_ARGS__)) return nullptr; \
    } while (0)

#define SHIM_NEED_INT(...)                         \
    do {                                           \
        if (!shim_need(__VA_ARGS__)) return -1;    \
    } while (0)

#endif
