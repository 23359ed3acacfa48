// The NCCL backend of shim/dist.h, through NCCL's C API on a non-blocking communicator.
//
// Collectives go on libtorch's current CUDA stream of the group's GPU (several tensors of one call
// inside ncclGroupStart/End) followed by an event. A watchdog thread polls the oldest pending
// event and ncclCommGetAsyncError: when a collective has not completed within the timeout, or NCCL
// reports an error, it aborts the communicator (which ends the stuck kernels, so nothing waits
// forever) and keeps the failure line for the next call. The stream API needs a CUDA-enabled
// libtorch (CLIPC_TORCH_CUDA); with a CPU-only libtorch this backend compiles but refuses to start.
#include <cuda_runtime_api.h>
#include <nccl.h>
#ifdef CLIPC_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "shim/dist_comm.hpp"

namespace dist_impl {

namespace {

using event_ptr = std::shared_ptr<CUevent_st>;  // destroyed when no thread holds it any more

event_ptr new_event(bool timing = false) {
    cudaEvent_t e = nullptr;
    cudaError_t r = cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming);
    if (r != cudaSuccess) throw std::runtime_error(std::string("cudaEventCreate: ") + cudaGetErrorString(r));
    return event_ptr(e, [](cudaEvent_t ev) { cudaEventDestroy(ev); });
}

ncclDataType_t nccl_type(at::ScalarType s) {
    switch (s) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: throw std::invalid_argument(std::string("NCCL does not reduce ") + c10::toString(s) + " tensors");
    }
}

std::string nccl_message(ncclResult_t r, ncclComm_t comm) {
    std::string s = std::string("NCCL: ") + ncclGetErrorString(r);
    const char *last = ncclGetLastError(comm);
    if (last && *last) s += std::string(" (") + last + ")";
    return s;
}

cudaStream_t current_stream(int device) {
#ifdef CLIPC_TORCH_CUDA
    return c10::cuda::getCurrentCUDAStream((c10::DeviceIndex)device).stream();
#else
    (void)device;
    throw std::logic_error("no CUDA stream without a CUDA-enabled libtorch");
#endif
}

class nccl_comm : public comm {
    struct pending {
        event_ptr done;
        clock::time_point start;
        call c;
        bool announced;
    };

    group &g;
    int gpu;  // the CUDA ordinal
    ncclComm_t nc = nullptr;
    std::mutex mu;  // guards what follows and every use of nc
    std::condition_variable wake;
    std::deque<pending> queue;  // enqueued collectives not yet seen complete, oldest first
    std::string failure;
    bool aborted = false, stopping = false;
    std::thread watchdog;

    std::string rank_prefix() const { return "rank " + std::to_string(g.rank) + ": "; }

    void check_device() {
        int count = 0;
        cudaError_t r = cudaGetDeviceCount(&count);
        if (r != cudaSuccess || count == 0)
            throw shim_error(rank_prefix() + "the NCCL backend needs a GPU and none is visible" +
                             (r != cudaSuccess ? std::string(" (") + cudaGetErrorString(r) + ")" : ""));
#ifndef CLIPC_TORCH_CUDA
        throw shim_error(rank_prefix() + "the NCCL backend needs a CUDA-enabled libtorch (this one is CPU-only)");
#endif
        if (gpu < 0 || gpu >= count)
            throw shim_error(rank_prefix() + "GPU " + std::to_string(gpu) + " asked for, " + std::to_string(count) +
                             " visible");
        r = cudaSetDevice(gpu);
        if (r != cudaSuccess) throw std::runtime_error(std::string("cudaSetDevice: ") + cudaGetErrorString(r));
    }

    // Rank 0 makes NCCL's unique id and puts it in the store; the others wait for it there.
    ncclUniqueId exchange_id() {
        ncclUniqueId id;
        const std::string key = "clipc/nccl_unique_id";
        if (g.rank == 0) {
            ncclResult_t r = ncclGetUniqueId(&id);
            if (r != ncclSuccess) throw std::runtime_error(nccl_message(r, nullptr));
            const uint8_t *bytes = reinterpret_cast<const uint8_t *>(&id);
            g.store->set(key, std::vector<uint8_t>(bytes, bytes + sizeof id));
        } else {
            std::vector<uint8_t> v = g.store->get(key);
            if (v.size() != sizeof id)
                throw std::runtime_error("the NCCL unique id in the store has " + std::to_string(v.size()) + " bytes");
            std::memcpy(&id, v.data(), sizeof id);
        }
        return id;
    }

    // Waits (up to the timeout) until a non-blocking NCCL call has finished; "" or the problem.
    std::string settle(ncclResult_t r) {
        clock::time_point deadline = clock::now() + g.timeout;
        while (r == ncclInProgress) {
            if (clock::now() >= deadline) return "timed out after " + g.timeout_text();
            std::this_thread::sleep_for(std::chrono::microseconds(100));
            ncclCommGetAsyncError(nc, &r);
        }
        return r == ncclSuccess ? "" : "failed: " + nccl_message(r, nc);
    }

