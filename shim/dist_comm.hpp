// dist_comm: the inside of shim/dist.h (C++ only). `group` holds what every backend shares
// (rank, world size, timeout, the TCP store) and writes the one-line failure messages; each
// backend (LOCAL in dist.cpp, dist_gloo.cpp, dist_nccl.cpp) implements `comm`.
#ifndef CLIPC_SHIM_DIST_COMM_HPP
#define CLIPC_SHIM_DIST_COMM_HPP

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shim/dist.h"
#include "shim/tensor_impl.hpp"

namespace dist_impl {

using clock = std::chrono::steady_clock;

// One collective: its name, its position in the sequence every rank runs, and where the caller was.
struct call {
    const char *op;
    uint64_t seq;
    std::string where;
};

struct group {
    int rank = 0, world = 1;
    std::chrono::milliseconds timeout{0};
    c10::intrusive_ptr<c10d::Store> store;  // null for LOCAL

    // After this long in one collective a rank records in the store that it reached it, so that
    // the peers that time out can tell who never came.
    std::chrono::milliseconds announce_after() const;
    void announce(const call &c) const;
    // " (peer rank 2 gone?)" naming the ranks that never reached c, or "" when all did.
    std::string missing_peers(const call &c) const;
    // "rank 1: all_reduce at step 12".
    std::string where_line(const call &c) const;
    // "rank 1: all_reduce at step 12 <problem> (peer rank 0 gone?)".
    std::string describe(const call &c, const std::string &problem) const;
    std::string timeout_text() const;  // "30 s"
    std::string describe_timeout(const call &c) const;
};

class comm {
  public:
    virtual ~comm() = default;
    // Tensors are validated by the caller: contiguous, on device(), shapes as shim/dist.h says.
    // A failure throws shim_error with the line of group::describe.
    virtual void all_reduce(const call &c, std::vector<at::Tensor> &tensors) = 0;
    virtual void all_gather(const call &c, at::Tensor &out, at::Tensor &in) = 0;
    virtual void reduce_scatter(const call &c, at::Tensor &out, at::Tensor &in) = 0;
    virtual void broadcast(const call &c, std::vector<at::Tensor> &tensors, int root) = 0;
    virtual void barrier(const call &c) = 0;
    virtual void synchronize() = 0;
    // Asynchronous sums (shim/dist.h's dist_pg_start_sum): start one (root < 0: all_reduce, else
    // reduce to root), wait for every one started since the last wait, and that group's times.
    virtual void start_sum(const call &c, std::vector<at::Tensor> &tensors, int root) = 0;
    virtual void wait_sums() = 0;
    virtual void sum_times(double *comm_s, double *exposed_s) = 0;
    // The device every tensor must be on; nullopt when any will do (LOCAL).
    virtual c10::optional<at::Device> device() const = 0;
};

std::unique_ptr<comm> make_gloo_comm(group &g, const std::string &master_addr);  // dist_gloo.cpp
std::unique_ptr<comm> make_nccl_comm(group &g, int device);                       // dist_nccl.cpp

}  // namespace dist_impl

#endif
