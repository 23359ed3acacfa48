// The gradient hooks of shim/grad_hook.h: a LambdaPostHook (libtorch 1.13 and 2.x alike) on the
// leaf's AccumulateGrad node, which the handle keeps alive (autograd holds it only weakly between
// backward passes), removed by its key.
#include "shim/grad_hook.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "shim/tensor_impl.hpp"

struct tensor_grad_hook {
    std::shared_ptr<torch::autograd::Node> accumulator;
    uintptr_t key;
};

extern "C" {

tensor_grad_hook *tensor_grad_hook_add(const tensor *leaf, void (*fn)(void *ctx, int index), void *ctx, int index) {
    SHIM_NEED(leaf);
    SHIM_TRY(nullptr, {
        const at::Tensor &t = leaf->t;
        if (!fn) throw shim_error("tensor_grad_hook_add: no function");
        if (!t.requires_grad() || !t.is_leaf()) throw shim_error("tensor_grad_hook_add: not a leaf that requires grad");
        std::shared_ptr<torch::autograd::Node> acc = torch::autograd::impl::grad_accumulator(t);
        if (!acc) throw shim_error("tensor_grad_hook_add: the tensor has no gradient accumulator");
        using variable_list = torch::autograd::variable_list;
        auto call = [fn, ctx, index](const variable_list &outputs, const variable_list &) {
            fn(ctx, index);
            return outputs;
        };
        uintptr_t key = acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(call));
        return new tensor_grad_hook{acc, key};
    })
}

void tensor_grad_hook_remove(tensor_grad_hook *h) {
    if (!h) return;
    h->accumulator->del_post_hook(h->key);
    delete h;
}

}  // extern "C"