    void abort_locked() {
        if (!aborted) ncclCommAbort(nc);
        aborted = true;
        queue.clear();
        wake.notify_all();
    }

    // Records the failure of c (holding mu), aborting the communicator.
    void fail_locked(const call &c, const std::string &problem) {
        failure = g.describe(c, problem);
        abort_locked();
    }

    void throw_if_failed() {
        if (!failure.empty()) throw shim_error(failure);
    }

    // Issues one call's NCCL operations as one group on the current stream and records its event.
    template <class F>
    void enqueue(const call &c, F issue) {
        std::lock_guard<std::mutex> lock(mu);
        throw_if_failed();
        enqueue_locked(c, issue, current_stream(gpu), new_event());
    }

    // The same on any stream, recording `done` there (holding mu).
    template <class F>
    void enqueue_locked(const call &c, F issue, cudaStream_t stream, const event_ptr &done) {
        ncclResult_t r = ncclGroupStart();
        if (r == ncclSuccess) r = issue(stream);
        ncclResult_t end = ncclGroupEnd();
        std::string problem = settle(r != ncclSuccess ? r : end);
        if (!problem.empty()) {
            fail_locked(c, problem);
            throw_if_failed();
        }
        cudaError_t e = cudaEventRecord(done.get(), stream);
        if (e != cudaSuccess) {
            fail_locked(c, std::string("failed: cudaEventRecord: ") + cudaGetErrorString(e));
            throw_if_failed();
        }
        queue.push_back(pending{done, clock::now(), c, false});
        wake.notify_all();
    }

    // One in-place operation per tensor, all in one group.
    template <class F>
    static auto each(std::vector<at::Tensor> &tensors, F op) {
        std::vector<ncclDataType_t> types;
        for (const at::Tensor &t : tensors) types.push_back(nccl_type(t.scalar_type()));
        return [&tensors, op, types](cudaStream_t s) {
            ncclResult_t r = ncclSuccess;
            for (size_t i = 0; i < tensors.size() && r == ncclSuccess; i++)
                r = op(tensors[i].data_ptr(), (size_t)tensors[i].numel(), types[i], s);
            return r;
        };
    }

    template <class F>
    void enqueue_each(const call &c, std::vector<at::Tensor> &tensors, F op) {
        enqueue(c, each(tensors, op));
    }

    // Asynchronous sums (start_sum): a side stream, and the timing events of those not yet waited for.
    cudaStream_t side = nullptr;
    event_ptr first_start, last_done, waited;  // of the sums started since (and at) the last wait_sums
    event_ptr times_first, times_last, times_waited;  // the group sum_times reports

