// tensor_impl: what the C++ files of the shim share (never included from C): the definition of
// the `tensor` handle and the catch-all that turns every C++ exception of an entry point into a
// failure return plus the one-line message of common/error.h.
#ifndef CLIPC_SHIM_TENSOR_IMPL_HPP
#define CLIPC_SHIM_TENSOR_IMPL_HPP

#include <ATen/ATen.h>

#include <stdexcept>
#include <string>

#include "shim/tensor.h"

extern "C" {
#include "common/error.h"
}

struct tensor {
    at::Tensor t;
    int scope_level;     // index into the thread's scope stack, -1 when unscoped
    size_t scope_slot;   // position in that scope's list
};

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

// A NULL input means an earlier op failed: keep its message and fail too.
#define SHIM_NEED(...)                                         \
    do {                                                       \
        const void *inputs_[] = {__VA_ARGS__};                 \
        for (const void *p_ : inputs_)                         \
            if (!p_) return nullptr;                           \
    } while (0)

#define SHIM_NEED_INT(...)                                     \
    do {                                                       \
        const void *inputs_[] = {__VA_ARGS__};                 \
        for (const void *p_ : inputs_)                         \
            if (!p_) return -1;                                \
    } while (0)

#endif