    cudaStream_t side_stream() {
        if (!side) {
            cudaError_t e = cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);
            if (e != cudaSuccess) throw std::runtime_error(std::string("cudaStreamCreate: ") + cudaGetErrorString(e));
        }
        return side;
    }

    static void check(cudaError_t e, const char *what) {
        if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
    }

    static double elapsed_s(const event_ptr &from, const event_ptr &to) {
        float ms = 0;
        check(cudaEventSynchronize(to.get()), "cudaEventSynchronize");
        check(cudaEventSynchronize(from.get()), "cudaEventSynchronize");
        check(cudaEventElapsedTime(&ms, from.get(), to.get()), "cudaEventElapsedTime");
        return ms / 1e3;
    }

    // One look at the oldest pending collective (watchdog, holding mu).
    void poll(std::unique_lock<std::mutex> &lock) {
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(nc, &async);
        while (!queue.empty() && failure.empty()) {
            pending &p = queue.front();
            if (async != ncclSuccess && async != ncclInProgress) return fail_locked(p.c, "failed: " + nccl_message(async, nc));
            cudaError_t q = cudaEventQuery(p.done.get());
            if (q == cudaSuccess) {
                queue.pop_front();
                wake.notify_all();
                continue;
            }
            if (q != cudaErrorNotReady) return fail_locked(p.c, std::string("failed: CUDA: ") + cudaGetErrorString(q));
            clock::duration age = clock::now() - p.start;
            if (age >= g.timeout) return fail_locked(p.c, "timed out after " + g.timeout_text());
            if (!p.announced && age >= g.announce_after()) {
                p.announced = true;
                call c = p.c;
                lock.unlock();
                g.announce(c);
                lock.lock();
            }
            return;
        }
    }

    void watch() {
        cudaSetDevice(gpu);
        std::unique_lock<std::mutex> lock(mu);
        while (!stopping) {
            wake.wait_for(lock, std::chrono::milliseconds(20));
            if (!stopping && failure.empty()) poll(lock);
        }
    }

  public:
    nccl_comm(group &g, int device) : g(g), gpu(device) {
        check_device();
        ncclUniqueId id = exchange_id();
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        std::string problem = settle(ncclCommInitRankConfig(&nc, g.world, id, g.rank, &config));
        if (!problem.empty()) {
            if (nc) ncclCommAbort(nc);
            throw std::runtime_error("ncclCommInitRankConfig " + problem);
        }
        watchdog = std::thread([this] { watch(); });
    }

    ~nccl_comm() override {
        {
            std::lock_guard<std::mutex> lock(mu);
            stopping = true;
        }
        wake.notify_all();
        watchdog.join();
        if (side) cudaStreamDestroy(side);
        if (aborted) return;
        // Flushes what is still enqueued and frees the communicator; aborts when peers do not answer.
        std::string problem = settle(ncclCommFinalize(nc));
        if (problem.empty())
            ncclCommDestroy(nc);
        else
            ncclCommAbort(nc);
    }

    void all_reduce(const call &c, std::vector<at::Tensor> &tensors) override {
        enqueue_each(c, tensors, [&](void *data, size_t count, ncclDataType_t type, cudaStream_t s) {
            return ncclAllReduce(data, data, count, type, ncclSum, nc, s);
        });
    }

    void all_gather(const call &c, at::Tensor &out, at::Tensor &in) override {
        ncclDataType_t type = nccl_type(in.scalar_type());
        enqueue(c, [&](cudaStream_t s) {
            return ncclAllGather(in.data_ptr(), out.data_ptr(), (size_t)in.numel(), type, nc, s);
        });
    }

    void reduce_scatter(const call &c, at::Tensor &out, at::Tensor &in) override {
        ncclDataType_t type = nccl_type(in.scalar_type());
        enqueue(c, [&](cudaStream_t s) {
            return ncclReduceScatter(in.data_ptr(), out.data_ptr(), (size_t)out.numel(), type, ncclSum, nc, s);
        });
    }

    void broadcast(const call &c, std::vector<at::Tensor> &tensors, int root) override {
        enqueue_each(c, tensors, [&](void *data, size_t count, ncclDataType_t type, cudaStream_t s) {
            return ncclBroadcast(data, data, count, type, root, nc, s);
        });
    }

    void barrier(const call &c) override {
        std::vector<at::Tensor> one{at::zeros({1}, at::TensorOptions().device(at::kCUDA, (c10::DeviceIndex)gpu))};
        all_reduce(c, one);
        synchronize();
    }

    // Waits for the oldest pending event until none is left (the watchdog's abort ends a stuck wait).
    void synchronize() override {
        std::unique_lock<std::mutex> lock(mu);
        while (failure.empty() && !queue.empty()) {
            event_ptr oldest = queue.front().done;
            lock.unlock();
            cudaEventSynchronize(oldest.get());
            lock.lock();
            while (!queue.empty() && cudaEventQuery(queue.front().done.get()) == cudaSuccess) queue.pop_front();
        }
        throw_if_failed();
    }

    // On the side stream, after what the current stream has queued (the gradients of this bucket).
    void start_sum(const call &c, std::vector<at::Tensor> &tensors, int root) override {
        std::lock_guard<std::mutex> lock(mu);
        throw_if_failed();
        cudaStream_t now = current_stream(gpu), s = side_stream();
        event_ptr ready = new_event(), start = new_event(true), done = new_event(true);
        check(cudaEventRecord(ready.get(), now), "cudaEventRecord");
        check(cudaStreamWaitEvent(s, ready.get(), 0), "cudaStreamWaitEvent");
        check(cudaEventRecord(start.get(), s), "cudaEventRecord");
        auto op = [&](void *data, size_t count, ncclDataType_t type, cudaStream_t st) {
            return root < 0 ? ncclAllReduce(data, data, count, type, ncclSum, nc, st)
                            : ncclReduce(data, data, count, type, ncclSum, root, nc, st);
        };
        enqueue_locked(c, each(tensors, op), s, done);
        if (!first_start) first_start = start;
        last_done = done;
    }

    // The current stream waits for the side stream's last event (the side stream runs in order).
    void wait_sums() override {
        std::lock_guard<std::mutex> lock(mu);
        throw_if_failed();
        times_first = times_last = times_waited = nullptr;
        if (!last_done) return;
        cudaStream_t now = current_stream(gpu);
        event_ptr at_wait = new_event(true);
        check(cudaEventRecord(at_wait.get(), now), "cudaEventRecord");
        check(cudaStreamWaitEvent(now, last_done.get(), 0), "cudaStreamWaitEvent");
        times_first = first_start, times_last = last_done, times_waited = at_wait;
        first_start = last_done = nullptr;
    }

    void sum_times(double *comm_s, double *exposed_s) override {
        *comm_s = *exposed_s = 0;
        if (!times_last) return;
        *comm_s = elapsed_s(times_first, times_last);
        *exposed_s = std::max(0.0, elapsed_s(times_waited, times_last));
    }

    c10::optional<at::Device> device() const override { return at::Device(at::kCUDA, (c10::DeviceIndex)gpu); }
};

}  // namespace

std::unique_ptr<comm> make_nccl_comm(group &g, int device) { return std::make_unique<nccl_comm>(g, device); }

}  // namespace dist_impl
